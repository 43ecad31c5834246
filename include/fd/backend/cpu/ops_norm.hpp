#pragma once
/// @file
/// GroupNorm (optionally fused with SiLU) and LayerNorm on the CPU. Statistics are accumulated in
/// double: the reference computes in float32 with pairwise sums, and double keeps our rounding below
/// theirs rather than adding to it.

#include <cmath>

#ifndef FD_CPU_OPS_INTERNAL
#define FD_CPU_OPS_INTERNAL
#endif
#include "fd/backend/cpu/detail/check.hpp"
#include "fd/backend/cpu/detail/vec_math.hpp"
#include "fd/backend/op_params.hpp"

namespace fd::backend {

/// GroupNorm over x[N, C, *]: per sample and group of C/groups channels, biased variance.
/// @pre C % groups == 0; gamma, beta [C].
inline Tensor<Cpu> group_norm(Cpu const& be, Tensor<Cpu> const& x, int groups, Tensor<Cpu> const& gamma,
                              Tensor<Cpu> const& beta, float eps, Activation act = Activation::kNone) {
  using namespace cpu::detail;
  require_contiguous_f32("group_norm", "input", x);
  if (x.rank() < 2) fail(Errc::kShapeMismatch, "group_norm: input " + x.shape().str() + " has no channel dim");
  std::int64_t const n = x.dim(0), c = x.dim(1);
  if (groups <= 0 || c % groups != 0) {
    fail(Errc::kShapeMismatch, "group_norm: " + std::to_string(c) + " channels not divisible into " +
                                   std::to_string(groups) + " groups");
  }
  require_contiguous_f32("group_norm", "weight", gamma);
  require_contiguous_f32("group_norm", "bias", beta);
  require_numel("group_norm", "weight", gamma, c);
  require_numel("group_norm", "bias", beta, c);
  std::int64_t const spatial = c == 0 || n == 0 ? 0 : x.numel() / (n * c);
  std::int64_t const cpg = c / groups;
  Tensor<Cpu> y = Tensor<Cpu>::empty(be, x.shape());
  float const* xd = x.data<float>();
  float* yd = y.data<float>();
  float const* gd = gamma.data<float>();
  float const* bd = beta.data<float>();
  std::int64_t const units = n * groups;
#pragma omp parallel for num_threads(be.threads()) schedule(static) if (x.numel() > be.parallel_min())
  for (std::int64_t u = 0; u < units; ++u) {
    std::int64_t const b = u / groups, g = u % groups;
    std::int64_t const base = (b * c + g * cpg) * spatial;
    std::int64_t const count = cpg * spatial;
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (std::int64_t i = 0; i < count; ++i) sum += xd[base + i];
    double const mean = sum / static_cast<double>(count);
    double sq = 0.0;
#pragma omp simd reduction(+ : sq)
    for (std::int64_t i = 0; i < count; ++i) {
      double const d = xd[base + i] - mean;
      sq += d * d;
    }
    double const rstd = 1.0 / std::sqrt(sq / static_cast<double>(count) + eps);
    for (std::int64_t cc = 0; cc < cpg; ++cc) {
      std::int64_t const ch = g * cpg + cc;
      float const scale = static_cast<float>(rstd * gd[ch]);
      float const shift = static_cast<float>(bd[ch] - mean * rstd * gd[ch]);
      float const* xr = xd + base + cc * spatial;
      float* yr = yd + base + cc * spatial;
      if (act == Activation::kSilu) {
        for (std::int64_t i = 0; i < spatial; ++i) yr[i] = silu_f32(xr[i] * scale + shift);
      } else {
        for (std::int64_t i = 0; i < spatial; ++i) yr[i] = xr[i] * scale + shift;
      }
    }
  }
  return y;
}

/// LayerNorm over the last dimension of x[..., C], biased variance, eps inside the square root.
inline Tensor<Cpu> layer_norm(Cpu const& be, Tensor<Cpu> const& x, Tensor<Cpu> const& gamma, Tensor<Cpu> const& beta,
                              float eps) {
  using namespace cpu::detail;
  require_contiguous_f32("layer_norm", "input", x);
  std::int64_t const c = x.dim(-1);
  require_contiguous_f32("layer_norm", "weight", gamma);
  require_contiguous_f32("layer_norm", "bias", beta);
  require_numel("layer_norm", "weight", gamma, c);
  require_numel("layer_norm", "bias", beta, c);
  std::int64_t const rows = c == 0 ? 0 : x.numel() / c;
  Tensor<Cpu> y = Tensor<Cpu>::empty(be, x.shape());
  float const* xd = x.data<float>();
  float* yd = y.data<float>();
  float const* gd = gamma.data<float>();
  float const* bd = beta.data<float>();
#pragma omp parallel for num_threads(be.threads()) schedule(static) if (x.numel() > be.parallel_min())
  for (std::int64_t r = 0; r < rows; ++r) {
    float const* xr = xd + r * c;
    float* yr = yd + r * c;
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (std::int64_t i = 0; i < c; ++i) sum += xr[i];
    double const mean = sum / static_cast<double>(c);
    double sq = 0.0;
#pragma omp simd reduction(+ : sq)
    for (std::int64_t i = 0; i < c; ++i) {
      double const d = xr[i] - mean;
      sq += d * d;
    }
    float const rstd = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(c) + eps));
    float const m = static_cast<float>(mean);
    for (std::int64_t i = 0; i < c; ++i) yr[i] = (xr[i] - m) * rstd * gd[i] + bd[i];
  }
  return y;
}

}  // namespace fd::backend
