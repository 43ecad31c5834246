#pragma once
/// @file
/// Binds a module's parameters to a checkpoint by name: every parameter must be present with its
/// exact shape (any floating dtype, converted to the parameter's dtype), and every tensor in the
/// checkpoint must be consumed, so a checkpoint for a different architecture fails loudly.

#include <string>

#include "fd/io/checkpoint.hpp"

namespace fd::nn {

/// Loads every parameter `module.visit` reports from `ckpt` (names prefixed by `prefix`), then
/// rejects tensors nothing consumed. Errors name the checkpoint file and the full parameter name.
template <class B, class Module>
void load_parameters(B const& be, Module& module, io::Checkpoint& ckpt, std::string const& prefix,
                     bool reject_unused = true) {
  module.visit(
      [&](std::string const& name, Tensor<B>& dst) {
        std::string const full = prefix + name;
        if (!ckpt.contains(full)) {
          std::string const note = ckpt.missing_note(full);
          fail(Errc::kMissingTensor, ckpt.path().string() + ": missing tensor '" + full + "' (expected shape " +
                                         dst.shape().str() + (note.empty() ? "" : "; " + note) + ")");
        }
        // Integer weights would convert silently; no real checkpoint stores them, so it is corruption.
        DType const stored = ckpt.info(full).dtype;
        if (!is_floating(stored)) {
          fail(Errc::kDTypeMismatch, ckpt.file_of(full).string() + ": tensor " + ckpt.describe(full) + " is " +
                                         std::string(dtype_name(stored)) + "; weights must be F32, F16 or BF16");
        }
        Tensor<B> src = ckpt.load(be, full, dst.shape(), dst.dtype());
        src.copy_to(be, dst);
      },
      std::string());
  if (reject_unused) ckpt.require_all_used("model " + ckpt.path().string());
}

}  // namespace fd::nn
