#pragma once
// Internal to FasterDiffusion::cuda: argument checks and dtype handling shared by the op definitions.

#include <string>

#include "cuda_context.hpp"
#include "fd/backend/cuda/ops.hpp"
#include "launch.hpp"

namespace fd::backend::cuda_detail {

using T = Tensor<Cuda>;
using i64 = std::int64_t;

inline Context& ctx(Cuda const& be) {
  Context& c = be.context();
  c.activate();
  return c;
}

inline bool floating_storage(DType d) { return d == DType::kF32 || d == DType::kF16 || d == DType::kBF16; }

inline void require_float(char const* op, char const* what, T const& t) {
  if (!t.defined()) fail(Errc::kInvalidArgument, std::string(op) + ": " + what + " is undefined");
  if (!floating_storage(t.dtype())) {
    fail(Errc::kDTypeMismatch, std::string(op) + ": " + what + " has dtype " + std::string(dtype_name(t.dtype())) +
                                   "; the CUDA backend computes on f32, f16 or bf16");
  }
}

inline void require_contiguous(char const* op, char const* what, T const& t) {
  require_float(op, what, t);
  if (!t.is_contiguous()) {
    fail(Errc::kInvalidArgument, std::string(op) + ": " + what + " " + t.shape().str() + " must be contiguous");
  }
}

inline void require_rank(char const* op, char const* what, T const& t, int r) {
  if (t.rank() != r) {
    fail(Errc::kShapeMismatch, std::string(op) + ": " + what + " must have rank " + std::to_string(r) + ", got " +
                                   t.shape().str());
  }
}

inline void require_numel(char const* op, char const* what, T const& t, i64 n) {
  if (t.numel() != n) {
    fail(Errc::kShapeMismatch, std::string(op) + ": " + what + " " + t.shape().str() + " must hold " +
                                   std::to_string(n) + " elements");
  }
}

/// t in dtype d: t itself, or a contiguous cast copy (operands that arrive in another dtype than the
/// op computes in, e.g. fp32 latents entering an f16 UNet).
inline T as_dtype(Cuda const& be, T const& t, DType d) {
  if (!t.defined() || t.dtype() == d) return t;
  return cast(be, t, d);
}

/// Pointer to t's data, or null for an undefined tensor.
inline void const* ptr(T const& t) { return t.defined() ? static_cast<void const*>(t.raw()) : nullptr; }

}  // namespace fd::backend::cuda_detail
