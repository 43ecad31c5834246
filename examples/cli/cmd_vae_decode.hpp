#pragma once
// `fasterdiffusion vae-decode`: latents from a safetensors file -> image with an AutoencoderKL (SD VAE)
// or AutoencoderTiny (TAESD) folder, chosen by its config.json. Writes the fixtures' names: image,
// image_denormalized, image_uint8 (U8, NHWC) and, with --intermediates (untiled), the decoder intermediates.

#include <functional>
#include <string>

#include <CLI/CLI.hpp>

namespace fdcli {

struct VaeDecodeArgs {
  std::string model, inputs, output, variant;
  bool tiled = false;
  bool random_weights = false;
  bool intermediates = false;
  int tile = 64;
  int overlap = 16;
  int threads = 0;
  int repeat = 0;
};

/// Registers the subcommand. Defined in cmd_vae_decode.cpp, its own translation unit: the decoders'
/// templates stay out of main.cpp.
void add_vae_decode_command(CLI::App& app, VaeDecodeArgs& a, std::function<void()>& run);

}  // namespace fdcli
