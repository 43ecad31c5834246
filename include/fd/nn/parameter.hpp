#pragma once
/// @file
/// How modules expose their parameters: every module has
///   template <class V> void visit(V&& v, std::string const& prefix)
/// calling v(prefix + "<checkpoint name>", tensor) for each parameter it owns, in checkpoint naming
/// (`down_blocks.0.resnets.1.conv1.weight`). Parameters are allocated at construction with their
/// expected shapes; loaders copy checkpoint data into them, so a loader sees the expected shape and
/// can report a mismatch with the full dotted name.

#include <string>

#include "fd/backend/traits.hpp"
#include "fd/core/tensor.hpp"

namespace fd::nn {

/// Allocates a parameter of the given shape on backend be, in the backend's parameter dtype (f32 on
/// the CPU; the storage dtype on the GPU), contents unspecified until loaded.
template <class B>
Tensor<B> parameter(B const& be, Shape shape) {
  return Tensor<B>::empty(be, shape, backend::parameter_dtype(be));
}

}  // namespace fd::nn
