// Matrix-product ops of the CUDA backend on cuBLAS: dense layers, the Transformer2D projections with
// their layout change folded into the GEMM operand order, and attention as two batched GEMMs around
// an fp32 softmax, chunked over queries so the score block stays within CudaOptions::attention_workspace.

#include <algorithm>

#include "ops_common.hpp"

namespace fd::backend {

using namespace cuda_detail;
namespace k = cuda_kernels;

namespace {

cudaDataType_t cuda_type(DType d) {
  switch (d) {
    case DType::kF32: return CUDA_R_32F;
    case DType::kF16: return CUDA_R_16F;
    case DType::kBF16: return CUDA_R_16BF;
    default: fail(Errc::kDTypeMismatch, "cuda gemm: dtype " + std::string(dtype_name(d)) + " has no cuBLAS type");
  }
}

// Row-major C[M, N] (ldc) = alpha * op(A)[M, K] · op(B)[K, N] + beta * C, `batch` times with the given
// element strides. A row-major matrix is the column-major transpose, so this is cuBLAS's
// C^T = op(B)^T op(A)^T with the operands swapped and the same transpose flags. fp32 accumulation.
void gemm(Cuda const& be, bool ta, bool tb, i64 m, i64 n, i64 kk, float alpha, DType ab, void const* a, i64 lda,
          i64 stride_a, void const* b, i64 ldb, i64 stride_b, float beta, DType ct, void* c, i64 ldc, i64 stride_c,
          i64 batch) {
  if (m == 0 || n == 0 || batch == 0 || replaying()) return;
  Context& cx = ctx(be);
  be.add_flops(static_cast<std::uint64_t>(2 * m * n * kk * batch));
  cublasComputeType_t const compute =
      ab == DType::kF32 && cx.opt.allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  FD_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      cx.blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, static_cast<int>(n),
      static_cast<int>(m), static_cast<int>(kk), &alpha, b, cuda_type(ab), static_cast<int>(ldb), stride_b, a,
      cuda_type(ab), static_cast<int>(lda), stride_a, &beta, c, cuda_type(ct), static_cast<int>(ldc), stride_c,
      static_cast<int>(batch), compute, CUBLAS_GEMM_DEFAULT));
}

// Checks a [B, L, H*d] attention operand whose rows may be spaced wider than H*d (views of a fused QKV).
void check_attention_operand(char const* what, CudaTensor const& t, i64 b, i64 hd) {
  require_float("attention", what, t);
  require_rank("attention", what, t, 3);
  if (t.dim(0) != b || t.dim(2) != hd || t.strides()[2] != 1 || t.strides()[1] < hd ||
      (t.dim(0) > 1 && t.strides()[0] < t.dim(1) * t.strides()[1])) {
    fail(Errc::kShapeMismatch, std::string("attention: ") + what + " " + t.shape().str() + " does not match batch " +
                                   std::to_string(b) + " and width " + std::to_string(hd));
  }
}

}  // namespace

CudaTensor linear(Cuda const& be, CudaTensor const& x, CudaTensor const& w, CudaTensor const& bias,
                  CudaTensor const& residual) {
  require_float("linear", "input", x);
  require_contiguous("linear", "weight", w);
  require_rank("linear", "weight", w, 2);
  i64 const n = w.dim(0), kk = w.dim(1);
  if (x.rank() < 1 || x.dim(-1) != kk) {
    fail(Errc::kShapeMismatch, "linear: input " + x.shape().str() + " does not end in " + std::to_string(kk) +
                                   " (weight " + w.shape().str() + ")");
  }
  if (bias.defined()) {
    require_contiguous("linear", "bias", bias);
    require_numel("linear", "bias", bias, n);
  }
  DType const dt = w.dtype();
  // Rows must be equally spaced with a unit inner stride; anything else is packed first.
  CudaTensor xs = as_dtype(be, x, dt);
  i64 ld = kk;
  if (!xs.is_contiguous()) {
    bool rowwise = xs.strides()[xs.rank() - 1] == 1 && xs.rank() >= 2;
    for (int i = 0; i + 2 < xs.rank() && rowwise; ++i) rowwise = xs.strides()[i] == xs.strides()[i + 1] * xs.shape()[i + 1];
    if (rowwise) {
      ld = xs.strides()[xs.rank() - 2];
    } else {
      xs = xs.contiguous(be);
    }
  }
  i64 const rows = kk == 0 ? 0 : x.numel() / kk;
  Shape out_shape = x.shape();
  out_shape[out_shape.rank() - 1] = n;
  CudaTensor y = CudaTensor::empty(be, out_shape, dt);
  CudaTensor res;
  if (residual.defined()) {
    require_contiguous("linear", "residual", residual);
    if (!(residual.shape() == out_shape)) {
      fail(Errc::kShapeMismatch, "linear: residual " + residual.shape().str() + " vs output " + out_shape.str());
    }
    res = as_dtype(be, residual, dt);
  }
  gemm(be, false, true, rows, n, kk, 1.0f, dt, xs.raw(), ld, 0, w.raw(), kk, 0, 0.0f, dt, y.raw(), n, 0, 1);
  CudaTensor const bs = as_dtype(be, bias, dt);
  k::row_epilogue(dt, y.raw(), ptr(bs), ptr(res), rows, n, ctx(be).stream);
  return y;
}

