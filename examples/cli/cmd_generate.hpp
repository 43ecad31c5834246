#pragma once
// `fasterdiffusion generate`: text to image with a Stable Diffusion pipeline folder (or a single-file
// SD 1.x checkpoint), baseline or FasterDiffusion, PNG out; `--compare` runs both with the same seed.
// `fasterdiffusion shapes-eval`: the colour check of the tiny-shapes demo model (models/tiny-shapes/
// README.md, "Validation") for the baseline and FasterDiffusion, and the PSNR between them.
// Both are defined in cmd_generate.cpp, their own translation unit: the pipeline's templates stay out
// of main.cpp and compile in parallel with it.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli_backend.hpp"

#ifndef FD_EMBEDDED_MODEL_DIR
#define FD_EMBEDDED_MODEL_DIR ""
#endif
#ifndef FD_INSTALLED_MODEL_DIR_REL
#define FD_INSTALLED_MODEL_DIR_REL ""
#endif

namespace fdcli {

/// The demo model shipped in the repository (models/tiny-shapes): the installed copy next to an
/// installed binary, else the source tree's.
inline std::string embedded_model_dir() {
  std::error_code ec;
  std::filesystem::path const exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec && std::string_view(FD_INSTALLED_MODEL_DIR_REL).size() > 0) {
    std::filesystem::path const installed = exe.parent_path() / FD_INSTALLED_MODEL_DIR_REL;
    if (std::filesystem::is_directory(installed, ec)) return installed.lexically_normal().string();
  }
  return FD_EMBEDDED_MODEL_DIR;
}

struct GenerateArgs {
  std::string model = embedded_model_dir(), prompt, negative, sampler, accel = "fd", keys = "50ls", injection, taesd,
              output = "output.png", variant, tokenizer, config_patch;
  int steps = 50, height = 0, width = 0, batch = 1, clip_skip = 0, max_decoder_rows = 0;
  float cfg = 7.5f, rescale = 0.0f, eta = 0.0f;
  BackendArgs be;
  // ControlNet: one --controlnet per net, one --control-image each (or one for all), optional canny.
  std::vector<std::string> controlnets, control_images;
  std::vector<float> control_scales;
  std::string canny;
  float control_start = 0.0f, control_end = 1.0f;
  bool guess_mode = false;
  std::uint64_t seed = 42;
  std::vector<std::uint64_t> seeds;
  bool compare = false, no_ftfy = false, quiet = false;
  std::optional<bool> tiled;
};

struct ShapesEvalArgs {
  std::string model = embedded_model_dir(), sampler = "ddim", keys = "50ls", injection = "0.003";
  int captions = 32, steps = 50, threads = 0, seed_base = 1000, chunk = 8;
  float cfg = 7.5f;
  double min_shape_colour = -1, min_psnr = -1;
};

void add_generate_command(CLI::App& app, GenerateArgs& a, std::function<void()>& run);
void add_shapes_eval_command(CLI::App& app, ShapesEvalArgs& a, std::function<void()>& run, int& exit_code);

}  // namespace fdcli
