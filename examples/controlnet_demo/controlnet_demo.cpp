// controlnet_demo: Stable Diffusion + a canny ControlNet with and without FasterDiffusion, as the reference
// repository's controlnet_demo.py runs it: the condition image's Canny edges (thresholds 100, 200, on the
// RGB array), prompt "Mona Lisa", seed 8888, the model's own scheduler, 50 steps, guidance 7.5; the
// baseline first, then encoder propagation with the ControlNet inside the encoder (it runs at the key
// steps only) and parallel decoding; both images saved under images/.
//
// Usage: controlnet_demo [MODEL] [CONTROLNET] [IMAGE] [PROMPT]
//   MODEL       diffusers pipeline folder (default: the embedded tiny-shapes model)
//   CONTROLNET  diffusers ControlNet folder, e.g. sd-controlnet-canny (default: the embedded
//               tiny-shapes-controlnet, an untrained ControlNet initialised from tiny-shapes' UNet: it shows
//               the cost of the ControlNet and FasterDiffusion's saving, not a trained control)
//   IMAGE       condition image, PNG or JPEG (default: the one next to this file)

#include <cstdio>
#include <filesystem>
#include <string>

#include <fd/fd.hpp>
#include <fd/image/resize.hpp>
#include <fd/io/image_file.hpp>
#include <fd/io/png.hpp>
#include <fd/pipelines/stable_diffusion.hpp>

#if defined(CONTROLNET_DEMO_HAVE_OPENCV)
#include <opencv2/imgproc.hpp>
#endif

#ifndef CONTROLNET_DEMO_MODELS_DIR
#define CONTROLNET_DEMO_MODELS_DIR "models"
#endif
#ifndef CONTROLNET_DEMO_IMAGE
#define CONTROLNET_DEMO_IMAGE "condition.png"
#endif

namespace {

// cv2.Canny(np.array(image), 100, 200), its one channel repeated three times (the reference's
// np.concatenate([image, image, image], axis=2)).
fd::io::Rgb8 canny(fd::io::Rgb8 const& rgb, double low, double high) {
#if defined(CONTROLNET_DEMO_HAVE_OPENCV)
  cv::Mat const src(rgb.height, rgb.width, CV_8UC3, const_cast<std::uint8_t*>(rgb.rgb.data()));
  cv::Mat edges;
  cv::Canny(src, edges, low, high);
  fd::io::Rgb8 out{rgb.width, rgb.height, std::vector<std::uint8_t>(rgb.rgb.size())};
  for (std::size_t i = 0; i < static_cast<std::size_t>(rgb.width) * rgb.height; ++i) {
    out.rgb[3 * i] = out.rgb[3 * i + 1] = out.rgb[3 * i + 2] = edges.data[i];
  }
  return out;
#else
  (void)low, (void)high;
  std::printf("(built without OpenCV: the condition image is used as a ready edge map)\n");
  return rgb;
#endif
}

}  // namespace

int main(int argc, char** argv) try {
  using B = fd::backend::Cpu;
  std::filesystem::path const models = CONTROLNET_DEMO_MODELS_DIR;
  std::filesystem::path const model = argc > 1 ? argv[1] : models / "tiny-shapes";
  std::filesystem::path const controlnet = argc > 2 ? argv[2] : models / "tiny-shapes-controlnet";
  std::filesystem::path const image_path = argc > 3 ? argv[3] : CONTROLNET_DEMO_IMAGE;
  std::string const prompt = argc > 4 ? argv[4] : "Mona Lisa";
  B cpu;

  fd::io::Rgb8 const condition = canny(fd::io::read_image(image_path), 100, 200);

  fd::StableDiffusion<B>::LoadOptions opt;
  opt.controlnets = {controlnet};
  auto const pipe = fd::StableDiffusion<B>::load(cpu, model, opt);

  // The pipeline's size follows the condition image (rounded down to the latent grid), as diffusers'.
  auto const [width, height] = fd::image::default_size_for(condition, pipe.scale_factor());
  fd::Request req{.prompt = prompt, .steps = 50, .guidance = 7.5f, .seed = 8888, .height = height, .width = width};
  req.controls = {{.image = fd::image::prepare_control_image(condition, width, height)}};

  using Origin = fd::Sampler<fd::keys::All, fd::prop::None, fd::inject::None>;
  using Faster = fd::Sampler<fd::keys::Paper50, fd::prop::EncoderPropagation<fd::prop::Parallel>, fd::inject::Prior>;

  // Warm-up as in the reference (there: two full runs on the GPU); here two short runs.
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
  fd::io::write_png("images/canny_out_origin.png", origin.images[0].rgb, origin.images[0].width,
                    origin.images[0].height, 3);

  auto const faster = pipe.generate<Faster>(req);
  std::printf("Faster Pipeline: %.3f seconds\n", faster.timing.total);
  fd::io::write_png("images/canny_out_faster.png", faster.images[0].rgb, faster.images[0].width,
                    faster.images[0].height, 3);
  std::printf("ControlNet runs: origin %d, faster %d; speed-up %.2fx\n", origin.stats.controlnet_runs,
              faster.stats.controlnet_runs, origin.timing.total / faster.timing.total);
  return 0;
} catch (fd::error const& e) {
  std::fprintf(stderr, "controlnet_demo: %s\n", e.what());
  return 1;
}
