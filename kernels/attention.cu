// Fused multi-head attention for f16/bf16 storage (flash-attention style): each block owns 64 queries
// of one (batch, head); it streams 32-key tiles of K and V through shared memory, computes the scores
// with tensor-core WMMA, keeps a running row max and sum (online softmax) and accumulates P·V in fp32,
// so the Lq x Lk score matrix never reaches device memory. Head dims up to 160 are zero-padded to the
// next instantiated width (48, 64, 80, 96, 128, 160).

#include <mma.h>

#include "kernel_common.cuh"
#include "launch.hpp"

namespace fd::backend::cuda_kernels {

namespace {

namespace wmma = nvcuda::wmma;

constexpr int kBq = 64;  // queries per block: 4 warps x 16 rows
constexpr int kBk = 32;  // keys per tile
constexpr int kWarps = 4;

template <int DP, class T>
constexpr std::size_t flash_smem() {
  return sizeof(T) * (kBq * DP + 2 * kBk * DP + kWarps * 16 * kBk) +
         sizeof(float) * (kWarps * 16 * kBk + kWarps * 16 * DP + 3 * kWarps * 16);
}

template <class T>
__device__ __forceinline__ T zero_of() {
  T z;
  st(&z, 0.0f);
  return z;
}

template <class T, int DP>
__global__ void __launch_bounds__(kWarps * 32) flash_k(T const* __restrict__ q, i64 q_bs, i64 q_rs,
                                                       T const* __restrict__ k, i64 k_bs, i64 k_rs,
                                                       T const* __restrict__ v, i64 v_bs, i64 v_rs, T* __restrict__ o,
                                                       i64 lq, i64 lk, int heads, int d, float scale, bool causal) {
  extern __shared__ __align__(128) unsigned char smem[];
  T* sQ = reinterpret_cast<T*>(smem);  // [kBq][DP]
  T* sK = sQ + kBq * DP;               // [kBk][DP]
  T* sV = sK + kBk * DP;               // [kBk][DP]
  T* sP = sV + kBk * DP;               // [warps][16][kBk]
  float* sS = reinterpret_cast<float*>(sP + kWarps * 16 * kBk);  // [warps][16][kBk]
  float* sO = sS + kWarps * 16 * kBk;                            // [warps][16][DP]
  float* sM = sO + kWarps * 16 * DP;                             // running max per row
  float* sL = sM + kWarps * 16;                                  // running sum per row
  float* sA = sL + kWarps * 16;                                  // this tile's rescale factor per row

  int const h = blockIdx.y;
  i64 const b = blockIdx.z;
  i64 const q0 = static_cast<i64>(blockIdx.x) * kBq;
  T const* qb = q + b * q_bs + static_cast<i64>(h) * d;
  T const* kb = k + b * k_bs + static_cast<i64>(h) * d;
  T const* vb = v + b * v_bs + static_cast<i64>(h) * d;
  T const zero = zero_of<T>();

  for (int idx = threadIdx.x; idx < kBq * DP; idx += blockDim.x) {
    int const r = idx / DP, c = idx % DP;
    i64 const qi = q0 + r;
    sQ[idx] = qi < lq && c < d ? qb[qi * q_rs + c] : zero;
  }
  for (int idx = threadIdx.x; idx < kWarps * 16 * DP; idx += blockDim.x) sO[idx] = 0.0f;
  for (int idx = threadIdx.x; idx < kWarps * 16; idx += blockDim.x) {
    sM[idx] = -INFINITY;
    sL[idx] = 0.0f;
  }
  __syncthreads();

  int const warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* S = sS + warp * 16 * kBk;
  T* P = sP + warp * 16 * kBk;
  float* O = sO + warp * 16 * DP;
  // With a causal mask no query of this block sees keys past its last query.
  i64 const kv_end = causal ? min(lk, q0 + kBq) : lk;
  for (i64 k0 = 0; k0 < kv_end; k0 += kBk) {
    for (int idx = threadIdx.x; idx < kBk * DP; idx += blockDim.x) {
      int const r = idx / DP, c = idx % DP;
      i64 const kj = k0 + r;
      bool const in = kj < lk && c < d;
      sK[idx] = in ? kb[kj * k_rs + c] : zero;
      sV[idx] = in ? vb[kj * v_rs + c] : zero;
    }
    __syncthreads();

    // S[16, kBk] = Q_w[16, DP] · K_tile[kBk, DP]^T
    for (int n = 0; n < kBk / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
      for (int kk = 0; kk < DP / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fb;
        wmma::load_matrix_sync(fa, sQ + warp * 16 * DP + kk * 16, DP);
        wmma::load_matrix_sync(fb, sK + n * 16 * DP + kk * 16, DP);
        wmma::mma_sync(acc, fa, fb, acc);
      }
      wmma::store_matrix_sync(S + n * 16, acc, kBk, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax: lane r < 16 owns row r of this warp.
    if (lane < 16) {
      int const r = lane;
      i64 const qi = q0 + warp * 16 + r;
      float* srow = S + r * kBk;
      float const m_old = sM[warp * 16 + r];
      float mx = m_old;
      for (int j = 0; j < kBk; ++j) {
        i64 const kj = k0 + j;
        bool const visible = kj < lk && (!causal || kj <= qi);
        float const s = visible ? srow[j] * scale : -INFINITY;
        srow[j] = s;
        mx = fmaxf(mx, s);
      }
      float sum = 0.0f;
      for (int j = 0; j < kBk; ++j) {
        float const p = srow[j] == -INFINITY ? 0.0f : __expf(srow[j] - mx);
        st(P + r * kBk + j, p);
        sum += p;
      }
      float const alpha = mx == -INFINITY ? 1.0f : __expf(m_old - mx);
      sL[warp * 16 + r] = sL[warp * 16 + r] * alpha + sum;
      sM[warp * 16 + r] = mx;
      sA[warp * 16 + r] = alpha;
    }
    __syncwarp();
    for (int idx = lane; idx < 16 * DP; idx += 32) O[idx] *= sA[warp * 16 + idx / DP];
    __syncwarp();

    // O_w[16, DP] += P[16, kBk] · V_tile[kBk, DP]
    for (int n = 0; n < DP / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::load_matrix_sync(acc, O + n * 16, DP, wmma::mem_row_major);
      for (int kk = 0; kk < kBk / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fb;
        wmma::load_matrix_sync(fa, P + kk * 16, kBk);
        wmma::load_matrix_sync(fb, sV + kk * 16 * DP + n * 16, DP);
        wmma::mma_sync(acc, fa, fb, acc);
      }
      wmma::store_matrix_sync(O + n * 16, acc, DP, wmma::mem_row_major);
    }
    __syncthreads();  // every warp is done with sK/sV before the next tile overwrites them
  }

  i64 const hd = static_cast<i64>(heads) * d;
  for (int idx = lane; idx < 16 * d; idx += 32) {
    int const r = idx / d, c = idx % d;
    i64 const qi = q0 + warp * 16 + r;
    if (qi >= lq) continue;
    float const l = sL[warp * 16 + r];
    st(o + (b * lq + qi) * hd + static_cast<i64>(h) * d + c, l > 0.0f ? O[r * DP + c] / l : 0.0f);
  }
}

template <class T, int DP>
void launch_flash(void const* q, i64 q_bs, i64 q_rs, void const* k, i64 k_bs, i64 k_rs, void const* v, i64 v_bs,
                  i64 v_rs, void* o, i64 b, i64 lq, i64 lk, int heads, int d, float scale, bool causal,
                  cudaStream_t s) {
  constexpr std::size_t bytes = flash_smem<DP, T>();
  static bool const attr = [] {
    FD_CUDA_CHECK(cudaFuncSetAttribute(flash_k<T, DP>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(bytes)));
    return true;
  }();
  (void)attr;
  dim3 const grid(static_cast<unsigned>((lq + kBq - 1) / kBq), static_cast<unsigned>(heads), static_cast<unsigned>(b));
  flash_k<T, DP><<<grid, kWarps * 32, bytes, s>>>(static_cast<T const*>(q), q_bs, q_rs, static_cast<T const*>(k), k_bs,
                                                  k_rs, static_cast<T const*>(v), v_bs, v_rs, static_cast<T*>(o), lq,
                                                  lk, heads, d, scale, causal);
  FD_CUDA_LAUNCHED("flash_k");
}

template <class T>
bool flash_for(int d, void const* q, i64 q_bs, i64 q_rs, void const* k, i64 k_bs, i64 k_rs, void const* v, i64 v_bs,
               i64 v_rs, void* o, i64 b, i64 lq, i64 lk, int heads, float scale, bool causal, cudaStream_t s) {
#define FD_FLASH_CASE(DP)                                                                                   \
  if (d <= DP) {                                                                                           \
    launch_flash<T, DP>(q, q_bs, q_rs, k, k_bs, k_rs, v, v_bs, v_rs, o, b, lq, lk, heads, d, scale, causal, s); \
    return true;                                                                                           \
  }
  FD_FLASH_CASE(48)
  FD_FLASH_CASE(64)
  FD_FLASH_CASE(80)
  FD_FLASH_CASE(96)
  FD_FLASH_CASE(128)
  FD_FLASH_CASE(160)
#undef FD_FLASH_CASE
  return false;
}

}  // namespace

bool flash_attention(DType dt, void const* q, i64 q_bs, i64 q_rs, void const* k, i64 k_bs, i64 k_rs, void const* v,
                     i64 v_bs, i64 v_rs, void* o, i64 b, i64 lq, i64 lk, int heads, int d, float scale, bool causal,
                     cudaStream_t s) {
  if (d <= 0 || d > 160 || lq == 0 || b == 0) return false;
  if (dt != DType::kF16 && dt != DType::kBF16) return false;
  if (cuda_detail::replaying()) return true;  // a graph replay issues no device work
  if (dt == DType::kF16) return flash_for<__half>(d, q, q_bs, q_rs, k, k_bs, k_rs, v, v_bs, v_rs, o, b, lq, lk, heads, scale, causal, s);
  if (dt == DType::kBF16) {
    return flash_for<__nv_bfloat16>(d, q, q_bs, q_rs, k, k_bs, k_rs, v, v_bs, v_rs, o, b, lq, lk, heads, scale, causal, s);
  }
  return false;
}

}  // namespace fd::backend::cuda_kernels
