#pragma once
// What the CUDA tests share: the CPU reference backend and copies between the two.

#include "fd/backend/cpu/ops.hpp"
#include "fd/backend/cuda/ops.hpp"

namespace fdtest::cuda {

using C = fd::backend::Cpu;
using G = fd::backend::Cuda;
using TC = fd::Tensor<C>;
using TG = fd::Tensor<G>;

inline C& cpu() {
  static C c{{.threads = 2}};
  return c;
}

/// A GPU tensor's values as a CPU float32 tensor.
inline TC down(G const& g, TG const& t) { return TC::from_host(cpu(), t.shape(), t.to_vector_f32(g)); }

}  // namespace fdtest::cuda
