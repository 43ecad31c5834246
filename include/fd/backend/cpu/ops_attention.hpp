#pragma once
/// @file
/// Multi-head scaled dot-product attention on the CPU, blocked over queries so that no full Lq x Lk
/// score matrix is ever materialised: each task holds the scores of one block of queries (about 1 MB)
/// for one head, which stays in L2 between the two GEMMs.

#include <algorithm>
#include <limits>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#ifndef FD_CPU_OPS_INTERNAL
#define FD_CPU_OPS_INTERNAL
#endif
#include "fd/backend/cpu/detail/check.hpp"
#include "fd/backend/op_params.hpp"
#include "fd/backend/cpu/detail/sgemm.hpp"
#include "fd/backend/cpu/detail/vec_math.hpp"

namespace fd::backend {

namespace cpu::detail {

// q/k/v are [B, L, H*d] with contiguous rows; row stride may exceed H*d (views into a fused QKV).
inline void check_attention_operand(char const* what, Tensor<Cpu> const& t, std::int64_t b, std::int64_t hd) {
  require_f32("attention", what, t);
  require_rank("attention", what, t, 3);
  if (t.dim(0) != b || t.dim(2) != hd || t.strides()[2] != 1 || t.strides()[1] < hd) {
    fail(Errc::kShapeMismatch, std::string("attention: ") + what + " " + t.shape().str() +
                                   " does not match batch " + std::to_string(b) + " and width " + std::to_string(hd));
  }
}

}  // namespace cpu::detail

/// o[B, Lq, H*d] = concat_h softmax(scale * q_h k_h^T + M) v_h, head h owning channels [h*d, (h+1)*d);
/// M masks keys after the query's own position with kCausal.
/// @pre q [B, Lq, H*d], k and v [B, Lk, H*d]; rows contiguous (row strides may be larger).
inline Tensor<Cpu> attention(Cpu const& be, Tensor<Cpu> const& q, Tensor<Cpu> const& k, Tensor<Cpu> const& v, int heads,
                             float scale, AttentionMask mask = AttentionMask::kNone) {
  using namespace cpu::detail;
  if (q.rank() != 3) fail(Errc::kShapeMismatch, "attention: query must be [B, L, C], got " + q.shape().str());
  std::int64_t const b = q.dim(0), lq = q.dim(1), hd = q.dim(2);
  if (heads <= 0 || hd % heads != 0) {
    fail(Errc::kShapeMismatch, "attention: width " + std::to_string(hd) + " not divisible into " +
                                   std::to_string(heads) + " heads");
  }
  check_attention_operand("query", q, b, hd);
  check_attention_operand("key", k, b, hd);
  check_attention_operand("value", v, b, hd);
  std::int64_t const lk = k.dim(1);
  if (v.dim(1) != lk) fail(Errc::kShapeMismatch, "attention: key " + k.shape().str() + " vs value " + v.shape().str());
  std::int64_t const d = hd / heads;
  Tensor<Cpu> o = Tensor<Cpu>::empty(be, {b, lq, hd});
  if (lq == 0 || b == 0) return o;
  if (lk == 0) fail(Errc::kShapeMismatch, "attention: empty key sequence");

  // About 256K scores (1 MB) per task: fits L2 and still gives the GEMMs enough rows.
  std::int64_t const bq = std::clamp<std::int64_t>((std::int64_t{1} << 18) / lk, 16, 512);
  std::int64_t const qblocks = (lq + bq - 1) / bq;
  std::int64_t const tasks = b * heads * qblocks;
  float const* qd = q.data<float>();
  float const* kd = k.data<float>();
  float const* vd = v.data<float>();
  float* od = o.data<float>();
  std::int64_t const qs0 = q.strides()[0], qs1 = q.strides()[1];
  std::int64_t const ks0 = k.strides()[0], ks1 = k.strides()[1];
  std::int64_t const vs0 = v.strides()[0], vs1 = v.strides()[1];
  int const nt = static_cast<int>(std::min<std::int64_t>(be.threads(), tasks));
  be.add_flops(static_cast<std::uint64_t>(4 * b * lq * lk * hd));
  // Scratch from the backend's pool: a fresh 1 MB std::vector per call would be a new mapping, paid
  // for in page faults on every call.
  std::int64_t const per_thread = bq * lk + bq;
  Tensor<Cpu> scratch = Tensor<Cpu>::empty(be, {nt, per_thread});
#pragma omp parallel num_threads(nt) if (b * lq * lk * hd > be.parallel_min())
  {
#if defined(_OPENMP)
    float* const mine = scratch.data<float>() + omp_get_thread_num() * per_thread;
#else
    float* const mine = scratch.data<float>();
#endif
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t task = 0; task < tasks; ++task) {
      std::int64_t const qb = task % qblocks;
      std::int64_t const h = (task / qblocks) % heads;
      std::int64_t const bi = task / (qblocks * heads);
      std::int64_t const q0 = qb * bq, rows = std::min(bq, lq - q0);
      float const* qp = qd + bi * qs0 + q0 * qs1 + h * d;
      float const* kp = kd + bi * ks0 + h * d;
      float const* vp = vd + bi * vs0 + h * d;
      float* s = mine;
      // Causal: keys past the block's last query are never seen, so neither GEMM touches them.
      std::int64_t const nk = mask == AttentionMask::kCausal ? std::min(lk, q0 + rows) : lk;
      sgemm(false, true, rows, nk, d, scale, qp, qs1, kp, ks1, 0.0f, s, lk, 1);
      if (mask == AttentionMask::kCausal) {
        for (std::int64_t r = 0; r < rows; ++r) {
          for (std::int64_t j = q0 + r + 1; j < nk; ++j) s[r * lk + j] = -std::numeric_limits<float>::infinity();
        }
      }
      // Unnormalised softmax: the 1/sum is applied to the [rows, d] output instead of the
      // [rows, Lk] probabilities, one pass over the scores fewer.
      float* inv_sum = mine + bq * lk;
      for (std::int64_t r = 0; r < rows; ++r) {
        float* row = s + r * lk;
        float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
        for (std::int64_t j = 0; j < nk; ++j) m = row[j] > m ? row[j] : m;  // std::max does not vectorise here
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (std::int64_t j = 0; j < nk; ++j) {
          float const e = exp_f32(row[j] - m);
          row[j] = e;
          sum += e;
        }
        inv_sum[r] = 1.0f / sum;
      }
      float* op = od + bi * lq * hd + q0 * hd + h * d;
      sgemm(false, false, rows, d, nk, 1.0f, s, lk, vp, vs1, 0.0f, op, hd, 1);
      for (std::int64_t r = 0; r < rows; ++r) {
        float const f = inv_sum[r];
#pragma omp simd
        for (std::int64_t j = 0; j < d; ++j) op[r * hd + j] *= f;
      }
    }
  }
  return o;
}

}  // namespace fd::backend
