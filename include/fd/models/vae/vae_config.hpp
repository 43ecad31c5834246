#pragma once
/// @file
/// Configurations of the two image decoders, read from a diffusers `vae/config.json`
/// (diffusers 0.23 semantics): AutoencoderKL (the Stable Diffusion VAE) and AutoencoderTiny (TAESD).
/// Only the decoder half matters here; encoder fields are read for validation and otherwise ignored.
/// A value this implementation cannot reproduce is rejected with kConfig naming the field and file.

#include <filesystem>
#include <initializer_list>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fd/error.hpp"
#include "fd/io/json_file.hpp"
#include "fd/models/unet/unet_config.hpp"  // detail::ConfigReader

namespace fd::models {

namespace vae {

/// Reads and parses a decoder config file; kIo / kConfig naming it.
inline nlohmann::json read_json_file(std::filesystem::path const& path, char const* what) {
  return io::read_json_file(path, std::string(what) + " config");
}

/// The class named by "_class_name", or "" when absent.
inline std::string class_name_of(nlohmann::json const& j) {
  if (!j.is_object() || !j.contains("_class_name") || !j.at("_class_name").is_string()) return "";
  return j.at("_class_name").get<std::string>();
}

/// Fields outside `known` are accepted only when null or false (as for the UNet): anything else could
/// change the network in a way we would silently get wrong.
inline void reject_unknown_fields(nlohmann::json const& j, std::string const& source,
                                  std::initializer_list<char const*> known, char const* model) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    std::string const& k = it.key();
    if (k.empty() || k[0] == '_') continue;
    bool found = false;
    for (char const* s : known) found = found || k == s;
    if (found) continue;
    auto const& v = it.value();
    if (v.is_null() || (v.is_boolean() && !v.get<bool>())) continue;
    fail(Errc::kConfig, source + ": unknown field '" + k + "' = " + v.dump() + " (this " + model +
                            " implements diffusers 0.23's options)");
  }
}

inline void require_class(nlohmann::json const& j, detail::ConfigReader& r, char const* expected) {
  if (!j.contains("_class_name")) return;
  auto const& cls = j.at("_class_name");
  if (!cls.is_string() || cls.get<std::string>() != expected) {
    r.bad("_class_name", "= " + cls.dump() + ": expected \"" + expected + "\"");
  }
}

}  // namespace vae

/// diffusers AutoencoderKL. The decoder runs `block_out_channels` reversed, with layers_per_block + 1
/// resnets per up block; GroupNorm eps is 1e-6 (fixed in diffusers' code, not configurable).
struct AutoencoderKLConfig {
  int in_channels = 3;
  int out_channels = 3;
  int latent_channels = 4;
  std::vector<int> block_out_channels{128, 256, 512, 512};
  int layers_per_block = 2;
  int norm_num_groups = 32;
  int sample_size = 512;         ///< informational: any size decodes
  float scaling_factor = 0.18215f;
  bool mid_block_add_attention = true;

  int scale_factor() const { return 1 << (static_cast<int>(block_out_channels.size()) - 1); }

  /// runwayml/stable-diffusion-v1-5 vae/config.json (also SD 2.x and text-to-video-ms-1.7b).
  static AutoencoderKLConfig sd15() { return AutoencoderKLConfig{}; }

  static AutoencoderKLConfig from_json(nlohmann::json const& j, std::string const& source);
  static AutoencoderKLConfig from_file(std::filesystem::path const& path) {
    return from_json(vae::read_json_file(path, "AutoencoderKL"), path.string());
  }
};

/// diffusers AutoencoderTiny (TAESD). Only ReLU and equal decoder widths exist in diffusers' DecoderTiny.
struct AutoencoderTinyConfig {
  int latent_channels = 4;
  int out_channels = 3;
  std::vector<int> decoder_block_out_channels{64, 64, 64, 64};
  std::vector<int> num_decoder_blocks{3, 3, 3, 1};
  int upsampling_scaling_factor = 2;
  float scaling_factor = 1.0f;

