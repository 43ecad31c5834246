#pragma once
/// @file
/// fd::models::ClipTextConfig: the fields of a transformers `CLIPTextModel` config.json that change
/// the computation, validated.

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "fd/error.hpp"
#include "fd/io/json_file.hpp"

namespace fd::models {

enum class ClipActivation {
  kQuickGelu,  ///< "quick_gelu": x * sigmoid(1.702 x) (OpenAI CLIP, SD 1.x)
  kGelu,       ///< "gelu": erf GELU (OpenCLIP, SD 2.x)
};

struct ClipTextConfig {
  int vocab_size = 49408;
  int hidden_size = 768;
  int intermediate_size = 3072;
  int num_hidden_layers = 12;
  int num_attention_heads = 12;
  int max_position_embeddings = 77;
  ClipActivation hidden_act = ClipActivation::kQuickGelu;
  float layer_norm_eps = 1e-5f;

  int head_dim() const { return hidden_size / num_attention_heads; }

  /// openai/clip-vit-large-patch14's text tower: Stable Diffusion 1.x's `text_encoder/config.json`.
  static ClipTextConfig sd15() { return {}; }
  /// stabilityai/stable-diffusion-2-1's `text_encoder/config.json` (OpenCLIP ViT-H, 23 layers kept).
  static ClipTextConfig sd21() {
    return {.vocab_size = 49408, .hidden_size = 1024, .intermediate_size = 4096, .num_hidden_layers = 23,
            .num_attention_heads = 16, .max_position_embeddings = 77, .hidden_act = ClipActivation::kGelu,
            .layer_norm_eps = 1e-5f};
  }

  /// Reads the fields above; a full CLIPModel config's `text_config` is accepted too. Other keys
  /// (architectures, dropout, token ids, projection_dim, ...) do not change inference and are ignored.
  /// Throws kConfig naming `source` and the field for a missing, malformed or unsupported value.
  static ClipTextConfig from_json(nlohmann::json const& root, std::string const& source) {
    nlohmann::json const& j = root.contains("text_config") && root["text_config"].is_object() ? root["text_config"] : root;
    if (!j.is_object()) fail(Errc::kConfig, source + ": expected a JSON object");
    ClipTextConfig c;
    auto positive = [&](char const* key, int& dst, bool required) {
      auto it = j.find(key);
      if (it == j.end() || it->is_null()) {
        if (required) fail(Errc::kConfig, source + ": field '" + key + "' is missing");
        return;
      }
      if (!it->is_number_integer() || it->get<long long>() <= 0 || it->get<long long>() > (1LL << 30)) {
        fail(Errc::kConfig, source + ": field '" + key + "' must be a positive integer, got " + it->dump());
      }
      dst = it->get<int>();
    };
    positive("vocab_size", c.vocab_size, true);
    positive("hidden_size", c.hidden_size, true);
    positive("intermediate_size", c.intermediate_size, true);
    positive("num_hidden_layers", c.num_hidden_layers, true);
    positive("num_attention_heads", c.num_attention_heads, true);
    positive("max_position_embeddings", c.max_position_embeddings, true);
    if (c.hidden_size % c.num_attention_heads != 0) {
      fail(Errc::kConfig, source + ": hidden_size " + std::to_string(c.hidden_size) + " is not divisible by " +
                              "num_attention_heads " + std::to_string(c.num_attention_heads));
    }
    if (auto it = j.find("hidden_act"); it != j.end()) {
      std::string const act = it->is_string() ? it->get<std::string>() : it->dump();
      if (act == "quick_gelu") {
        c.hidden_act = ClipActivation::kQuickGelu;
      } else if (act == "gelu") {
        c.hidden_act = ClipActivation::kGelu;
      } else {
        fail(Errc::kConfig, source + ": field 'hidden_act' has unsupported value '" + act + "' (expected quick_gelu or gelu)");
      }
    }
    if (auto it = j.find("layer_norm_eps"); it != j.end()) {
      if (!it->is_number() || !(it->get<double>() > 0) || it->get<double>() > 1) {
        fail(Errc::kConfig, source + ": field 'layer_norm_eps' must be a small positive number, got " + it->dump());
      }
      c.layer_norm_eps = it->get<float>();
    }
    return c;
  }

  static ClipTextConfig from_file(std::filesystem::path const& path) {
    return from_json(io::read_json_file(path, "text encoder config"), path.string());
  }
};

}  // namespace fd::models
