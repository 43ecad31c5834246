// `fasterdiffusion vae-decode` (see cmd_vae_decode.hpp).

#include "cmd_vae_decode.hpp"

#include <fd/nn/init.hpp>

#include "cli_common.hpp"

namespace fdcli {

/// A decoder of the folder's class and config with random parameters (nn::init_random, seed 0).
inline fd::models::ImageDecoder<Backend> random_decoder(Backend const& be, std::filesystem::path const& dir) {
  auto const path = dir / "config.json";
  auto const j = fd::models::vae::read_json_file(path, "image decoder");
  if (fd::models::vae::class_name_of(j) == "AutoencoderTiny") {
    fd::models::AutoencoderTiny<Backend> m(be, fd::models::AutoencoderTinyConfig::from_json(j, path.string()));
    fd::nn::init_random(be, m);
    return fd::models::ImageDecoder<Backend>::from_tiny(std::move(m));
  }
  fd::models::AutoencoderKL<Backend> m(be, fd::models::AutoencoderKLConfig::from_json(j, path.string()));
  fd::nn::init_random(be, m);
  return fd::models::ImageDecoder<Backend>::from_kl(std::move(m));
}

void add_vae_decode_command(CLI::App& app, VaeDecodeArgs& a, std::function<void()>& run) {
  auto* cmd = app.add_subcommand("vae-decode", "Decode latents to an image with an AutoencoderKL or AutoencoderTiny");
  cmd->add_option("--model", a.model, "diffusers vae folder (config.json + weights)")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--inputs", a.inputs, "safetensors with latents [N,C,h,w] as the sampler produces them (scaled)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--output", a.output, "safetensors to write: image, image_denormalized, image_uint8")
      ->required();
  cmd->add_flag("--tiled", a.tiled, "decode in overlapping tiles (bounded memory for large images)");
  cmd->add_option("--tile", a.tile, "tile edge in latent pixels (with --tiled)")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--overlap", a.overlap, "tile overlap in latent pixels (with --tiled)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--threads", a.threads, "CPU threads (0 = all)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--repeat", a.repeat, "time N more decodes after the first")->check(CLI::NonNegativeNumber);
  cmd->add_option("--variant", a.variant, "weights variant to prefer, e.g. fp16");
  cmd->add_flag("--intermediates", a.intermediates,
                "also write the decoder's intermediate tensors (fixture names; untiled only)");
  cmd->add_flag("--random-weights", a.random_weights,
                "read only the folder's config.json and use random weights (timing at real shapes)");
  cmd->callback([&run, &a] {
    run = [&a] {
      Backend be{{.threads = a.threads}};
      auto dec = a.random_weights ? random_decoder(be, a.model) : fd::models::ImageDecoder<Backend>::load(be, a.model, a.variant);
      auto in = fd::io::SafeTensorsFile::open(a.inputs);
      Tensor const latents = require_input(be, in, "latents");
      fd::models::TileOptions const opt{.tile_latent = a.tile, .overlap_latent = a.overlap};
      auto decode = [&](fd::models::DecodeTap<Backend> const& tap) {
        return fd::with_context(a.inputs, [&] { return a.tiled ? dec.decode_tiled(latents, opt) : dec.decode(latents, tap); });
      };

      std::vector<std::pair<std::string, Tensor>> debug;
      fd::models::DecodeTap<Backend> tap;
      if (a.intermediates) tap = [&](std::string const& n, Tensor const& t) { debug.push_back({n, t.clone(be)}); };
      Tensor const image = decode(tap);
      std::vector<std::pair<std::string, Tensor>> out{{"image", image},
                                                      {"image_denormalized", fd::image::denormalize(be, image)},
                                                      {"image_uint8", fd::image::to_rgb8_tensor(be, image)}};
      out.insert(out.end(), debug.begin(), debug.end());
      fd::io::save_safetensors(be, a.output, out);

      if (a.repeat > 0) {
        std::vector<double> ms;
        for (int r = 0; r < a.repeat; ++r) {
          double const t0 = now_ms();
          Tensor y = decode({});
          ms.push_back(now_ms() - t0);
        }
        Timing const tm = summarize(ms);
        std::printf("vae decode: median %.3f ms, min %.3f ms over %d runs\n", tm.median_ms, tm.min_ms, a.repeat);
      }
    };
  });
}

}  // namespace fdcli
