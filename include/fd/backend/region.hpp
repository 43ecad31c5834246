#pragma once
/// @file
/// backend::Regions<B>: where a model marks fixed-shape work (one UNet encoder or decoder call) that a
/// backend may record once and replay (the CUDA backend's graphs). The default runs the work directly
/// and costs nothing; a backend opts in by specialising Regions (fd/backend/cuda/graph.hpp).

#include <string>
#include <vector>

#include "fd/core/tensor.hpp"

namespace fd::backend {

template <class B>
struct Regions {
  /// false: models call their work directly and never build the region's inputs.
  static constexpr bool enabled = false;
  explicit Regions(B const&) {}
  /// Runs fn(inputs) and returns its outputs. A recording backend may run it with copies of the
  /// inputs at fixed addresses, so fn must read its tensors from the argument, not from captures.
  template <class Fn>
  std::vector<Tensor<B>> run(std::string const&, std::vector<Tensor<B>> const& inputs, Fn&& fn) const {
    return fn(inputs);
  }
};

}  // namespace fd::backend
