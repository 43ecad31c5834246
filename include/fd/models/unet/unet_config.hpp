#pragma once
/// @file
/// UNet2DConditionModel configuration, read from a diffusers `config.json` with diffusers 0.23
/// semantics. Every field SD 1.x/2.x checkpoints use is honoured; a field with a value this model
/// cannot reproduce is rejected with an fd::error naming the field, never ignored.

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fd/error.hpp"
#include "fd/io/json_file.hpp"

namespace fd::models {

enum class DownBlockType { kCrossAttnDown, kDown };
enum class UpBlockType { kCrossAttnUp, kUp };

struct UNetConfig {
  int in_channels = 4;
  int out_channels = 4;
  int sample_size = 64;  ///< informational: any size runs
  bool center_input_sample = false;
  bool flip_sin_to_cos = true;
  float freq_shift = 0.0f;
  std::vector<DownBlockType> down_blocks{DownBlockType::kCrossAttnDown, DownBlockType::kCrossAttnDown,
                                         DownBlockType::kCrossAttnDown, DownBlockType::kDown};
  bool has_mid_block = true;  ///< mid_block_type "UNetMidBlock2DCrossAttn" (true) or null
  std::vector<UpBlockType> up_blocks{UpBlockType::kUp, UpBlockType::kCrossAttnUp, UpBlockType::kCrossAttnUp,
                                     UpBlockType::kCrossAttnUp};
  std::vector<int> block_out_channels{320, 640, 1280, 1280};
  std::vector<int> layers_per_block{2, 2, 2, 2};              ///< per down block; up blocks have one more
  std::vector<int> transformer_layers_per_block{1, 1, 1, 1};  ///< per down block
  std::vector<bool> only_cross_attention{false, false, false, false};
  std::vector<int> num_heads{8, 8, 8, 8};  ///< config `attention_head_dim`: the number of heads (diffusers naming)
  std::vector<int> cross_attention_dim{768, 768, 768, 768};
  int downsample_padding = 1;
  float mid_block_scale_factor = 1.0f;
  int norm_num_groups = 32;
  float norm_eps = 1e-5f;
  bool use_linear_projection = false;
  bool upcast_attention = false;  ///< no effect in float32 (softmax is computed in float32 anyway)
  bool resnet_scale_shift = false;
  int conv_in_kernel = 3;
  int conv_out_kernel = 3;
  int time_embedding_dim = 0;  ///< 0 = 4 * block_out_channels[0]

  int temb_dim() const { return time_embedding_dim > 0 ? time_embedding_dim : 4 * block_out_channels[0]; }
  int num_skips() const {
    int n = 1;
    for (std::size_t i = 0; i < down_blocks.size(); ++i) n += layers_per_block[i] + (i + 1 < down_blocks.size() ? 1 : 0);
    return n;
  }

  /// runwayml/stable-diffusion-v1-5 unet/config.json.
  static UNetConfig sd15() { return UNetConfig{}; }
  /// stabilityai/stable-diffusion-2-1 unet/config.json.
  static UNetConfig sd21() {
    UNetConfig c;
    c.num_heads = {5, 10, 20, 20};
    c.cross_attention_dim = {1024, 1024, 1024, 1024};
    c.use_linear_projection = true;
    c.upcast_attention = true;
    c.sample_size = 96;
    return c;
  }

  /// Parses a diffusers config object. `source` names the file in error messages.
  static UNetConfig from_json(nlohmann::json const& j, std::string const& source);
  static UNetConfig from_file(std::filesystem::path const& path);
};

namespace detail {

class ConfigReader {
 public:
  ConfigReader(nlohmann::json const& j, std::string source) : j_(j), source_(std::move(source)) {
    if (!j_.is_object()) fail(Errc::kConfig, source_ + ": config is not a JSON object");
  }

  [[noreturn]] void bad(std::string const& key, std::string const& why) const {
    fail(Errc::kConfig, source_ + ": field '" + key + "' " + why);
  }

  bool has(std::string const& key) const { return j_.contains(key) && !j_.at(key).is_null(); }
  nlohmann::json const& at(std::string const& key) const { return j_.at(key); }

