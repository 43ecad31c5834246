// fd_cuda_pipeline_tests: text to image on the CUDA backend (tokenizer, text encoder, UNet, sampler,
// image output) against the same request on the CPU, with the embedded tiny-shapes model. Separate from
// fd_cuda_tests because it links ICU and libpng, which scripts/gpu-check.sh does not carry.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>

#include "common/compare.hpp"
#include "fd/backend/cuda/ops.hpp"
#include "fd/fd.hpp"

using C = fd::backend::Cpu;
using G = fd::backend::Cuda;
using Faster = fd::Sampler<fd::keys::Paper50, fd::prop::EncoderPropagation<fd::prop::Parallel>, fd::inject::Prior>;

namespace {
std::filesystem::path model_dir() { return std::filesystem::path(FD_MODELS_DIR) / "tiny-shapes"; }
}  // namespace

TEST_CASE("cuda pipeline: tiny-shapes FasterDiffusion DDIM-50 equals the CPU run", "[cuda][pipeline]") {
  fd::Request const req{.prompt = "a red circle on a blue background", .steps = 50, .seed = 2023,
                        .scheduler = fd::SchedulerKind::kDdim};
  C cpu{{.threads = 2}};
  auto const want = fd::StableDiffusion<C>::load(cpu, model_dir()).generate<Faster>(req);
  for (auto [dt, min_psnr] : {std::pair{fd::DType::kF32, 60.0}, std::pair{fd::DType::kF16, 30.0},
                              std::pair{fd::DType::kBF16, 24.0}}) {
    G g{{.dtype = dt}};
    auto const got = fd::StableDiffusion<G>::load(g, model_dir()).generate<Faster>(req);
    double const psnr = fd::image::psnr(got.images.at(0).rgb, want.images.at(0).rgb);
    std::printf("  cuda %s tiny-shapes FD DDIM-50: PSNR vs CPU %.1f dB, encoder runs %d\n",
                std::string(fd::dtype_name(dt)).c_str(), psnr, got.stats.encoder_runs);
    INFO(fd::dtype_name(dt) << ": PSNR " << psnr);
    CHECK(psnr >= min_psnr);
    CHECK(got.stats.encoder_runs == want.stats.encoder_runs);
  }
}

int main(int argc, char* argv[]) {
  if (!G::available()) {
    std::printf("fd_cuda_pipeline_tests: no CUDA device is present; skipping\n");
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
