#pragma once
/// @file
/// Argument checks shared by the CPU ops. Each throws fd::error naming the op and the operand.

#if !defined(FD_CPU_OPS_INTERNAL)
#error "fd/backend/cpu/detail/check.hpp is internal; include fd/backend/cpu/ops.hpp"
#endif

#include <string>

#include "fd/backend/cpu/backend.hpp"
#include "fd/core/tensor.hpp"

namespace fd::backend::cpu::detail {

using CpuTensor = Tensor<Cpu>;

inline void require_f32(char const* op, char const* what, CpuTensor const& t) {
  if (t.dtype() != DType::kF32) {
    fail(Errc::kUnsupported, std::string(op) + ": " + what + " is " + std::string(dtype_name(t.dtype())) +
                                 "; the CPU backend computes in F32 (convert with Tensor::to at load)");
  }
}

inline void require_contiguous_f32(char const* op, char const* what, CpuTensor const& t) {
  require_f32(op, what, t);
  if (!t.is_contiguous()) {
    fail(Errc::kInvalidArgument, std::string(op) + ": " + what + " " + t.shape().str() + " must be contiguous");
  }
}

inline void require_rank(char const* op, char const* what, CpuTensor const& t, int rank) {
  if (t.rank() != rank) {
    fail(Errc::kShapeMismatch, std::string(op) + ": " + what + " must have rank " + std::to_string(rank) +
                                   ", got " + t.shape().str());
  }
}

inline void require_numel(char const* op, char const* what, CpuTensor const& t, std::int64_t n) {
  if (t.numel() != n) {
    fail(Errc::kShapeMismatch, std::string(op) + ": " + what + " must have " + std::to_string(n) +
                                   " elements, got " + t.shape().str());
  }
}

}  // namespace fd::backend::cpu::detail