  int get_int(std::string const& key, int def) {
    seen(key);
    if (!has(key)) return def;
    auto const& v = j_.at(key);
    if (!v.is_number_integer()) bad(key, "must be an integer, got " + v.dump());
    return v.get<int>();
  }
  float get_float(std::string const& key, float def) {
    seen(key);
    if (!has(key)) return def;
    auto const& v = j_.at(key);
    if (!v.is_number()) bad(key, "must be a number, got " + v.dump());
    return v.get<float>();
  }
  bool get_bool(std::string const& key, bool def) {
    seen(key);
    if (!has(key)) return def;
    auto const& v = j_.at(key);
    if (!v.is_boolean()) bad(key, "must be true or false, got " + v.dump());
    return v.get<bool>();
  }
  std::string get_string(std::string const& key, std::string const& def) {
    seen(key);
    if (!has(key)) return def;
    auto const& v = j_.at(key);
    if (!v.is_string()) bad(key, "must be a string, got " + v.dump());
    return v.get<std::string>();
  }
  std::vector<std::string> get_strings(std::string const& key, std::vector<std::string> def) {
    seen(key);
    if (!has(key)) return def;
    auto const& v = j_.at(key);
    if (!v.is_array() || v.empty()) bad(key, "must be a non-empty list of strings");
    std::vector<std::string> out;
    for (auto const& e : v) {
      if (!e.is_string()) bad(key, "must be a list of strings, got " + v.dump());
      out.push_back(e.get<std::string>());
    }
    return out;
  }
  /// An int or a list of n ints (diffusers accepts both for per-block settings).
  std::vector<int> get_int_or_list(std::string const& key, std::vector<int> def, std::size_t n) {
    seen(key);
    if (!has(key)) return def;
    auto const& v = j_.at(key);
    if (v.is_number_integer()) return std::vector<int>(n, v.get<int>());
    if (!v.is_array()) bad(key, "must be an integer or a list of integers, got " + v.dump());
    std::vector<int> out;
    for (auto const& e : v) {
      if (!e.is_number_integer()) bad(key, "must be a list of integers, got " + v.dump());
      out.push_back(e.get<int>());
    }
    if (out.size() != n) {
      bad(key, "has " + std::to_string(out.size()) + " entries, but there are " + std::to_string(n) + " down blocks");
    }
    return out;
  }
  std::vector<bool> get_bool_or_list(std::string const& key, bool def, std::size_t n) {
    seen(key);
    if (!has(key)) return std::vector<bool>(n, def);
    auto const& v = j_.at(key);
    if (v.is_boolean()) return std::vector<bool>(n, v.get<bool>());
    if (!v.is_array() || v.size() != n) bad(key, "must be a boolean or a list of " + std::to_string(n) + " booleans");
    std::vector<bool> out;
    for (auto const& e : v) {
      if (!e.is_boolean()) bad(key, "must be a list of booleans, got " + v.dump());
      out.push_back(e.get<bool>());
    }
    return out;
  }
  /// The field must be absent, null, or equal to one of the values this model implements.
  void require_default(std::string const& key, nlohmann::json const& allowed, std::string const& why) {
    seen(key);
    if (!j_.contains(key)) return;
    auto const& v = j_.at(key);
    if (v.is_null() || v == allowed) return;
    bad(key, "= " + v.dump() + " is not supported: " + why);
  }
  void mark(std::string const& key) { seen(key); }

  /// Unknown fields are accepted only with a null/false/default-looking value: anything else could
  /// change the network in a way we would silently get wrong.
  void reject_unknown() const {
    for (auto it = j_.begin(); it != j_.end(); ++it) {
      std::string const& k = it.key();
      if (k.empty() || k[0] == '_') continue;
      bool known = false;
      for (auto const& s : seen_) known = known || s == k;
      if (known) continue;
      auto const& v = it.value();
      if (v.is_null() || (v.is_boolean() && !v.get<bool>())) continue;
      fail(Errc::kConfig, source_ + ": unknown field '" + k + "' = " + v.dump() +
                              " (this UNet implements diffusers 0.23's UNet2DConditionModel options)");
    }
  }