CudaTensor channels_to_tokens(Cuda const& be, CudaTensor const& x, CudaTensor const& w, CudaTensor const& bias) {
  require_contiguous("channels_to_tokens", "input", x);
  require_contiguous("channels_to_tokens", "weight", w);
  require_rank("channels_to_tokens", "input", x, 4);
  i64 const n = x.dim(0), c = x.dim(1), hw = x.dim(2) * x.dim(3), d = w.dim(0);
  require_numel("channels_to_tokens", "weight", w, d * c);
  if (bias.defined()) {
    require_contiguous("channels_to_tokens", "bias", bias);
    require_numel("channels_to_tokens", "bias", bias, d);
  }
  DType const dt = w.dtype();
  CudaTensor const xs = as_dtype(be, x, dt), bs = as_dtype(be, bias, dt);
  CudaTensor y = CudaTensor::empty(be, {n, hw, d}, dt);
  // y_b[hw, D] = x_b[C, hw]^T · w[D, C]^T
  gemm(be, true, true, hw, d, c, 1.0f, dt, xs.raw(), hw, c * hw, w.raw(), c, 0, 0.0f, dt, y.raw(), d, hw * d, n);
  k::row_epilogue(dt, y.raw(), ptr(bs), nullptr, n * hw, d, ctx(be).stream);
  return y;
}

CudaTensor tokens_to_channels(Cuda const& be, CudaTensor const& t, CudaTensor const& w, CudaTensor const& bias,
                              CudaTensor const& residual) {
  require_contiguous("tokens_to_channels", "input", t);
  require_contiguous("tokens_to_channels", "weight", w);
  require_contiguous("tokens_to_channels", "residual", residual);
  require_rank("tokens_to_channels", "input", t, 3);
  require_rank("tokens_to_channels", "residual", residual, 4);
  i64 const n = t.dim(0), hw = t.dim(1), d = t.dim(2), c = w.dim(0);
  require_numel("tokens_to_channels", "weight", w, c * d);
  if (bias.defined()) {
    require_contiguous("tokens_to_channels", "bias", bias);
    require_numel("tokens_to_channels", "bias", bias, c);
  }
  if (residual.dim(0) != n || residual.dim(1) != c || residual.dim(2) * residual.dim(3) != hw) {
    fail(Errc::kShapeMismatch, "tokens_to_channels: residual " + residual.shape().str() + " does not match tokens " +
                                   t.shape().str() + " and weight " + w.shape().str());
  }
  DType const dt = w.dtype();
  CudaTensor const ts = as_dtype(be, t, dt), bs = as_dtype(be, bias, dt), rs = as_dtype(be, residual, dt);
  CudaTensor y = CudaTensor::empty(be, residual.shape(), dt);
  // y_b[C, hw] = w[C, D] · t_b[hw, D]^T, then + bias[c] + residual in one pass.
  gemm(be, false, true, c, hw, d, 1.0f, dt, w.raw(), d, 0, ts.raw(), d, hw * d, 0.0f, dt, y.raw(), hw, c * hw, n);
  k::channel_epilogue(dt, y.raw(), ptr(bs), nullptr, rs.raw(), n, c, hw, ctx(be).stream);
  return y;
}

