#pragma once
// Internal to FasterDiffusion::cuda: the kernels of kernels/*.cu, launched on a stream over raw device
// pointers. Shapes are checked by the op layer (ops_*.cpp) before these run; every launcher checks the
// launch itself. `dt` is the storage dtype of the tensors named (f32, f16 or bf16).

#include <cuda_runtime_api.h>

#include <cstdint>

#include "fd/core/dtype.hpp"

namespace fd::backend::cuda_kernels {

using i64 = std::int64_t;

enum class Unary { kSilu, kGelu, kQuickGelu, kRelu, kScale, kAddScalar, kTanhClamp, kClamp };

/// x = f(x) elementwise; a, b are the op's scalars (scale, shift, bounds).
void unary(DType dt, void* x, i64 n, Unary op, float a, float b, cudaStream_t s);
/// dst = src converted.
void cast(DType from, void const* src, DType to, void* dst, i64 n, cudaStream_t s);
/// a += alpha * b.
void axpy(DType dt, void* a, void const* b, float alpha, i64 n, cudaStream_t s);
/// y[r, i] = x[r, i] * gelu(x[r, d + i]) for x [rows, 2d].
void geglu(DType dt, void const* x, void* y, i64 rows, i64 d, cudaStream_t s);
/// y[i, :] = table[ids[i], :] (+ pos[i % len, :]).
void embedding(DType dt, void const* table, i64 const* ids, void const* pos, void* y, i64 n, i64 len, i64 d,
               cudaStream_t s);
/// y[i] = [a[i] (sa elements) | b[i] (sb elements)] for i < n.
void concat_rows(DType dt, void const* a, void const* b, void* y, i64 n, i64 sa, i64 sb, cudaStream_t s);
/// Nearest-neighbour resize with PyTorch's index rule.
void upsample_nearest(DType dt, void const* x, void* y, i64 planes, i64 h, i64 w, i64 oh, i64 ow, cudaStream_t s);
/// y[n, c, p] += bias[c] | sample_bias[n, c] (+ residual[n, c, p]); either bias may be null.
void channel_epilogue(DType dt, void* y, void const* bias, void const* sample_bias, void const* residual, i64 n, i64 c,
                      i64 spatial, cudaStream_t s);
/// y[r, j] += bias[j] (+ residual[r, j]) for y [rows, cols]; bias may be null.
void row_epilogue(DType dt, void* y, void const* bias, void const* residual, i64 rows, i64 cols, cudaStream_t s);
/// x[n, c, p] = silu(x * (1 + mod[n, c]) + mod[n, C + c]).
void modulate_silu(DType dt, void* x, void const* mod, i64 n, i64 c, i64 spatial, cudaStream_t s);
/// Tile cross-fade of fd::backend::composite_tile_.
void composite_tile(DType dt, void* dst, void const* tile, i64 planes, i64 H, i64 W, i64 h, i64 w, i64 y0, i64 x0,
                    i64 ramp_top, i64 ramp_left, cudaStream_t s);
/// GroupNorm (+ SiLU) over x[n, c, spatial]; statistics in fp32, two passes over each group.
void group_norm(DType dt, void const* x, void const* gamma, void const* beta, void* y, i64 n, i64 c, i64 spatial,
                int groups, float eps, bool silu, cudaStream_t s);
/// LayerNorm over the last dimension of x[rows, c].
void layer_norm(DType dt, void const* x, void const* gamma, void const* beta, void* y, i64 rows, i64 c, float eps,
                cudaStream_t s);
/// p[r, :] = softmax(scores[r, :]) for rows r of length lk (fp32 scores, p in dt). With causal, row r
/// is query q0 + (r % rows_per_head) and sees keys j <= that query.
void softmax_rows(float const* scores, DType dt, void* p, i64 rows, i64 lk, bool causal, i64 rows_per_head, i64 q0,
                  cudaStream_t s);

/// Fused attention (kernels/attention.cu) for f16/bf16 and head dims up to 160: o[b, i, h*d + c] of a
/// contiguous [B, Lq, H*d] output from q/k/v with batch strides *_bs and row strides *_rs (elements).
/// Returns false, launching nothing, for shapes and dtypes it does not cover.
bool flash_attention(DType dt, void const* q, i64 q_bs, i64 q_rs, void const* k, i64 k_bs, i64 k_rs, void const* v,
                     i64 v_bs, i64 v_rs, void* o, i64 b, i64 lq, i64 lk, int heads, int d, float scale, bool causal,
                     cudaStream_t s);

}  // namespace fd::backend::cuda_kernels