 private:
  void seen(std::string const& key) { seen_.push_back(key); }
  nlohmann::json const& j_;
  std::string source_;
  std::vector<std::string> seen_;
};

}  // namespace detail

inline UNetConfig UNetConfig::from_json(nlohmann::json const& j, std::string const& source) {
  detail::ConfigReader r(j, source);
  UNetConfig c;
  if (j.is_object() && j.contains("_class_name")) {
    auto const& cls = j.at("_class_name");
    if (!cls.is_string() || cls.get<std::string>() != "UNet2DConditionModel") {
      r.bad("_class_name", "= " + cls.dump() + ": expected \"UNet2DConditionModel\"");
    }
  }
  c.in_channels = r.get_int("in_channels", 4);
  c.out_channels = r.get_int("out_channels", 4);
  if (r.has("sample_size") && r.at("sample_size").is_array()) {
    r.mark("sample_size");
  } else {
    c.sample_size = r.get_int("sample_size", 64);
  }
  c.center_input_sample = r.get_bool("center_input_sample", false);
  c.flip_sin_to_cos = r.get_bool("flip_sin_to_cos", true);
  c.freq_shift = r.get_float("freq_shift", 0.0f);

  auto const downs = r.get_strings("down_block_types", {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                                        "CrossAttnDownBlock2D", "DownBlock2D"});
  c.down_blocks.clear();
  for (auto const& s : downs) {
    if (s == "CrossAttnDownBlock2D") {
      c.down_blocks.push_back(DownBlockType::kCrossAttnDown);
    } else if (s == "DownBlock2D") {
      c.down_blocks.push_back(DownBlockType::kDown);
    } else {
      r.bad("down_block_types", "contains unknown block type \"" + s +
                                    "\" (known: CrossAttnDownBlock2D, DownBlock2D)");
    }
  }
  auto const ups = r.get_strings("up_block_types", {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                                                    "CrossAttnUpBlock2D"});
  c.up_blocks.clear();
  for (auto const& s : ups) {
    if (s == "CrossAttnUpBlock2D") {
      c.up_blocks.push_back(UpBlockType::kCrossAttnUp);
    } else if (s == "UpBlock2D") {
      c.up_blocks.push_back(UpBlockType::kUp);
    } else {
      r.bad("up_block_types", "contains unknown block type \"" + s + "\" (known: CrossAttnUpBlock2D, UpBlock2D)");
    }
  }
  std::size_t const n = c.down_blocks.size();
  if (c.up_blocks.size() != n) r.bad("up_block_types", "must have as many entries as down_block_types");
  {
    std::string const mid = r.get_string("mid_block_type", "UNetMidBlock2DCrossAttn");
    if (j.contains("mid_block_type") && j.at("mid_block_type").is_null()) {
      c.has_mid_block = false;
    } else if (mid != "UNetMidBlock2DCrossAttn") {
      r.bad("mid_block_type", "= \"" + mid + "\" is unknown (known: UNetMidBlock2DCrossAttn or null)");
    }
  }
  c.block_out_channels = r.get_int_or_list("block_out_channels", {320, 640, 1280, 1280}, n);
  if (!r.has("block_out_channels") && n != 4) r.bad("block_out_channels", "is required when there are not 4 blocks");
  c.layers_per_block = r.get_int_or_list("layers_per_block", std::vector<int>(n, 2), n);
  c.transformer_layers_per_block = r.get_int_or_list("transformer_layers_per_block", std::vector<int>(n, 1), n);
  c.only_cross_attention = r.get_bool_or_list("only_cross_attention", false, n);
  c.num_heads = r.get_int_or_list("attention_head_dim", std::vector<int>(n, 8), n);
  c.cross_attention_dim = r.get_int_or_list("cross_attention_dim", std::vector<int>(n, 1280), n);
  c.downsample_padding = r.get_int("downsample_padding", 1);
  c.mid_block_scale_factor = r.get_float("mid_block_scale_factor", 1.0f);
  if (j.contains("norm_num_groups") && j.at("norm_num_groups").is_null()) {
    r.bad("norm_num_groups", "= null is not supported (SD UNets normalise with groups; set an integer)");
  }
  c.norm_num_groups = r.get_int("norm_num_groups", 32);
  c.norm_eps = r.get_float("norm_eps", 1e-5f);
  c.use_linear_projection = r.get_bool("use_linear_projection", false);
  c.upcast_attention = r.get_bool("upcast_attention", false);
  c.conv_in_kernel = r.get_int("conv_in_kernel", 3);
  c.conv_out_kernel = r.get_int("conv_out_kernel", 3);
  c.time_embedding_dim = r.get_int("time_embedding_dim", 0);
  {
    std::string const act = r.get_string("act_fn", "silu");
    if (act != "silu" && act != "swish") r.bad("act_fn", "= \"" + act + "\" is unknown for this UNet (known: silu, swish)");
  }
  {
    std::string const shift = r.get_string("resnet_time_scale_shift", "default");
    if (shift == "scale_shift") {
      c.resnet_scale_shift = true;
    } else if (shift != "default") {
      r.bad("resnet_time_scale_shift", "= \"" + shift + "\" is unknown (known: default, scale_shift)");
    }
  }
  {
    std::string const tet = r.get_string("time_embedding_type", "positional");
    if (tet != "positional") r.bad("time_embedding_type", "= \"" + tet + "\" is unknown (known: positional)");
  }
  // Options with no effect on the SD block types (they only act on IF's Resnet/SimpleCrossAttn blocks)
  // or with no effect at inference.
  r.mark("dropout");
  r.mark("resnet_out_scale_factor");
  r.mark("resnet_skip_time_act");
  r.mark("addition_embed_type_num_heads");
  r.require_default("attention_type", "default", "only \"default\" attention exists in SD UNets");
  r.require_default("dual_cross_attention", false, "dual cross-attention (Versatile Diffusion) is a different model");
  r.require_default("class_embed_type", nullptr, "class-conditioned UNets (IF stage II, upscalers) are separate models");
  r.require_default("num_class_embeds", nullptr, "class-conditioned UNets are separate models");
  r.require_default("addition_embed_type", nullptr, "added text/time embeddings (IF, SDXL) are separate models");
  r.require_default("addition_time_embed_dim", nullptr, "SDXL micro-conditioning is a separate model");
  r.require_default("projection_class_embeddings_input_dim", nullptr, "SDXL micro-conditioning is a separate model");
  r.require_default("encoder_hid_dim", nullptr, "an encoder_hid_proj (IF) is a separate model");
  r.require_default("encoder_hid_dim_type", nullptr, "an encoder_hid_proj (IF) is a separate model");
  r.require_default("time_cond_proj_dim", nullptr, "timestep_cond (LCM) is not part of SD 1.x/2.x");
  r.require_default("timestep_post_act", nullptr, "SD time embeddings have no post activation");
  r.require_default("time_embedding_act_fn", nullptr, "SD time embeddings have no extra activation");
  r.require_default("class_embeddings_concat", false, "class embeddings are not part of SD 1.x/2.x");
  r.require_default("cross_attention_norm", nullptr, "SD cross-attention has no context norm");
  r.require_default("mid_block_only_cross_attention", false, "SD mid blocks use self-attention");
  r.require_default("reverse_transformer_layers_per_block", nullptr, "up blocks mirror transformer_layers_per_block");
  if (j.contains("num_attention_heads") && !j.at("num_attention_heads").is_null()) {
    r.bad("num_attention_heads", "must be null: diffusers 0.23 rejects it and reads the head count from attention_head_dim");
  }
  r.mark("num_attention_heads");
  r.reject_unknown();

  auto positive = [&](std::string const& key, std::vector<int> const& v) {
    for (int x : v) {
      if (x <= 0) r.bad(key, "must be positive");
    }
  };
  positive("block_out_channels", c.block_out_channels);
  positive("attention_head_dim", c.num_heads);
  positive("cross_attention_dim", c.cross_attention_dim);
  positive("transformer_layers_per_block", c.transformer_layers_per_block);
  positive("layers_per_block", c.layers_per_block);
  if (c.in_channels <= 0) r.bad("in_channels", "must be positive");
  if (c.out_channels <= 0) r.bad("out_channels", "must be positive");
  if (c.norm_num_groups <= 0) r.bad("norm_num_groups", "must be positive");
  if (c.conv_in_kernel % 2 == 0 || c.conv_in_kernel <= 0) r.bad("conv_in_kernel", "must be odd and positive");
  if (c.conv_out_kernel % 2 == 0 || c.conv_out_kernel <= 0) r.bad("conv_out_kernel", "must be odd and positive");
  for (std::size_t i = 0; i < n; ++i) {
    int const ch = c.block_out_channels[i];
    if (ch % c.norm_num_groups != 0) {
      r.bad("norm_num_groups", "= " + std::to_string(c.norm_num_groups) + " does not divide block_out_channels[" +
                                   std::to_string(i) + "] = " + std::to_string(ch));
    }
    bool const attn = c.down_blocks[i] == DownBlockType::kCrossAttnDown || c.up_blocks[n - 1 - i] == UpBlockType::kCrossAttnUp;
    if (attn && ch % c.num_heads[i] != 0) {
      r.bad("attention_head_dim", "[" + std::to_string(i) + "] = " + std::to_string(c.num_heads[i]) +
                                      " heads do not divide " + std::to_string(ch) + " channels");
    }
  }
  return c;
}

inline UNetConfig UNetConfig::from_file(std::filesystem::path const& path) {
  return from_json(io::read_json_file(path, "UNet config"), path.string());
}

}  // namespace fd::models
