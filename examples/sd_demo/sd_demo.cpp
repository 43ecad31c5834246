// sd_demo: Stable Diffusion with and without FasterDiffusion, as the reference repository's sd_demo.py
// runs it: prompt "a cat wearing sunglasses", seed 2023, the model's own scheduler (PNDM for SD 1.5),
// 50 steps, guidance 7.5; the baseline first, then encoder propagation with parallel decoding and
// prior noise injection; both images saved under images/.
//
// Usage: sd_demo [MODEL] [PROMPT]
//   MODEL   diffusers pipeline folder or single-file SD 1.x checkpoint (default: the embedded
//           tiny-shapes demo model; its captions look like "a red circle on a blue background")

#include <cstdio>
#include <filesystem>
#include <string>

#include <fd/fd.hpp>
#include <fd/io/png.hpp>
#include <fd/pipelines/stable_diffusion.hpp>

#ifndef SD_DEMO_MODEL_DIR
#define SD_DEMO_MODEL_DIR "models/tiny-shapes"
#endif

int main(int argc, char** argv) try {
  using B = fd::backend::Cpu;
  std::filesystem::path const model = argc > 1 ? argv[1] : SD_DEMO_MODEL_DIR;
  std::string const prompt = argc > 2 ? argv[2] : "a cat wearing sunglasses";
  B cpu;

  fd::StableDiffusion<B>::LoadOptions opt;
  if (std::filesystem::is_regular_file(model)) opt.tokenizer = std::filesystem::path(SD_DEMO_MODEL_DIR) / "tokenizer";
  auto const pipe = fd::StableDiffusion<B>::load(cpu, model, opt);

  using Origin = fd::Sampler<fd::keys::All, fd::prop::None, fd::inject::None>;
  using Faster = fd::Sampler<fd::keys::Paper50, fd::prop::EncoderPropagation<fd::prop::Parallel>, fd::inject::Prior>;
  fd::Request const req{.prompt = prompt, .steps = 50, .guidance = 7.5f, .seed = 2023};

  // Warm-up as in the reference (there: two full runs on the GPU); here two short runs fault in the
  // weights and the buffer pool.
  std::printf("Warm up\n");
  for (int i = 0; i < 2; ++i) {
    fd::Request warm = req;
    warm.steps = 2;
    (void)pipe.generate<Origin>(warm);
  }
  std::printf("Start Generating\n");

  std::filesystem::create_directories("images");
  auto const origin = pipe.generate<Origin>(req);
  std::printf("Origin Pipeline: %.3f seconds\n", origin.timing.total);
  fd::io::write_png("images/origin_cat.png", origin.images[0].rgb, origin.images[0].width, origin.images[0].height, 3);

  auto const faster = pipe.generate<Faster>(req);
  std::printf("Faster Diffusion: %.3f seconds\n", faster.timing.total);
  fd::io::write_png("images/faster_cat.png", faster.images[0].rgb, faster.images[0].width, faster.images[0].height, 3);
  return 0;
} catch (fd::error const& e) {
  std::fprintf(stderr, "sd_demo: %s\n", e.what());
  return 1;
}
