#pragma once
/// @file
/// fd::ModelIndex: a diffusers pipeline folder's `model_index.json`, which names the class of every
/// component folder (or null for an absent one, e.g. `vae` of a pixel-space model).

#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "fd/error.hpp"
#include "fd/io/json_file.hpp"

namespace fd {

/// The parsed `model_index.json` of a pipeline folder.
/// @code
///   auto idx = fd::ModelIndex::from_file("stable-diffusion-v1-5/model_index.json");
///   if (idx.has("vae")) ...;
/// @endcode
struct ModelIndex {
  struct Component {
    std::string library;     ///< "diffusers", "transformers"
    std::string class_name;  ///< "UNet2DConditionModel", "CLIPTextModel", ...
  };

  std::string pipeline_class;                  ///< `_class_name`, e.g. "StableDiffusionPipeline"
  std::map<std::string, Component> components;  ///< present components only (null entries are left out)
  std::filesystem::path path;                  ///< the file it was read from, for messages

  bool has(std::string const& name) const { return components.contains(name); }

  /// The component's class, or kConfig naming the file when the index does not have it.
  Component const& require(std::string const& name) const {
    auto it = components.find(name);
    if (it == components.end()) {
      fail(Errc::kConfig, path.string() + ": component '" + name + "' is missing or null; this pipeline needs it");
    }
    return it->second;
  }

  /// Parses `model_index.json`. Entries are `"name": [library, class]` or `[null, null]`; keys starting
  /// with '_' are metadata; scalar entries (`requires_safety_checker`, ...) are options we do not need.
  static ModelIndex from_json(nlohmann::json const& j, std::filesystem::path const& source) {
    if (!j.is_object()) fail(Errc::kFormat, source.string() + ": expected a JSON object");
    ModelIndex idx;
    idx.path = source;
    if (auto it = j.find("_class_name"); it != j.end() && it->is_string()) idx.pipeline_class = it->get<std::string>();
    for (auto const& [key, value] : j.items()) {
      if (key.starts_with("_") || !value.is_array()) continue;
      if (value.size() != 2) {
        fail(Errc::kFormat, source.string() + ": component '" + key + "' must be [library, class] or [null, null]");
      }
      if (value[0].is_null() && value[1].is_null()) continue;
      if (!value[0].is_string() || !value[1].is_string()) {
        fail(Errc::kFormat, source.string() + ": component '" + key + "' must be [library, class] strings");
      }
      idx.components.emplace(key, Component{value[0].get<std::string>(), value[1].get<std::string>()});
    }
    return idx;
  }

  static ModelIndex from_file(std::filesystem::path const& file) {
    return from_json(io::read_json_file(file, "it (a diffusers pipeline folder has a model_index.json)"), file);
  }
};

}  // namespace fd
