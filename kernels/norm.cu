// Reductions of the CUDA backend: GroupNorm(+SiLU), LayerNorm and the attention softmax. One block
// per normalised unit; statistics in fp32 with two passes (mean, then centred squares), which keeps
// the error of large groups (VAE: millions of elements) at the level of the fp32 reference.

#include "kernel_common.cuh"
#include "launch.hpp"

namespace fd::backend::cuda_kernels {

namespace {

constexpr int kNormThreads = 512;

template <class T>
__global__ void __launch_bounds__(kNormThreads) group_norm_k(T const* x, T const* gamma, T const* beta, T* y, i64 c,
                                                             i64 spatial, int groups, float eps, bool silu) {
  __shared__ float red[32];
  i64 const unit = blockIdx.x;  // sample * groups + group
  i64 const b = unit / groups, g = unit % groups, cpg = c / groups;
  i64 const base = (b * c + g * cpg) * spatial, count = cpg * spatial;
  T const* xs = x + base;
  float s = 0.0f;
  for (i64 i = threadIdx.x; i < count; i += blockDim.x) s += ld(xs + i);
  float const mean = block_sum(s, red) / static_cast<float>(count);
  float q = 0.0f;
  for (i64 i = threadIdx.x; i < count; i += blockDim.x) {
    float const d = ld(xs + i) - mean;
    q += d * d;
  }
  float const rstd = rsqrtf(block_sum(q, red) / static_cast<float>(count) + eps);
  for (i64 i = threadIdx.x; i < count; i += blockDim.x) {
    i64 const ch = g * cpg + i / spatial;
    float v = (ld(xs + i) - mean) * rstd * ld(gamma + ch) + ld(beta + ch);
    if (silu) v = silu_f(v);
    st(y + base + i, v);
  }
}

template <class T>
__global__ void __launch_bounds__(kNormThreads) layer_norm_k(T const* x, T const* gamma, T const* beta, T* y, i64 c,
                                                             float eps) {
  __shared__ float red[32];
  T const* xr = x + blockIdx.x * c;
  T* yr = y + blockIdx.x * c;
  float s = 0.0f;
  for (i64 i = threadIdx.x; i < c; i += blockDim.x) s += ld(xr + i);
  float const mean = block_sum(s, red) / static_cast<float>(c);
  float q = 0.0f;
  for (i64 i = threadIdx.x; i < c; i += blockDim.x) {
    float const d = ld(xr + i) - mean;
    q += d * d;
  }
  float const rstd = rsqrtf(block_sum(q, red) / static_cast<float>(c) + eps);
  for (i64 i = threadIdx.x; i < c; i += blockDim.x) st(yr + i, (ld(xr + i) - mean) * rstd * ld(gamma + i) + ld(beta + i));
}

template <class T>
__global__ void __launch_bounds__(kThreads) softmax_k(float const* scores, T* p, i64 lk, bool causal,
                                                       i64 rows_per_head, i64 q0) {
  __shared__ float red[32];
  i64 const r = blockIdx.x;
  float const* sr = scores + r * lk;
  T* pr = p + r * lk;
  i64 const visible = causal ? min(lk, q0 + r % rows_per_head + 1) : lk;
  float m = -INFINITY;
  for (i64 j = threadIdx.x; j < visible; j += blockDim.x) m = fmaxf(m, sr[j]);
  m = block_max(m, red);
  float s = 0.0f;
  for (i64 j = threadIdx.x; j < visible; j += blockDim.x) s += __expf(sr[j] - m);
  float const inv = 1.0f / block_sum(s, red);
  for (i64 j = threadIdx.x; j < lk; j += blockDim.x) st(pr + j, j < visible ? __expf(sr[j] - m) * inv : 0.0f);
}

}  // namespace

void group_norm(DType dt, void const* x, void const* gamma, void const* beta, void* y, i64 n, i64 c, i64 spatial,
                int groups, float eps, bool silu, cudaStream_t s) {
  if (cuda_detail::replaying()) return;  // a graph replay issues no device work
  if (n * c * spatial == 0) return;
  dispatch(dt, "group_norm", [&](auto t) {
    using T = decltype(t);
    group_norm_k<T><<<static_cast<unsigned>(n * groups), kNormThreads, 0, s>>>(
        static_cast<T const*>(x), static_cast<T const*>(gamma), static_cast<T const*>(beta), static_cast<T*>(y), c,
        spatial, groups, eps, silu);
  });
  FD_CUDA_LAUNCHED("group_norm_k");
}

void layer_norm(DType dt, void const* x, void const* gamma, void const* beta, void* y, i64 rows, i64 c, float eps,
                cudaStream_t s) {
  if (cuda_detail::replaying()) return;  // a graph replay issues no device work
  if (rows * c == 0) return;
  int const threads = c >= 1024 ? kNormThreads : 256;
  dispatch(dt, "layer_norm", [&](auto t) {
    using T = decltype(t);
    layer_norm_k<T><<<static_cast<unsigned>(rows), threads, 0, s>>>(static_cast<T const*>(x),
                                                                     static_cast<T const*>(gamma),
                                                                     static_cast<T const*>(beta), static_cast<T*>(y), c, eps);
  });
  FD_CUDA_LAUNCHED("layer_norm_k");
}

void softmax_rows(float const* scores, DType dt, void* p, i64 rows, i64 lk, bool causal, i64 rows_per_head, i64 q0,
                  cudaStream_t s) {
  if (cuda_detail::replaying()) return;  // a graph replay issues no device work
  if (rows * lk == 0) return;
  dispatch(dt, "attention softmax", [&](auto t) {
    using T = decltype(t);
    softmax_k<T><<<static_cast<unsigned>(rows), kThreads, 0, s>>>(scores, static_cast<T*>(p), lk, causal,
                                                                  rows_per_head, q0);
  });
  FD_CUDA_LAUNCHED("softmax_k");
}

}  // namespace fd::backend::cuda_kernels
