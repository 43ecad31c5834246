#pragma once
/// @file
/// ControlNetModel's configuration (diffusers 0.23 `config.json`): the UNet encoder's fields plus the
/// conditioning embedding's.

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fd/io/json_file.hpp"
#include "fd/models/unet/unet_config.hpp"

namespace fd::models {

struct ControlNetConfig {
  /// The trunk: conv_in, time embedding, down blocks, mid block (the UNet's fields and rules).
  UNetConfig trunk;
  int conditioning_channels = 3;
  std::vector<int> conditioning_embedding_out_channels{16, 32, 96, 256};
  /// "bgr" flips the control image's channels before the conditioning embedding (diffusers does so).
  bool bgr = false;
  /// Shuffle-style ControlNets: every residual is averaged over its spatial positions.
  bool global_pool_conditions = false;

  static ControlNetConfig from_json(nlohmann::json const& j, std::string const& source) {
    if (!j.is_object()) fail(Errc::kConfig, source + ": config is not a JSON object");
    if (j.contains("_class_name") && j.at("_class_name") != "ControlNetModel") {
      fail(Errc::kConfig, source + ": field '_class_name' = " + j.at("_class_name").dump() +
                              ": expected \"ControlNetModel\"");
    }
    ControlNetConfig c;
    nlohmann::json t = j;
    t.erase("_class_name");
    auto take = [&](char const* key) {
      nlohmann::json v = t.contains(key) ? t.at(key) : nlohmann::json();
      t.erase(key);
      return v;
    };
    auto bad = [&](std::string const& key, std::string const& why) {
      fail(Errc::kConfig, source + ": field '" + key + "' " + why);
    };
    if (auto v = take("conditioning_channels"); !v.is_null()) {
      if (!v.is_number_integer() || v.get<int>() <= 0) bad("conditioning_channels", "must be a positive integer");
      c.conditioning_channels = v.get<int>();
    }
    if (auto v = take("conditioning_embedding_out_channels"); !v.is_null()) {
      if (!v.is_array() || v.empty()) bad("conditioning_embedding_out_channels", "must be a non-empty list of integers");
      c.conditioning_embedding_out_channels.clear();
      for (auto const& e : v) {
        if (!e.is_number_integer() || e.get<int>() <= 0) {
          bad("conditioning_embedding_out_channels", "must hold positive integers, got " + v.dump());
        }
        c.conditioning_embedding_out_channels.push_back(e.get<int>());
      }
    }
    if (auto v = take("controlnet_conditioning_channel_order"); !v.is_null()) {
      if (v != "rgb" && v != "bgr") bad("controlnet_conditioning_channel_order", "= " + v.dump() + " (known: rgb, bgr)");
      c.bgr = v == "bgr";
    }
    if (auto v = take("global_pool_conditions"); !v.is_null()) {
      if (!v.is_boolean()) bad("global_pool_conditions", "must be true or false");
      c.global_pool_conditions = v.get<bool>();
    }
    // The trunk has no up blocks: mirror the down blocks so the UNet rules (and their checks) apply.
    if (!t.contains("up_block_types") && t.contains("down_block_types") && t.at("down_block_types").is_array()) {
      nlohmann::json ups = nlohmann::json::array();
      for (auto it = t.at("down_block_types").rbegin(); it != t.at("down_block_types").rend(); ++it) {
        ups.push_back(*it == "CrossAttnDownBlock2D" ? "CrossAttnUpBlock2D" : "UpBlock2D");
      }
      t["up_block_types"] = ups;
    }
    c.trunk = UNetConfig::from_json(t, source);
    return c;
  }

  static ControlNetConfig from_file(std::filesystem::path const& path) {
    return from_json(io::read_json_file(path, "ControlNet config"), path.string());
  }
};

}  // namespace fd::models
