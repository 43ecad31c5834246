#pragma once
/// @file
/// Elementwise and data-movement ops on the CPU: activations, GEGLU, residual add and scale, channel
/// concat, nearest upsampling, batch tiling, and the sinusoidal timestep embedding.

#include <cmath>
#include <cstring>
#include <span>
#include <vector>

#include "fd/backend/detail/timestep_values.hpp"

#ifndef FD_CPU_OPS_INTERNAL
#define FD_CPU_OPS_INTERNAL
#endif
#include "fd/backend/cpu/detail/check.hpp"
#include "fd/backend/cpu/detail/vec_math.hpp"

namespace fd::backend {

namespace cpu::detail {

template <class F>
void parallel_map(Cpu const& be, float const* src, float* dst, std::int64_t n, F f) {
  // Chunks of 16K elements keep threads busy without false sharing at chunk edges.
  constexpr std::int64_t kChunk = 16384;
  std::int64_t const chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for num_threads(be.threads()) schedule(static) if (n > be.parallel_min())
  for (std::int64_t ch = 0; ch < chunks; ++ch) {
    std::int64_t const lo = ch * kChunk, hi = std::min(n, lo + kChunk);
    for (std::int64_t i = lo; i < hi; ++i) dst[i] = f(src[i]);
  }
}

}  // namespace cpu::detail

/// x * sigmoid(x), in place.
inline void silu_(Cpu const& be, Tensor<Cpu>& x) {
  cpu::detail::require_contiguous_f32("silu", "input", x);
  float* d = x.data<float>();
  cpu::detail::parallel_map(be, d, d, x.numel(), [](float v) { return cpu::detail::silu_f32(v); });
}

inline Tensor<Cpu> silu(Cpu const& be, Tensor<Cpu> const& x) {
  Tensor<Cpu> y = x.clone(be);
  silu_(be, y);
  return y;
}

/// GELU (erf form), in place.
inline void gelu_(Cpu const& be, Tensor<Cpu>& x) {
  cpu::detail::require_contiguous_f32("gelu", "input", x);
  float* d = x.data<float>();
  cpu::detail::parallel_map(be, d, d, x.numel(), [](float v) { return cpu::detail::gelu_f32(v); });
}

/// CLIP's quick GELU, x * sigmoid(1.702 x), in place.
inline void quick_gelu_(Cpu const& be, Tensor<Cpu>& x) {
  cpu::detail::require_contiguous_f32("quick_gelu", "input", x);
  float* d = x.data<float>();
  cpu::detail::parallel_map(be, d, d, x.numel(),
                            [](float v) { return v / (1.0f + cpu::detail::exp_f32(-1.702f * v)); });
}

/// Embedding lookup: y[b, l, :] = table[ids[b * L + l], :] (+ positions[l, :] when given), with
/// L = ids.size() / batch. Ids outside [0, rows) are rejected naming the id and its position.
inline Tensor<Cpu> embedding(Cpu const& be, Tensor<Cpu> const& table, std::span<std::int64_t const> ids,
                             std::int64_t batch, Tensor<Cpu> const& positions = {}) {
  using namespace cpu::detail;
  require_contiguous_f32("embedding", "table", table);
  if (table.rank() != 2) fail(Errc::kShapeMismatch, "embedding: table must be [rows, D], got " + table.shape().str());
  std::int64_t const rows = table.dim(0), d = table.dim(1);
  std::int64_t const n = static_cast<std::int64_t>(ids.size());
  if (batch <= 0 || n % batch != 0) {
    fail(Errc::kShapeMismatch, "embedding: " + std::to_string(n) + " ids do not split into a batch of " + std::to_string(batch));
  }
  std::int64_t const len = n / batch;
  if (positions.defined()) {
    require_contiguous_f32("embedding", "positions", positions);
    if (positions.rank() != 2 || positions.dim(1) != d || positions.dim(0) < len) {
      fail(Errc::kShapeMismatch, "embedding: " + std::to_string(len) + " positions of width " + std::to_string(d) +
                                     " needed, position table is " + positions.shape().str());
    }
  }
  for (std::int64_t i = 0; i < n; ++i) {
    if (ids[static_cast<std::size_t>(i)] < 0 || ids[static_cast<std::size_t>(i)] >= rows) {
      fail(Errc::kInvalidArgument, "embedding: id " + std::to_string(ids[static_cast<std::size_t>(i)]) + " at [" +
                                       std::to_string(i / len) + ", " + std::to_string(i % len) +
                                       "] is outside the vocabulary [0, " + std::to_string(rows) + ")");
    }
  }
  Tensor<Cpu> y = Tensor<Cpu>::empty(be, {batch, len, d});
  float const* t = table.data<float>();
  float const* p = positions.defined() ? positions.data<float>() : nullptr;
  float* out = y.data<float>();
#pragma omp parallel for num_threads(be.threads()) if (n * d > be.parallel_min())
  for (std::int64_t i = 0; i < n; ++i) {
    float const* src = t + ids[static_cast<std::size_t>(i)] * d;
    float* dst = out + i * d;
    if (p) {
      float const* pos = p + (i % len) * d;
      for (std::int64_t j = 0; j < d; ++j) dst[j] = src[j] + pos[j];
    } else {
      std::memcpy(dst, src, static_cast<std::size_t>(d) * sizeof(float));
    }
  }
  return y;
}

/// GEGLU: x[..., 2D] = [value | gate] -> value * gelu(gate), shape [..., D].
inline Tensor<Cpu> geglu(Cpu const& be, Tensor<Cpu> const& x) {
  using namespace cpu::detail;
  require_contiguous_f32("geglu", "input", x);
  std::int64_t const two_d = x.dim(-1);
  if (two_d % 2 != 0) fail(Errc::kShapeMismatch, "geglu: last dimension of " + x.shape().str() + " is odd");
  std::int64_t const d = two_d / 2, rows = two_d == 0 ? 0 : x.numel() / two_d;
  Shape s = x.shape();
  s[s.rank() - 1] = d;
  Tensor<Cpu> y = Tensor<Cpu>::empty(be, s);
  float const* xd = x.data<float>();
  float* yd = y.data<float>();
#pragma omp parallel for num_threads(be.threads()) schedule(static) if (rows * two_d > be.parallel_min())
  for (std::int64_t r = 0; r < rows; ++r) {
    float const* v = xd + r * two_d;
    float const* g = v + d;
    float* o = yd + r * d;
    for (std::int64_t i = 0; i < d; ++i) o[i] = v[i] * gelu_f32(g[i]);
  }
  return y;
}

/// a += alpha * b (same shape).
inline void add_(Cpu const& be, Tensor<Cpu>& a, Tensor<Cpu> const& b, float alpha = 1.0f) {
  using namespace cpu::detail;
  require_contiguous_f32("add", "lhs", a);
  require_contiguous_f32("add", "rhs", b);
  if (!(a.shape() == b.shape())) fail(Errc::kShapeMismatch, "add: " + a.shape().str() + " vs " + b.shape().str());
  float* ad = a.data<float>();
  float const* bd = b.data<float>();
  std::int64_t const n = a.numel();
#pragma omp parallel for num_threads(be.threads()) schedule(static) if (n > be.parallel_min())
  for (std::int64_t i = 0; i < n; ++i) ad[i] += alpha * bd[i];
}

inline Tensor<Cpu> add(Cpu const& be, Tensor<Cpu> const& a, Tensor<Cpu> const& b) {
  Tensor<Cpu> y = a.clone(be);
  add_(be, y, b);
  return y;
}

/// x *= s, in place.
inline void scale_(Cpu const& be, Tensor<Cpu>& x, float s) {
  cpu::detail::require_contiguous_f32("scale", "input", x);
  float* d = x.data<float>();
  cpu::detail::parallel_map(be, d, d, x.numel(), [s](float v) { return v * s; });
}

/// x += s, in place.
inline void add_scalar_(Cpu const& be, Tensor<Cpu>& x, float s) {
  cpu::detail::require_contiguous_f32("add_scalar", "input", x);
  float* d = x.data<float>();
  cpu::detail::parallel_map(be, d, d, x.numel(), [s](float v) { return v + s; });
}

/// cat([a, b], dim=1) for [N, Ca, *] and [N, Cb, *] with equal trailing extents.
inline Tensor<Cpu> concat_channels(Cpu const& be, Tensor<Cpu> const& a, Tensor<Cpu> const& b) {
  using namespace cpu::detail;
  require_contiguous_f32("concat", "first input", a);
  require_contiguous_f32("concat", "second input", b);
  bool ok = a.rank() == b.rank() && a.rank() >= 2 && a.dim(0) == b.dim(0);
  for (int i = 2; ok && i < a.rank(); ++i) ok = a.dim(i) == b.dim(i);
  if (!ok) fail(Errc::kShapeMismatch, "concat: cannot join " + a.shape().str() + " and " + b.shape().str() + " on dim 1");
  Shape s = a.shape();
  s[1] = a.dim(1) + b.dim(1);
  Tensor<Cpu> y = Tensor<Cpu>::empty(be, s);
  std::int64_t const n = a.dim(0);
  std::int64_t const sa = n ? a.numel() / n : 0, sb = n ? b.numel() / n : 0;
  float* yd = y.data<float>();
  float const* ad = a.data<float>();
  float const* bd = b.data<float>();
#pragma omp parallel for num_threads(be.threads()) schedule(static) if (n * (sa + sb) > be.parallel_min())
  for (std::int64_t i = 0; i < n; ++i) {
    std::memcpy(yd + i * (sa + sb), ad + i * sa, static_cast<std::size_t>(sa) * sizeof(float));
    std::memcpy(yd + i * (sa + sb) + sa, bd + i * sb, static_cast<std::size_t>(sb) * sizeof(float));
  }
  return y;
}

/// Nearest-neighbour resize of x[N, C, H, W] to [N, C, out_h, out_w], with PyTorch's index rule
/// (src = floor(dst * in / out), exact halving for the 2x case).
inline Tensor<Cpu> upsample_nearest(Cpu const& be, Tensor<Cpu> const& x, std::int64_t out_h, std::int64_t out_w) {
  using namespace cpu::detail;
  require_contiguous_f32("upsample_nearest", "input", x);
  require_rank("upsample_nearest", "input", x, 4);
  if (out_h <= 0 || out_w <= 0) fail(Errc::kInvalidArgument, "upsample_nearest: output size must be positive");
  std::int64_t const nc = x.dim(0) * x.dim(1), h = x.dim(2), w = x.dim(3);
  Tensor<Cpu> y = Tensor<Cpu>::empty(be, {x.dim(0), x.dim(1), out_h, out_w});
  std::vector<std::int64_t> sy(static_cast<std::size_t>(out_h)), sx(static_cast<std::size_t>(out_w));
  float const scale_h = static_cast<float>(h) / static_cast<float>(out_h);
  float const scale_w = static_cast<float>(w) / static_cast<float>(out_w);
  for (std::int64_t i = 0; i < out_h; ++i) {
    sy[static_cast<std::size_t>(i)] =
        std::min<std::int64_t>(static_cast<std::int64_t>(std::floor(static_cast<float>(i) * scale_h)), h - 1);
  }
  for (std::int64_t j = 0; j < out_w; ++j) {
    sx[static_cast<std::size_t>(j)] =
        std::min<std::int64_t>(static_cast<std::int64_t>(std::floor(static_cast<float>(j) * scale_w)), w - 1);
  }
  float const* xd = x.data<float>();
  float* yd = y.data<float>();
#pragma omp parallel for num_threads(be.threads()) schedule(static) if (nc * out_h * out_w > be.parallel_min())
  for (std::int64_t p = 0; p < nc; ++p) {
    float const* src = xd + p * h * w;
    float* dst = yd + p * out_h * out_w;
    for (std::int64_t i = 0; i < out_h; ++i) {
      float const* srow = src + sy[static_cast<std::size_t>(i)] * w;
      float* drow = dst + i * out_w;
      for (std::int64_t j = 0; j < out_w; ++j) drow[j] = srow[sx[static_cast<std::size_t>(j)]];
    }
  }
  return y;
}

/// Repeats each of `halves` consecutive batch blocks `times` times:
/// [h0, h1] with times = 3 -> [h0, h0, h0, h1, h1, h1]. This is the batch layout of FasterDiffusion's
/// parallel decoder (each classifier-free-guidance half tiled once per timestep of the group).
inline Tensor<Cpu> tile_halves(Cpu const& be, Tensor<Cpu> const& x, int halves, int times) {
  using namespace cpu::detail;
  require_contiguous_f32("tile_halves", "input", x);
  if (halves < 1 || times < 1 || x.rank() < 1 || x.dim(0) % halves != 0) {
    fail(Errc::kShapeMismatch, "tile_halves: batch of " + x.shape().str() + " does not split into " +
                                   std::to_string(halves) + " halves");
  }
  if (times == 1) return x;
  Shape s = x.shape();
  s[0] = x.dim(0) * times;
  Tensor<Cpu> y = Tensor<Cpu>::empty(be, s);
  std::size_t const half_bytes = x.nbytes() / static_cast<std::size_t>(halves);
  for (int h = 0; h < halves; ++h) {
    for (int t = 0; t < times; ++t) {
      std::memcpy(y.raw() + (static_cast<std::size_t>(h) * times + t) * half_bytes,
                  x.raw() + static_cast<std::size_t>(h) * half_bytes, half_bytes);
    }
  }
  return y;
}

/// Sinusoidal timestep embedding [N, dim] (values: backend/detail/timestep_values.hpp).
inline Tensor<Cpu> timestep_embedding(Cpu const& be, std::span<float const> timesteps, int dim, bool flip_sin_to_cos,
                                      float downscale_freq_shift, float max_period = 10000.0f) {
  std::vector<float> const v = backend::detail::timestep_values(timesteps, dim, flip_sin_to_cos, downscale_freq_shift,
                                                                max_period);
  return Tensor<Cpu>::from_host(be, {static_cast<std::int64_t>(timesteps.size()), dim}, v);
}

/// x[N, C] += bias[C] on every row.
inline void add_rows_(Cpu const& be, Tensor<Cpu>& x, Tensor<Cpu> const& bias) {
  using namespace cpu::detail;
  require_contiguous_f32("add_rows", "input", x);
  require_contiguous_f32("add_rows", "bias", bias);
  std::int64_t const c = bias.numel();
  if (x.rank() != 2 || x.dim(1) != c) {
    fail(Errc::kShapeMismatch, "add_rows: input " + x.shape().str() + " vs bias " + bias.shape().str());
  }
  (void)be;
  float* xd = x.data<float>();
  float const* bd = bias.data<float>();
  for (std::int64_t r = 0; r < x.dim(0); ++r) {
    for (std::int64_t i = 0; i < c; ++i) xd[r * c + i] += bd[i];
  }
}

/// x[N, C, *] = silu(x * (1 + scale) + shift) with mod[N, 2C] = [scale | shift] per sample
/// (ResNet "scale_shift" time conditioning).
inline void modulate_silu_(Cpu const& be, Tensor<Cpu>& x, Tensor<Cpu> const& mod) {
  using namespace cpu::detail;
  require_contiguous_f32("modulate", "input", x);
  require_contiguous_f32("modulate", "modulation", mod);
  std::int64_t const n = x.dim(0), c = x.dim(1), sp = n * c == 0 ? 0 : x.numel() / (n * c);
  require_numel("modulate", "modulation", mod, n * 2 * c);
  float* xd = x.data<float>();
  float const* md = mod.data<float>();
#pragma omp parallel for num_threads(be.threads()) schedule(static) if (x.numel() > be.parallel_min())
  for (std::int64_t p = 0; p < n * c; ++p) {
    std::int64_t const b = p / c, ch = p % c;
    float const sc = 1.0f + md[b * 2 * c + ch], sh = md[b * 2 * c + c + ch];
    float* row = xd + p * sp;
    for (std::int64_t i = 0; i < sp; ++i) row[i] = silu_f32(row[i] * sc + sh);
  }
}

}  // namespace fd::backend