  int scale_factor() const {
    int f = 1;
    for (std::size_t i = 1; i < num_decoder_blocks.size(); ++i) f *= upsampling_scaling_factor;
    return f;
  }

  /// madebyollin/taesd (the diffusers-format TAESD for SD 1.x/2.x latents).
  static AutoencoderTinyConfig taesd() { return AutoencoderTinyConfig{}; }

  static AutoencoderTinyConfig from_json(nlohmann::json const& j, std::string const& source);
  static AutoencoderTinyConfig from_file(std::filesystem::path const& path) {
    return from_json(vae::read_json_file(path, "AutoencoderTiny"), path.string());
  }
};

inline AutoencoderKLConfig AutoencoderKLConfig::from_json(nlohmann::json const& j, std::string const& source) {
  detail::ConfigReader r(j, source);
  vae::require_class(j, r, "AutoencoderKL");
  vae::reject_unknown_fields(j, source,
                                {"in_channels", "out_channels", "latent_channels", "block_out_channels",
                                 "layers_per_block", "norm_num_groups", "sample_size", "scaling_factor",
                                 "down_block_types", "up_block_types", "act_fn", "force_upcast",
                                 "use_quant_conv", "use_post_quant_conv", "mid_block_add_attention",
                                 "shift_factor", "latents_mean", "latents_std"},
                                "AutoencoderKL");
  AutoencoderKLConfig c;
  c.in_channels = r.get_int("in_channels", 3);
  c.out_channels = r.get_int("out_channels", 3);
  c.latent_channels = r.get_int("latent_channels", 4);
  auto const downs = r.get_strings("down_block_types", {"DownEncoderBlock2D"});
  for (auto const& s : downs) {
    if (s != "DownEncoderBlock2D") {
      r.bad("down_block_types", "contains unknown block type \"" + s + "\" (known: DownEncoderBlock2D)");
    }
  }
  auto const ups = r.get_strings("up_block_types", {"UpDecoderBlock2D"});
  for (auto const& s : ups) {
    if (s != "UpDecoderBlock2D") r.bad("up_block_types", "contains unknown block type \"" + s + "\" (known: UpDecoderBlock2D)");
  }
  std::size_t const n = ups.size();
  c.block_out_channels = r.get_int_or_list("block_out_channels", std::vector<int>(n, 64), n);
  c.layers_per_block = r.get_int("layers_per_block", 1);
  c.norm_num_groups = r.get_int("norm_num_groups", 32);
  if (r.has("sample_size") && r.at("sample_size").is_array()) {
    r.mark("sample_size");
  } else {
    c.sample_size = r.get_int("sample_size", 32);
  }
  c.scaling_factor = r.get_float("scaling_factor", 0.18215f);
  {
    std::string const act = r.get_string("act_fn", "silu");
    if (act != "silu" && act != "swish") r.bad("act_fn", "= \"" + act + "\" is unknown for this VAE (known: silu, swish)");
  }
  r.mark("force_upcast");  // a dtype policy for float16 runs; we decode in float32
  r.require_default("use_quant_conv", true, "a VAE without quant convs is not implemented");
  r.require_default("use_post_quant_conv", true, "a VAE without post_quant_conv is not implemented");
  r.require_default("shift_factor", nullptr, "latent shifting (SD3/Flux VAEs) is not implemented");
  r.require_default("latents_mean", nullptr, "per-channel latent statistics (SDXL-style) are not implemented");
  r.require_default("latents_std", nullptr, "per-channel latent statistics (SDXL-style) are not implemented");
  c.mid_block_add_attention = r.get_bool("mid_block_add_attention", true);

  if (c.block_out_channels.empty()) r.bad("block_out_channels", "must not be empty");
  if (downs.size() != n) r.bad("down_block_types", "must have as many entries as up_block_types");
  for (int ch : c.block_out_channels) {
    if (ch <= 0) r.bad("block_out_channels", "must be positive");
    if (c.norm_num_groups > 0 && ch % c.norm_num_groups != 0) {
      r.bad("norm_num_groups", "= " + std::to_string(c.norm_num_groups) + " does not divide block_out_channels entry " +
                                   std::to_string(ch));
    }
  }
  if (c.norm_num_groups <= 0) r.bad("norm_num_groups", "must be positive");
  if (c.layers_per_block <= 0) r.bad("layers_per_block", "must be positive");
  if (c.latent_channels <= 0) r.bad("latent_channels", "must be positive");
  if (c.out_channels <= 0) r.bad("out_channels", "must be positive");
  if (c.in_channels <= 0) r.bad("in_channels", "must be positive");
  if (!(c.scaling_factor > 0.0f)) r.bad("scaling_factor", "must be positive");
  return c;
}

