#pragma once
/// @file
/// fd::models::load_model_folder: the one way a model loads from its diffusers/transformers folder —
/// `config.json` through the model's Config, the weights through io::Checkpoint::open_model_dir, then the
/// model's own `from_checkpoint` (which knows what its checkpoint may hold beyond its parameters).

#include <filesystem>
#include <string_view>
#include <utility>

#include "fd/io/checkpoint.hpp"

namespace fd::models {

/// @tparam M a model with `using Config`, `static Config Config::from_file(path)` and
///           `static M from_checkpoint(B const&, Config, io::Checkpoint&)`.
/// @param stem weights file stem: "diffusion_pytorch_model" (diffusers) or "model" (transformers).
template <class M, class B>
M load_model_folder(B const& be, std::filesystem::path const& dir, std::string_view stem, std::string_view variant) {
  typename M::Config cfg = M::Config::from_file(dir / "config.json");
  io::Checkpoint ckpt = io::Checkpoint::open_model_dir(dir, stem, variant);
  return M::from_checkpoint(be, std::move(cfg), ckpt);
}

}  // namespace fd::models
