#pragma once
// Internal to FasterDiffusion::cuda: storage-type loads/stores (every kernel computes in fp32), dtype
// dispatch, launch geometry and block reductions.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda_context.hpp"
#include "fd/core/dtype.hpp"
#include "fd/error.hpp"

namespace fd::backend::cuda_kernels {

using i64 = std::int64_t;

__device__ __forceinline__ float ld(float const* p) { return *p; }
__device__ __forceinline__ float ld(__half const* p) { return __half2float(*p); }
__device__ __forceinline__ float ld(__nv_bfloat16 const* p) { return __bfloat162float(*p); }
__device__ __forceinline__ void st(float* p, float v) { *p = v; }
__device__ __forceinline__ void st(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void st(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

__device__ __forceinline__ float silu_f(float v) { return v / (1.0f + expf(-v)); }
__device__ __forceinline__ float gelu_f(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); }

// Calls f(T{}) with T the C++ type of storage dtype dt.
template <class F>
void dispatch(DType dt, char const* op, F&& f) {
  switch (dt) {
    case DType::kF32: f(float{}); break;
    case DType::kF16: f(__half{}); break;
    case DType::kBF16: f(__nv_bfloat16{}); break;
    default:
      fail(Errc::kDTypeMismatch, std::string("cuda ") + op + ": dtype " + std::string(dtype_name(dt)) +
                                     " is not a floating storage type (f32, f16, bf16)");
  }
}

constexpr int kThreads = 256;

inline unsigned blocks_for(i64 n, int threads = kThreads) {
  i64 const b = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::clamp<i64>(b, 1, i64{1} << 20));
}

// Sum over the block; every thread gets the result. `red` holds >= 32 floats of shared memory.
__device__ __forceinline__ float block_sum(float v, float* red) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  int const lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // red may still be read from a previous reduction
  if (lane == 0) red[warp] = v;
  __syncthreads();
  int const warps = (blockDim.x + 31) >> 5;
  v = lane < warps ? red[lane] : 0.0f;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float block_max(float v, float* red) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  int const lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  int const warps = (blockDim.x + 31) >> 5;
  v = lane < warps ? red[lane] : -INFINITY;
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

}  // namespace fd::backend::cuda_kernels