inline AutoencoderTinyConfig AutoencoderTinyConfig::from_json(nlohmann::json const& j, std::string const& source) {
  detail::ConfigReader r(j, source);
  vae::require_class(j, r, "AutoencoderTiny");
  vae::reject_unknown_fields(j, source,
                                {"in_channels", "out_channels", "latent_channels", "encoder_block_out_channels",
                                 "decoder_block_out_channels", "num_encoder_blocks", "num_decoder_blocks",
                                 "act_fn", "latent_magnitude", "latent_shift", "force_upcast",
                                 "scaling_factor", "upsampling_scaling_factor", "upsample_fn", "shift_factor"},
                                "AutoencoderTiny");
  AutoencoderTinyConfig c;
  r.mark("in_channels");                 // encoder only
  r.mark("encoder_block_out_channels");  // encoder only
  r.mark("num_encoder_blocks");          // encoder only
  r.mark("latent_shift");                // encoder output quantisation only
  r.mark("latent_magnitude");            // ditto; DecoderTiny's clamp is tanh(z/3)*3 regardless
  r.mark("force_upcast");
  c.out_channels = r.get_int("out_channels", 3);
  c.latent_channels = r.get_int("latent_channels", 4);
  c.num_decoder_blocks = r.get_int_or_list("num_decoder_blocks", {3, 3, 3, 1}, 4);
  std::size_t const n = c.num_decoder_blocks.size();
  c.decoder_block_out_channels = r.get_int_or_list("decoder_block_out_channels", std::vector<int>(n, 64), n);
  c.upsampling_scaling_factor = r.get_int("upsampling_scaling_factor", 2);
  c.scaling_factor = r.get_float("scaling_factor", 1.0f);
  {
    std::string const act = r.get_string("act_fn", "relu");
    if (act != "relu") r.bad("act_fn", "= \"" + act + "\" is unknown for this TAESD decoder (known: relu)");
  }
  {
    std::string const up = r.get_string("upsample_fn", "nearest");
    if (up != "nearest") r.bad("upsample_fn", "= \"" + up + "\" is unknown (known: nearest)");
  }
  r.require_default("shift_factor", nullptr, "latent shifting is not implemented");
  for (int ch : c.decoder_block_out_channels) {
    if (ch != c.decoder_block_out_channels[0]) {
      r.bad("decoder_block_out_channels", "must all be equal: diffusers' DecoderTiny cannot run unequal widths");
    }
    if (ch <= 0) r.bad("decoder_block_out_channels", "must be positive");
  }
  for (int b : c.num_decoder_blocks) {
    if (b < 0) r.bad("num_decoder_blocks", "must not be negative");
  }
  if (c.upsampling_scaling_factor <= 0) r.bad("upsampling_scaling_factor", "must be positive");
  if (c.latent_channels <= 0) r.bad("latent_channels", "must be positive");
  if (c.out_channels <= 0) r.bad("out_channels", "must be positive");
  if (!(c.scaling_factor > 0.0f)) r.bad("scaling_factor", "must be positive");
  return c;
}

}  // namespace fd::models