CudaTensor attention(Cuda const& be, CudaTensor const& q, CudaTensor const& kt, CudaTensor const& v, int heads,
                     float scale, AttentionMask mask) {
  if (q.rank() != 3) fail(Errc::kShapeMismatch, "attention: query must be [B, L, C], got " + q.shape().str());
  i64 const b = q.dim(0), lq = q.dim(1), hd = q.dim(2);
  if (heads <= 0 || hd % heads != 0) {
    fail(Errc::kShapeMismatch, "attention: width " + std::to_string(hd) + " not divisible into " +
                                   std::to_string(heads) + " heads");
  }
  check_attention_operand("query", q, b, hd);
  check_attention_operand("key", kt, b, hd);
  check_attention_operand("value", v, b, hd);
  i64 const lk = kt.dim(1);
  if (v.dim(1) != lk) fail(Errc::kShapeMismatch, "attention: key " + kt.shape().str() + " vs value " + v.shape().str());
  DType const dt = q.dtype();
  CudaTensor const ks = as_dtype(be, kt, dt), vs = as_dtype(be, v, dt);
  // A cast copy is contiguous: re-check strides through the tensors actually used.
  i64 const d = hd / heads;
  CudaTensor o = CudaTensor::empty(be, {b, lq, hd}, dt);
  if (lq == 0 || b == 0) return o;
  if (lk == 0) fail(Errc::kShapeMismatch, "attention: empty key sequence");
  Context& cx = ctx(be);
  std::size_t const es = size_of(dt);
  bool const causal = mask == AttentionMask::kCausal;
  if (cx.opt.fused_attention && dt != DType::kF32) {
    if (k::flash_attention(dt, q.raw(), q.strides()[0], q.strides()[1], ks.raw(), ks.strides()[0], ks.strides()[1],
                           vs.raw(), vs.strides()[0], vs.strides()[1], o.raw(), b, lq, lk, heads, static_cast<int>(d),
                           scale, causal, cx.stream)) {
      be.add_flops(static_cast<std::uint64_t>(4 * b * heads * lq * lk * d));
      return o;
    }
  }
  // Query rows per chunk: heads x rows x lk fp32 scores within the workspace budget.
  i64 const per_row = heads * lk * static_cast<i64>(sizeof(float) + es);
  i64 const chunk = std::clamp<i64>(static_cast<i64>(cx.opt.attention_workspace) / std::max<i64>(per_row, 1), 1, lq);
  auto scores = be.allocate(static_cast<std::size_t>(heads * chunk * lk) * sizeof(float));
  auto probs = be.allocate(static_cast<std::size_t>(heads * chunk * lk) * es);
  i64 const rq = q.strides()[1], rk = ks.strides()[1], rv = vs.strides()[1];
  for (i64 bi = 0; bi < b; ++bi) {
    auto const* qb = q.raw() + bi * q.strides()[0] * static_cast<i64>(es);
    auto const* kb = ks.raw() + bi * ks.strides()[0] * static_cast<i64>(es);
    auto const* vb = vs.raw() + bi * vs.strides()[0] * static_cast<i64>(es);
    for (i64 q0 = 0; q0 < lq; q0 += chunk) {
      i64 const m = std::min(chunk, lq - q0);
      // S_h[m, lk] = scale * Q_h[m, d] · K_h[lk, d]^T, per head (heads stride d columns apart).
      gemm(be, false, true, m, lk, d, scale, dt, qb + q0 * rq * static_cast<i64>(es), rq, d, kb, rk, d, 0.0f,
           DType::kF32, scores.get(), lk, m * lk, heads);
      k::softmax_rows(reinterpret_cast<float const*>(scores.get()), dt, probs.get(), heads * m, lk, causal, m, q0,
                      cx.stream);
      // O_h[m, d] = P_h[m, lk] · V_h[lk, d], written into head h's columns of o.
      gemm(be, false, false, m, d, lk, 1.0f, dt, probs.get(), lk, m * lk, vb, rv, d, 0.0f, dt,
           o.raw() + (bi * lq + q0) * hd * static_cast<i64>(es), hd, d, heads);
    }
  }
  return o;
}

}  // namespace fd::backend
