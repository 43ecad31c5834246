#pragma once
/// @file
/// 2-D convolution on the CPU (NCHW), as im2col + one GEMM per image, with the epilogues the UNet needs
/// fused in: bias (per channel or per sample and channel) and a residual added before the result is
/// stored.

#include <algorithm>
#include <cstring>

#ifndef FD_CPU_OPS_INTERNAL
#define FD_CPU_OPS_INTERNAL
#endif
#include "fd/backend/cpu/detail/check.hpp"
#include "fd/backend/cpu/detail/sgemm.hpp"
#include "fd/backend/op_params.hpp"

namespace fd::backend {

/// out[N, Cout, Ho, Wo] = conv(x[N, Cin, H, W], w[Cout, Cin, kh, kw]) + bias, zero padding.
/// Ho = (H + 2p - kh) / s + 1.
inline Tensor<Cpu> conv2d(Cpu const& be, Tensor<Cpu> const& x, Tensor<Cpu> const& w, Tensor<Cpu> const& bias,
                          Conv2dParams p, Conv2dEpilogue<Cpu> const& epi = {}) {
  using namespace cpu::detail;
  require_contiguous_f32("conv2d", "input", x);
  require_contiguous_f32("conv2d", "weight", w);
  require_rank("conv2d", "input", x, 4);
  require_rank("conv2d", "weight", w, 4);
  std::int64_t const n = x.dim(0), cin = x.dim(1), h = x.dim(2), wd = x.dim(3);
  std::int64_t const cout = w.dim(0), kh = w.dim(2), kw = w.dim(3);
  if (w.dim(1) != cin) {
    fail(Errc::kShapeMismatch, "conv2d: input has " + std::to_string(cin) + " channels, weight " + w.shape().str());
  }
  if (p.stride < 1 || p.padding < 0) fail(Errc::kInvalidArgument, "conv2d: bad stride/padding");
  // Checked before dividing: with stride > 1, a negative (H + 2p - kh) would truncate to 0 and
  // yield one output row instead of an error.
  if (h + 2 * p.padding < kh || wd + 2 * p.padding < kw) {
    fail(Errc::kShapeMismatch, "conv2d: input " + x.shape().str() + " too small for kernel " + w.shape().str());
  }
  std::int64_t const ho = (h + 2 * p.padding - kh) / p.stride + 1;
  std::int64_t const wo = (wd + 2 * p.padding - kw) / p.stride + 1;
  if (bias.defined()) {
    require_contiguous_f32("conv2d", "bias", bias);
    require_numel("conv2d", "bias", bias, cout);
  }
  if (epi.sample_bias.defined()) {
    require_contiguous_f32("conv2d", "sample bias", epi.sample_bias);
    require_numel("conv2d", "sample bias", epi.sample_bias, n * cout);
  }
  Tensor<Cpu> out = Tensor<Cpu>::empty(be, {n, cout, ho, wo});
  float beta = 0.0f;
  if (epi.residual.defined()) {
    require_contiguous_f32("conv2d", "residual", epi.residual);
    if (!(epi.residual.shape() == out.shape())) {
      fail(Errc::kShapeMismatch, "conv2d: residual " + epi.residual.shape().str() + " vs output " + out.shape().str());
    }
    std::memcpy(out.data<float>(), epi.residual.data<float>(), out.nbytes());
    beta = 1.0f;
  }
  std::int64_t const kdim = cin * kh * kw;
  std::int64_t const hw_out = ho * wo;
  bool const pointwise = kh == 1 && kw == 1 && p.stride == 1 && p.padding == 0;
  Tensor<Cpu> col;
  if (!pointwise) col = Tensor<Cpu>::empty(be, {kdim, hw_out});
  int const nt = be.threads();
  be.add_flops(static_cast<std::uint64_t>(2 * n * cout * kdim * hw_out));
  float const* xd = x.data<float>();
  float* od = out.data<float>();
  for (std::int64_t b = 0; b < n; ++b) {
    float const* xb = xd + b * cin * h * wd;
    float const* rhs = xb;
    if (!pointwise) {
      float* cd = col.data<float>();
      // im2col: row (c, i, j) of col holds the input pixels kernel tap (i, j) of channel c sees.
#pragma omp parallel for num_threads(nt) schedule(static) if (kdim * hw_out > be.parallel_min())
      for (std::int64_t r = 0; r < kdim; ++r) {
        std::int64_t const c = r / (kh * kw), i = (r / kw) % kh, j = r % kw;
        float* dst = cd + r * hw_out;
        float const* src = xb + c * h * wd;
        for (std::int64_t oy = 0; oy < ho; ++oy) {
          std::int64_t const iy = oy * p.stride - p.padding + i;
          float* drow = dst + oy * wo;
          if (iy < 0 || iy >= h) {
            std::fill(drow, drow + wo, 0.0f);
            continue;
          }
          float const* srow = src + iy * wd;
          if (p.stride == 1) {
            std::int64_t const off = j - p.padding;
            std::int64_t const lo = std::max<std::int64_t>(0, -off), hi = std::min<std::int64_t>(wo, wd - off);
            std::fill(drow, drow + std::min(lo, wo), 0.0f);
            if (hi > lo) std::memcpy(drow + lo, srow + lo + off, static_cast<std::size_t>(hi - lo) * sizeof(float));
            if (hi < wo) std::fill(drow + std::max(hi, lo), drow + wo, 0.0f);
          } else {
            for (std::int64_t ox = 0; ox < wo; ++ox) {
              std::int64_t const ix = ox * p.stride - p.padding + j;
              drow[ox] = (ix >= 0 && ix < wd) ? srow[ix] : 0.0f;
            }
          }
        }
      }
      rhs = cd;
    }
    float const* bptr = epi.sample_bias.defined() ? epi.sample_bias.data<float>() + b * cout
                                                  : (bias.defined() ? bias.data<float>() : nullptr);
    cpu::detail::sgemm_bias(false, false, cout, hw_out, kdim, w.data<float>(), kdim, rhs, hw_out, beta,
                            od + b * cout * hw_out, hw_out, bptr, false, nt);
  }
  return out;
}

}  // namespace fd::backend
