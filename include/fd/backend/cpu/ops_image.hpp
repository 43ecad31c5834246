#pragma once
/// @file
/// Ops of the image decoders on the CPU: ReLU, TAESD's soft latent clamp, clamping, and the linear cross-fade
/// that stitches decoded tiles together.

#include <algorithm>
#include <cmath>

#ifndef FD_CPU_OPS_INTERNAL
#define FD_CPU_OPS_INTERNAL
#endif
#include "fd/backend/cpu/backend.hpp"
#include "fd/backend/cpu/detail/check.hpp"
#include "fd/backend/cpu/ops_elementwise.hpp"

namespace fd::backend {

/// max(x, 0), in place.
inline void relu_(Cpu const& be, Tensor<Cpu>& x) {
  cpu::detail::require_contiguous_f32("relu", "input", x);
  float* d = x.data<float>();
  cpu::detail::parallel_map(be, d, d, x.numel(), [](float v) { return v > 0.0f ? v : 0.0f; });
}

/// x = tanh(x / magnitude) * magnitude, in place: a soft clamp to (-magnitude, magnitude).
inline void tanh_clamp_(Cpu const& be, Tensor<Cpu>& x, float magnitude) {
  cpu::detail::require_contiguous_f32("tanh_clamp", "input", x);
  if (!(magnitude > 0.0f)) fail(Errc::kInvalidArgument, "tanh_clamp: magnitude must be positive");
  float* d = x.data<float>();
  cpu::detail::parallel_map(be, d, d, x.numel(), [magnitude](float v) { return std::tanh(v / magnitude) * magnitude; });
}

/// min(max(x, lo), hi), in place.
inline void clamp_(Cpu const& be, Tensor<Cpu>& x, float lo, float hi) {
  cpu::detail::require_contiguous_f32("clamp", "input", x);
  float* d = x.data<float>();
  cpu::detail::parallel_map(be, d, d, x.numel(), [lo, hi](float v) { return std::min(std::max(v, lo), hi); });
}

/// Composites tile[N, C, h, w] over dst[N, C, H, W] at rows [y0, y0+h), columns [x0, x0+w):
/// dst = dst * (1 - a) + tile * a with a(y, x) = ry(y) * rx(x), where ry rises linearly over the
/// tile's first `ramp_top` rows ((y+1)/(ramp_top+1)) and is 1 below them; rx likewise over the first
/// `ramp_left` columns. With ramps equal to the overlap with the tiles already written (in raster
/// order), every overlap is a linear cross-fade and the result is continuous across tile edges.
/// @pre the tile lies inside dst; 0 <= ramp_top <= h, 0 <= ramp_left <= w.
inline void composite_tile_(Cpu const& be, Tensor<Cpu>& dst, Tensor<Cpu> const& tile, std::int64_t y0, std::int64_t x0,
                            std::int64_t ramp_top, std::int64_t ramp_left) {
  using namespace cpu::detail;
  require_contiguous_f32("composite_tile", "destination", dst);
  require_contiguous_f32("composite_tile", "tile", tile);
  require_rank("composite_tile", "destination", dst, 4);
  require_rank("composite_tile", "tile", tile, 4);
  std::int64_t const n = dst.dim(0), c = dst.dim(1), H = dst.dim(2), W = dst.dim(3);
  std::int64_t const h = tile.dim(2), w = tile.dim(3);
  if (tile.dim(0) != n || tile.dim(1) != c || y0 < 0 || x0 < 0 || y0 + h > H || x0 + w > W) {
    fail(Errc::kShapeMismatch, "composite_tile: tile " + tile.shape().str() + " at (" + std::to_string(y0) + ", " +
                                   std::to_string(x0) + ") does not fit in " + dst.shape().str());
  }
  if (ramp_top < 0 || ramp_top > h || ramp_left < 0 || ramp_left > w) {
    fail(Errc::kInvalidArgument, "composite_tile: ramps (" + std::to_string(ramp_top) + ", " +
                                     std::to_string(ramp_left) + ") outside the tile " + tile.shape().str());
  }
  float const* src = tile.data<float>();
  float* out = dst.data<float>();
  auto ramp = [](std::int64_t i, std::int64_t len) {
    return i < len ? static_cast<float>(i + 1) / static_cast<float>(len + 1) : 1.0f;
  };
  std::int64_t const planes = n * c;
#pragma omp parallel for num_threads(be.threads()) schedule(static) if (planes * h * w > be.parallel_min())
  for (std::int64_t p = 0; p < planes; ++p) {
    for (std::int64_t y = 0; y < h; ++y) {
      float const ry = ramp(y, ramp_top);
      float const* s = src + (p * h + y) * w;
      float* d = out + (p * H + y0 + y) * W + x0;
      for (std::int64_t x = 0; x < w; ++x) {
        float const a = ry * ramp(x, ramp_left);
        d[x] = a == 1.0f ? s[x] : d[x] * (1.0f - a) + s[x] * a;
      }
    }
  }
}

}  // namespace fd::backend
