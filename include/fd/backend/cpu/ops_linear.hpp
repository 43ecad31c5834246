#pragma once
/// @file
/// Dense layers on the CPU: y = x W^T + b over the last dimension.

#ifndef FD_CPU_OPS_INTERNAL
#define FD_CPU_OPS_INTERNAL
#endif
#include "fd/backend/cpu/detail/check.hpp"
#include "fd/backend/cpu/detail/sgemm.hpp"

#include <cstring>

namespace fd::backend {

/// y[..., N] = x[..., K] · w[N, K]^T (+ bias[N]). x may be a row-strided view (e.g. a slice of the last
/// dimension), as long as each row is contiguous.
/// @pre w contiguous [N, K], bias [N] or undefined.
/// With `residual` defined (same shape as the output), returns x W^T + b + residual in one pass.
inline Tensor<Cpu> linear(Cpu const& be, Tensor<Cpu> const& x, Tensor<Cpu> const& w, Tensor<Cpu> const& bias = {},
                          Tensor<Cpu> const& residual = {}) {
  using namespace cpu::detail;
  require_f32("linear", "input", x);
  require_contiguous_f32("linear", "weight", w);
  require_rank("linear", "weight", w, 2);
  std::int64_t const n = w.dim(0), k = w.dim(1);
  if (x.rank() < 1 || x.dim(-1) != k) {
    fail(Errc::kShapeMismatch, "linear: input " + x.shape().str() + " does not end in " + std::to_string(k) +
                                   " (weight " + w.shape().str() + ")");
  }
  if (bias.defined()) {
    require_contiguous_f32("linear", "bias", bias);
    require_numel("linear", "bias", bias, n);
  }
  // Rows of x must be equally spaced: either fully contiguous or a 2-D-like view with unit inner stride.
  Tensor<Cpu> xs = x;
  std::int64_t const rows = x.numel() / (k == 0 ? 1 : k);
  std::int64_t ld = k;
  if (!x.is_contiguous()) {
    bool rowwise = x.strides()[x.rank() - 1] == 1;
    for (int i = 0; i + 2 < x.rank() && rowwise; ++i) {
      rowwise = x.strides()[i] == x.strides()[i + 1] * x.shape()[i + 1];
    }
    if (rowwise && x.rank() >= 2) {
      ld = x.strides()[x.rank() - 2];
    } else {
      xs = x.contiguous(be);
    }
  }
  Shape out_shape = x.shape();
  out_shape[out_shape.rank() - 1] = n;
  Tensor<Cpu> y = Tensor<Cpu>::empty(be, out_shape);
  float beta = 0.0f;
  if (residual.defined()) {
    require_contiguous_f32("linear", "residual", residual);
    if (!(residual.shape() == out_shape)) {
      fail(Errc::kShapeMismatch, "linear: residual " + residual.shape().str() + " vs output " + out_shape.str());
    }
    std::memcpy(y.data<float>(), residual.data<float>(), y.nbytes());
    beta = 1.0f;
  }
  be.add_flops(static_cast<std::uint64_t>(2 * rows * n * k));
  sgemm_bias(false, true, rows, n, k, xs.data<float>(), ld, w.data<float>(), k, beta, y.data<float>(), n,
             bias.defined() ? bias.data<float>() : nullptr, true, be.threads());
  return y;
}

/// A 1x1 convolution (or per-pixel linear layer) whose output is laid out as tokens:
/// x[N, C, H, W], w[D, C] (or [D, C, 1, 1]) -> y[N, H*W, D] = x^T w^T + b. This is a Transformer2D's
/// proj_in together with its NCHW -> tokens permute, done by the GEMM's operand order instead of a copy.
inline Tensor<Cpu> channels_to_tokens(Cpu const& be, Tensor<Cpu> const& x, Tensor<Cpu> const& w, Tensor<Cpu> const& bias) {
  using namespace cpu::detail;
  require_contiguous_f32("channels_to_tokens", "input", x);
  require_contiguous_f32("channels_to_tokens", "weight", w);
  require_rank("channels_to_tokens", "input", x, 4);
  std::int64_t const n = x.dim(0), c = x.dim(1), hw = x.dim(2) * x.dim(3), d = w.dim(0);
  require_numel("channels_to_tokens", "weight", w, d * c);
  if (bias.defined()) {
    require_contiguous_f32("channels_to_tokens", "bias", bias);
    require_numel("channels_to_tokens", "bias", bias, d);
  }
  Tensor<Cpu> y = Tensor<Cpu>::empty(be, {n, hw, d});
  be.add_flops(static_cast<std::uint64_t>(2 * n * hw * d * c));
  for (std::int64_t b = 0; b < n; ++b) {
    sgemm_bias(true, true, hw, d, c, x.data<float>() + b * c * hw, hw, w.data<float>(), c, 0.0f,
               y.data<float>() + b * hw * d, d, bias.defined() ? bias.data<float>() : nullptr, true, be.threads());
  }
  return y;
}

/// The inverse layout: tokens t[N, H*W, D], w[C, D] (or [C, D, 1, 1]) -> y[N, C, H, W] = w t^T + b
/// (+ residual [N, C, H, W]). A Transformer2D's proj_out, permute and residual add in one GEMM.
inline Tensor<Cpu> tokens_to_channels(Cpu const& be, Tensor<Cpu> const& t, Tensor<Cpu> const& w, Tensor<Cpu> const& bias,
                                      Tensor<Cpu> const& residual) {
  using namespace cpu::detail;
  require_contiguous_f32("tokens_to_channels", "input", t);
  require_contiguous_f32("tokens_to_channels", "weight", w);
  require_contiguous_f32("tokens_to_channels", "residual", residual);
  require_rank("tokens_to_channels", "input", t, 3);
  require_rank("tokens_to_channels", "residual", residual, 4);
  std::int64_t const n = t.dim(0), hw = t.dim(1), d = t.dim(2), c = w.dim(0);
  require_numel("tokens_to_channels", "weight", w, c * d);
  if (bias.defined()) {
    require_contiguous_f32("tokens_to_channels", "bias", bias);
    require_numel("tokens_to_channels", "bias", bias, c);
  }
  if (residual.dim(0) != n || residual.dim(1) != c || residual.dim(2) * residual.dim(3) != hw) {
    fail(Errc::kShapeMismatch, "tokens_to_channels: residual " + residual.shape().str() + " does not match tokens " +
                                   t.shape().str() + " and weight " + w.shape().str());
  }
  Tensor<Cpu> y = residual.clone(be);
  be.add_flops(static_cast<std::uint64_t>(2 * n * hw * d * c));
  for (std::int64_t b = 0; b < n; ++b) {
    sgemm_bias(false, true, c, hw, d, w.data<float>(), d, t.data<float>() + b * hw * d, d, 1.0f,
               y.data<float>() + b * c * hw, hw, bias.defined() ? bias.data<float>() : nullptr, false, be.threads());
  }
  return y;
}

}  // namespace fd::backend
