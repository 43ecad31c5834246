// Elementwise, normalisation and data-movement ops of the CUDA backend: argument checks as the CPU
// ops make them, then one kernel each (kernels/elementwise.cu, kernels/norm.cu).

#include <cmath>
#include <vector>

#include "fd/backend/detail/timestep_values.hpp"
#include "ops_common.hpp"

namespace fd::backend {

using namespace cuda_detail;
namespace k = cuda_kernels;

CudaTensor cast(Cuda const& be, CudaTensor const& x, DType dtype) {
  require_float("cast", "input", x);
  if (!floating_storage(dtype)) {
    fail(Errc::kDTypeMismatch, "cast: target dtype " + std::string(dtype_name(dtype)) + " is not f32, f16 or bf16");
  }
  if (x.dtype() == dtype) return x;
  CudaTensor const c = x.contiguous(be);
  CudaTensor y = CudaTensor::empty(be, c.shape(), dtype);
  k::cast(c.dtype(), c.raw(), dtype, y.raw(), c.numel(), ctx(be).stream);
  return y;
}

namespace {
void unary_(Cuda const& be, char const* op, CudaTensor& x, k::Unary u, float a = 0, float b = 0) {
  require_contiguous(op, "input", x);
  k::unary(x.dtype(), x.raw(), x.numel(), u, a, b, ctx(be).stream);
}
}  // namespace

void silu_(Cuda const& be, CudaTensor& x) { unary_(be, "silu", x, k::Unary::kSilu); }
CudaTensor silu(Cuda const& be, CudaTensor const& x) {
  CudaTensor y = x.clone(be);
  silu_(be, y);
  return y;
}
void gelu_(Cuda const& be, CudaTensor& x) { unary_(be, "gelu", x, k::Unary::kGelu); }
void quick_gelu_(Cuda const& be, CudaTensor& x) { unary_(be, "quick_gelu", x, k::Unary::kQuickGelu); }
void relu_(Cuda const& be, CudaTensor& x) { unary_(be, "relu", x, k::Unary::kRelu); }
void tanh_clamp_(Cuda const& be, CudaTensor& x, float magnitude) {
  if (!(magnitude > 0.0f)) fail(Errc::kInvalidArgument, "tanh_clamp: magnitude must be positive");
  unary_(be, "tanh_clamp", x, k::Unary::kTanhClamp, magnitude);
}
void clamp_(Cuda const& be, CudaTensor& x, float lo, float hi) { unary_(be, "clamp", x, k::Unary::kClamp, lo, hi); }
void scale_(Cuda const& be, CudaTensor& x, float s) { unary_(be, "scale", x, k::Unary::kScale, s); }
void add_scalar_(Cuda const& be, CudaTensor& x, float s) { unary_(be, "add_scalar", x, k::Unary::kAddScalar, s); }

void add_(Cuda const& be, CudaTensor& a, CudaTensor const& b, float alpha) {
  require_contiguous("add", "lhs", a);
  require_float("add", "rhs", b);
  if (!(a.shape() == b.shape())) fail(Errc::kShapeMismatch, "add: " + a.shape().str() + " vs " + b.shape().str());
  CudaTensor const bb = as_dtype(be, b.contiguous(be), a.dtype());
  k::axpy(a.dtype(), a.raw(), bb.raw(), alpha, a.numel(), ctx(be).stream);
}

CudaTensor add(Cuda const& be, CudaTensor const& a, CudaTensor const& b) {
  CudaTensor y = a.clone(be);
  add_(be, y, b);
  return y;
}

CudaTensor geglu(Cuda const& be, CudaTensor const& x) {
  require_contiguous("geglu", "input", x);
  i64 const two_d = x.dim(-1);
  if (two_d % 2 != 0) fail(Errc::kShapeMismatch, "geglu: last dimension of " + x.shape().str() + " is odd");
  i64 const d = two_d / 2, rows = two_d == 0 ? 0 : x.numel() / two_d;
  Shape s = x.shape();
  s[s.rank() - 1] = d;
  CudaTensor y = CudaTensor::empty(be, s, x.dtype());
  k::geglu(x.dtype(), x.raw(), y.raw(), rows, d, ctx(be).stream);
  return y;
}

CudaTensor embedding(Cuda const& be, CudaTensor const& table, std::span<std::int64_t const> ids, std::int64_t batch,
                     CudaTensor const& positions) {
  require_contiguous("embedding", "table", table);
  if (table.rank() != 2) fail(Errc::kShapeMismatch, "embedding: table must be [rows, D], got " + table.shape().str());
  i64 const rows = table.dim(0), d = table.dim(1);
  i64 const n = static_cast<i64>(ids.size());
  if (batch <= 0 || n % batch != 0) {
    fail(Errc::kShapeMismatch, "embedding: " + std::to_string(n) + " ids do not split into a batch of " +
                                   std::to_string(batch));
  }
  i64 const len = n / batch;
  CudaTensor pos;
  if (positions.defined()) {
    require_contiguous("embedding", "positions", positions);
    if (positions.rank() != 2 || positions.dim(1) != d || positions.dim(0) < len) {
      fail(Errc::kShapeMismatch, "embedding: " + std::to_string(len) + " positions of width " + std::to_string(d) +
                                     " needed, position table is " + positions.shape().str());
    }
    pos = as_dtype(be, positions, table.dtype());
  }
  for (i64 i = 0; i < n; ++i) {
    auto const id = ids[static_cast<std::size_t>(i)];
    if (id < 0 || id >= rows) {
      fail(Errc::kInvalidArgument, "embedding: id " + std::to_string(id) + " at [" + std::to_string(i / len) + ", " +
                                       std::to_string(i % len) + "] is outside the vocabulary [0, " +
                                       std::to_string(rows) + ")");
    }
  }
  CudaTensor const dev_ids = CudaTensor::from_host(be, {n}, ids.data());
  CudaTensor y = CudaTensor::empty(be, {batch, len, d}, table.dtype());
  k::embedding(table.dtype(), table.raw(), dev_ids.data<std::int64_t>(), ptr(pos), y.raw(), n, len, d, ctx(be).stream);
  return y;
}

CudaTensor concat_channels(Cuda const& be, CudaTensor const& a, CudaTensor const& b) {
  require_contiguous("concat", "first input", a);
  require_float("concat", "second input", b);
  bool ok = a.rank() == b.rank() && a.rank() >= 2 && a.dim(0) == b.dim(0);
  for (int i = 2; ok && i < a.rank(); ++i) ok = a.dim(i) == b.dim(i);
  if (!ok) fail(Errc::kShapeMismatch, "concat: cannot join " + a.shape().str() + " and " + b.shape().str() + " on dim 1");
  CudaTensor const bb = as_dtype(be, b.contiguous(be), a.dtype());
  Shape s = a.shape();
  s[1] = a.dim(1) + b.dim(1);
  CudaTensor y = CudaTensor::empty(be, s, a.dtype());
  i64 const n = a.dim(0);
  k::concat_rows(a.dtype(), a.raw(), bb.raw(), y.raw(), n, n ? a.numel() / n : 0, n ? bb.numel() / n : 0,
                 ctx(be).stream);
  return y;
}

CudaTensor upsample_nearest(Cuda const& be, CudaTensor const& x, std::int64_t out_h, std::int64_t out_w) {
  require_contiguous("upsample_nearest", "input", x);
  require_rank("upsample_nearest", "input", x, 4);
  if (out_h <= 0 || out_w <= 0) fail(Errc::kInvalidArgument, "upsample_nearest: output size must be positive");
  CudaTensor y = CudaTensor::empty(be, {x.dim(0), x.dim(1), out_h, out_w}, x.dtype());
  k::upsample_nearest(x.dtype(), x.raw(), y.raw(), x.dim(0) * x.dim(1), x.dim(2), x.dim(3), out_h, out_w,
                      ctx(be).stream);
  return y;
}

CudaTensor tile_halves(Cuda const& be, CudaTensor const& x, int halves, int times) {
  require_contiguous("tile_halves", "input", x);
  if (halves < 1 || times < 1 || x.rank() < 1 || x.dim(0) % halves != 0) {
    fail(Errc::kShapeMismatch, "tile_halves: batch of " + x.shape().str() + " does not split into " +
                                   std::to_string(halves) + " halves");
  }
  if (times == 1) return x;
  Shape s = x.shape();
  s[0] = x.dim(0) * times;
  CudaTensor y = CudaTensor::empty(be, s, x.dtype());
  std::size_t const half_bytes = x.nbytes() / static_cast<std::size_t>(halves);
  for (int h = 0; h < halves; ++h) {
    for (int t = 0; t < times; ++t) {
      be.copy(y.raw() + (static_cast<std::size_t>(h) * times + t) * half_bytes,
              x.raw() + static_cast<std::size_t>(h) * half_bytes, half_bytes);
    }
  }
  return y;
}

CudaTensor timestep_embedding(Cuda const& be, std::span<float const> timesteps, int dim, bool flip_sin_to_cos,
                              float downscale_freq_shift, float max_period) {
  // A few hundred values: computed on the host as the CPU backend does (same code, same libm), uploaded.
  std::vector<float> const v = detail::timestep_values(timesteps, dim, flip_sin_to_cos, downscale_freq_shift, max_period);
  return CudaTensor::from_host(be, {static_cast<i64>(timesteps.size()), dim}, v);
}

void add_rows_(Cuda const& be, CudaTensor& x, CudaTensor const& bias) {
  require_contiguous("add_rows", "input", x);
  require_contiguous("add_rows", "bias", bias);
  i64 const c = bias.numel();
  if (x.rank() != 2 || x.dim(1) != c) {
    fail(Errc::kShapeMismatch, "add_rows: input " + x.shape().str() + " vs bias " + bias.shape().str());
  }
  CudaTensor const bb = as_dtype(be, bias, x.dtype());
  k::row_epilogue(x.dtype(), x.raw(), bb.raw(), nullptr, x.dim(0), c, ctx(be).stream);
}

void modulate_silu_(Cuda const& be, CudaTensor& x, CudaTensor const& mod) {
  require_contiguous("modulate", "input", x);
  require_contiguous("modulate", "modulation", mod);
  i64 const n = x.dim(0), c = x.dim(1), sp = n * c == 0 ? 0 : x.numel() / (n * c);
  require_numel("modulate", "modulation", mod, n * 2 * c);
  CudaTensor const m = as_dtype(be, mod, x.dtype());
  k::modulate_silu(x.dtype(), x.raw(), m.raw(), n, c, sp, ctx(be).stream);
}

void composite_tile_(Cuda const& be, CudaTensor& dst, CudaTensor const& tile, std::int64_t y0, std::int64_t x0,
                     std::int64_t ramp_top, std::int64_t ramp_left) {
  require_contiguous("composite_tile", "destination", dst);
  require_contiguous("composite_tile", "tile", tile);
  require_rank("composite_tile", "destination", dst, 4);
  require_rank("composite_tile", "tile", tile, 4);
  i64 const n = dst.dim(0), c = dst.dim(1), H = dst.dim(2), W = dst.dim(3), h = tile.dim(2), w = tile.dim(3);
  if (tile.dim(0) != n || tile.dim(1) != c || y0 < 0 || x0 < 0 || y0 + h > H || x0 + w > W) {
    fail(Errc::kShapeMismatch, "composite_tile: tile " + tile.shape().str() + " at (" + std::to_string(y0) + ", " +
                                   std::to_string(x0) + ") does not fit in " + dst.shape().str());
  }
  if (ramp_top < 0 || ramp_top > h || ramp_left < 0 || ramp_left > w) {
    fail(Errc::kInvalidArgument, "composite_tile: ramps (" + std::to_string(ramp_top) + ", " +
                                     std::to_string(ramp_left) + ") outside the tile " + tile.shape().str());
  }
  CudaTensor const t = as_dtype(be, tile, dst.dtype());
  k::composite_tile(dst.dtype(), dst.raw(), t.raw(), n * c, H, W, h, w, y0, x0, ramp_top, ramp_left, ctx(be).stream);
}

CudaTensor group_norm(Cuda const& be, CudaTensor const& x, int groups, CudaTensor const& gamma, CudaTensor const& beta,
                      float eps, Activation act) {
  require_contiguous("group_norm", "input", x);
  if (x.rank() < 2) fail(Errc::kShapeMismatch, "group_norm: input " + x.shape().str() + " has no channel dim");
  i64 const n = x.dim(0), c = x.dim(1);
  if (groups <= 0 || c % groups != 0) {
    fail(Errc::kShapeMismatch, "group_norm: " + std::to_string(c) + " channels not divisible into " +
                                   std::to_string(groups) + " groups");
  }
  require_contiguous("group_norm", "weight", gamma);
  require_contiguous("group_norm", "bias", beta);
  require_numel("group_norm", "weight", gamma, c);
  require_numel("group_norm", "bias", beta, c);
  DType const dt = gamma.dtype();
  CudaTensor const xs = as_dtype(be, x, dt), bs = as_dtype(be, beta, dt);
  i64 const spatial = c == 0 || n == 0 ? 0 : x.numel() / (n * c);
  CudaTensor y = CudaTensor::empty(be, x.shape(), dt);
  k::group_norm(dt, xs.raw(), gamma.raw(), bs.raw(), y.raw(), n, c, spatial, groups, eps, act == Activation::kSilu,
                ctx(be).stream);
  return y;
}

CudaTensor layer_norm(Cuda const& be, CudaTensor const& x, CudaTensor const& gamma, CudaTensor const& beta, float eps) {
  require_contiguous("layer_norm", "input", x);
  i64 const c = x.dim(-1);
  require_contiguous("layer_norm", "weight", gamma);
  require_contiguous("layer_norm", "bias", beta);
  require_numel("layer_norm", "weight", gamma, c);
  require_numel("layer_norm", "bias", beta, c);
  DType const dt = gamma.dtype();
  CudaTensor const xs = as_dtype(be, x, dt), bs = as_dtype(be, beta, dt);
  CudaTensor y = CudaTensor::empty(be, x.shape(), dt);
  k::layer_norm(dt, xs.raw(), gamma.raw(), bs.raw(), y.raw(), c == 0 ? 0 : x.numel() / c, c, eps, ctx(be).stream);
  return y;
}

}  // namespace fd::backend
