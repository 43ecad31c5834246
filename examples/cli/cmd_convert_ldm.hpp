#pragma once
// `fasterdiffusion convert-ldm`: a single-file SD 1.x checkpoint (CompVis LDM names) written out as a
// diffusers folder (unet/, vae/, text_encoder/), tensors renamed but stored in their original dtype.
// Also the --config-patch reader shared with `unet --model FILE.safetensors`.

#include <filesystem>
#include <fstream>
#include <sstream>

#include <CLI/CLI.hpp>

#include "cli_common.hpp"

namespace fdcli {

/// LdmOptions from a JSON file {"unet": {...}, "vae": {...}, "text_encoder": {...}} of merge patches for
/// the inferred configs (e.g. {"unet": {"attention_head_dim": 8}}). Empty path = no patches.
inline fd::io::LdmOptions read_ldm_options(std::string const& path) {
  fd::io::LdmOptions o;
  if (path.empty()) return o;
  std::ifstream in(path);
  if (!in) fd::fail(fd::Errc::kIo, path + ": cannot open config patch");
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json const j = nlohmann::json::parse(ss.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) fd::fail(fd::Errc::kConfig, path + ": config patch is not a JSON object");
  for (auto const& [k, v] : j.items()) {
    if (!v.is_object()) fd::fail(fd::Errc::kConfig, path + ": field '" + k + "' must be a JSON object (a merge patch)");
    if (k == "unet") {
      o.unet_config = v;
    } else if (k == "vae") {
      o.vae_config = v;
    } else if (k == "text_encoder") {
      o.text_encoder_config = v;
    } else {
      fd::fail(fd::Errc::kConfig, path + ": unknown field '" + k + "' (known: unet, vae, text_encoder)");
    }
  }
  return o;
}

/// Writes one component: <dir>/config.json and <dir>/<weights> with every tensor of `ckpt` as stored.
inline void write_component(std::filesystem::path const& dir, std::string const& weights, fd::io::Checkpoint const& ckpt,
                            nlohmann::json const& config) {
  std::filesystem::create_directories(dir);
  {
    std::ofstream f(dir / "config.json");
    f << config.dump(2) << "\n";
    if (!f) fd::fail(fd::Errc::kIo, (dir / "config.json").string() + ": cannot write");
  }
  fd::io::SafeTensorsWriter w(dir / weights);
  for (auto const& n : ckpt.names()) {
    fd::io::TensorInfo const& ti = ckpt.info(n);
    w.add(n, ti.dtype, ti.shape, ckpt.bytes(n));  // a view's reshaped tensor has the same bytes
  }
  w.set_metadata({{"format", "pt"}});
  w.write();
  std::printf("wrote %s (%zu tensors)\n", (dir / weights).string().c_str(), ckpt.size());
}

struct ConvertLdmArgs {
  std::string checkpoint, output, config_patch;
};

inline void add_convert_ldm_command(CLI::App& app, ConvertLdmArgs& a, std::function<void()>& run) {
  auto* cmd = app.add_subcommand("convert-ldm",
                                 "Write a single-file SD 1.x checkpoint (.safetensors, LDM names) as a diffusers folder");
  cmd->add_option("--checkpoint", a.checkpoint, "single-file checkpoint, e.g. v1-5-pruned-emaonly.safetensors")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--output", a.output, "folder to create: unet/, vae/, text_encoder/ (config.json + weights)")->required();
  cmd->add_option("--config-patch", a.config_patch,
                  "JSON {\"unet\": {...}, \"vae\": {...}, \"text_encoder\": {...}} merged into the inferred configs")
      ->check(CLI::ExistingFile);
  cmd->callback([&run, &a] {
    run = [&a] {
      fd::io::LdmComponents sd = fd::io::open_ldm_checkpoint(a.checkpoint, read_ldm_options(a.config_patch));
      // Validate the UNet config before writing anything (the VAE and CLIP configs are checked by their loaders).
      (void)fd::models::UNetConfig::from_json(sd.unet_config, a.checkpoint + " (inferred UNet config)");
      std::filesystem::path const out(a.output);
      write_component(out / "unet", "diffusion_pytorch_model.safetensors", sd.unet, sd.unet_config);
      if (!sd.vae_config.is_null()) write_component(out / "vae", "diffusion_pytorch_model.safetensors", sd.vae, sd.vae_config);
      if (!sd.text_encoder_config.is_null()) write_component(out / "text_encoder", "model.safetensors", sd.text_encoder, sd.text_encoder_config);
      for (auto const& s : sd.ignored) std::printf("ignored %s\n", s.c_str());
    };
  });
}

}  // namespace fdcli
