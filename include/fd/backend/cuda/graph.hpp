#pragma once
/// @file
/// CUDA Graph capture of op sequences with fixed shapes (a UNet encoder or decoder call): the launch
/// cost of the several hundred kernels, GEMMs and convolutions of one call is paid once per capture
/// instead of once per call.
///
/// How a region stays correct when replayed: its inputs are copied into buffers the graph owns, every
/// allocation inside it comes from memory the graph owns, and host-computed data it uploads (timestep
/// embeddings, token ids) goes through pinned slots. A replay runs the region's host code again with
/// device work suppressed — so those uploads are refreshed and the allocations are checked against the
/// capture — and then launches the graph. Outputs are returned as copies.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fd/backend/cuda/backend.hpp"
#include "fd/backend/region.hpp"
#include "fd/core/tensor.hpp"

namespace fd::backend {

namespace cuda_detail {
struct GraphCache;
}

class CudaGraphs {
 public:
  using Tensors = std::vector<Tensor<Cuda>>;
  using Region = std::function<Tensors(Tensors const&)>;

  explicit CudaGraphs(Cuda const& be);

  /// Runs region(inputs): eagerly the first time a (name, input shapes and dtypes) key is seen (so
  /// cuDNN plans and cuBLAS heuristics are made outside the capture), captured into a graph the second
  /// time, replayed afterwards. The region must issue the same allocations and uploads for the same key
  /// (true of the models: shapes fix their control flow); a replay that differs throws fd.backend.
  Tensors run(std::string const& name, Tensors const& inputs, Region const& region) const;

  struct Stats {
    int eager = 0, captures = 0, replays = 0;
  };
  Stats stats() const;
  /// Drops every captured graph and its memory.
  void clear() const;

 private:
  std::shared_ptr<cuda_detail::GraphCache> cache_;
};

/// Models' regions on the CUDA backend: CUDA graphs when CudaOptions::graphs is on.
template <>
struct Regions<Cuda> {
  static constexpr bool enabled = true;
  explicit Regions(Cuda const& be) : graphs(be), on(be.options().graphs) {}
  template <class Fn>
  std::vector<Tensor<Cuda>> run(std::string const& name, std::vector<Tensor<Cuda>> const& inputs, Fn&& fn) const {
    if (!on) return fn(inputs);
    return graphs.run(name, inputs, CudaGraphs::Region(std::forward<Fn>(fn)));
  }
  CudaGraphs graphs;
  bool on = true;
};

}  // namespace fd::backend
