#pragma once
/// @file
/// Single-precision GEMM for row-major matrices: C = alpha * op(A) * op(B) + beta * C, with an optional
/// fused bias epilogue for conv/linear layers.
///
/// Design (AVX-512 path):
///  * Register tile of up to 8 rows x 48 columns (8 x 3 zmm = 24 accumulators). Zen 5's FMA latency is
///    hidden by 16+ independent accumulators, so the tile is kept small to waste little on ragged edges;
///    row and column panels are balanced (e.g. N = 64 becomes 2 x 32 rather than 48 + 16) and the last
///    column vector of a panel is masked, so no shape pays for more than one partial vector per panel.
///  * Loop order per thread: K blocks (KC <= 384), then blocks of up to 1024 rows of A packed once per
///    K block into 8-row micro-panels ([k][8], 12 KB, resident in the 48 KB L1 while in use), then B
///    blocks of KC x NC packed into 48-column panels sized to stay in half of the 1 MB L2, then the
///    8-row panels, then the column panels. The micro-kernel broadcasts A and streams B from L2.
///  * Packing is skipped where it would cost about as much as it saves: A is read in place when each
///    micro-panel would serve at most two column panels (N <= 96 per thread), and a non-transposed B
///    with short rows is read in place when at most 512 rows use it. Transposed operands are packed
///    through in-register 16x16 / 8x16 transposes.
///  * Threads get disjoint rectangles of C (split along M or N, whichever packs less redundantly), each
///    with its own thread_local packing buffers, so there are no barriers and calls with threads == 1
///    from inside an enclosing parallel region are independent.
/// AVX2+FMA and plain C++ paths share the blocking and packing logic with smaller tiles.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace fd::backend::cpu::detail {

namespace sgemm_detail {

#if defined(__AVX512F__)
inline constexpr int vec_len = 16;  // floats per SIMD register
inline constexpr int tile_rows = 8;  // MR
inline constexpr int tile_vecs = 3;  // maximum NR / vec_len
inline constexpr bool can_read_a_in_place = true;
inline constexpr bool can_read_b_in_place = true;
#elif defined(__AVX2__) && defined(__FMA__)
inline constexpr int vec_len = 8;
inline constexpr int tile_rows = 6;  // 6 x 16 uses 12 of the 16 ymm registers for accumulators
inline constexpr int tile_vecs = 2;
inline constexpr bool can_read_a_in_place = false;
inline constexpr bool can_read_b_in_place = false;
#else
inline constexpr int vec_len = 8;
inline constexpr int tile_rows = 4;
inline constexpr int tile_vecs = 2;
inline constexpr bool can_read_a_in_place = false;
inline constexpr bool can_read_b_in_place = false;
#endif

inline constexpr long panel_cols_max = long{vec_len} * tile_vecs;
inline constexpr long kc_max = 384;                // 8 x 384 x 4 B = 12 KB A micro-panel in L1
inline constexpr long l2_block_bytes = 512 * 1024;  // packed B block; half of L2 leaves room for C and A
inline constexpr long max_in_place_panels = 2;      // A reuse count at or below which packing A is skipped
inline constexpr long max_block_panels = 96;        // caps the B block width when K is tiny
inline constexpr long mc_max = 1024;                // rows of A packed per K block (read back from L2/L3)
inline constexpr long max_in_place_b_rows = 512;    // B reuse (rows) at or below which packing B is skipped

enum class bias_kind : int { none, per_row, per_column };

/// What the micro-kernel does with its accumulators: C = alpha*acc + beta*C + bias.
struct tile_epilogue {
  float alpha;
  float beta;  // 0: C is write-only (may hold NaN); 1: accumulate
  bias_kind bias;
  const float* bias_ptr;  // already offset to the tile's first row (per_row) or column (per_column)
};

inline long ceil_div(long a, long b) noexcept { return (a + b - 1) / b; }
inline long round_up(long a, long b) noexcept { return ceil_div(a, b) * b; }

/// Grow-only 64-byte aligned buffer: one per thread and purpose, so steady-state calls never allocate.
class scratch_buffer {
 public:
  scratch_buffer() = default;
  scratch_buffer(const scratch_buffer&) = delete;
  scratch_buffer& operator=(const scratch_buffer&) = delete;
  ~scratch_buffer() { release(); }

  float* get(std::size_t count) {
    if (count > capacity_) {
      release();
      // Round up so slightly different shapes do not trigger a series of small reallocations.
      std::size_t const cap = (count + 4095) & ~std::size_t{4095};
      data_ = static_cast<float*>(::operator new(cap * sizeof(float), std::align_val_t{64}));
      capacity_ = cap;
    }
    return data_;
  }

 private:
  void release() noexcept {
    if (data_ != nullptr) ::operator delete(data_, std::align_val_t{64});
    data_ = nullptr;
    capacity_ = 0;
  }
  float* data_ = nullptr;
  std::size_t capacity_ = 0;
};

struct thread_scratch {
  scratch_buffer a_block;
  scratch_buffer b_block;
};

inline thread_scratch& local_scratch() {
  thread_local thread_scratch scratch;
  return scratch;
}

/// Whole-problem description shared by all threads.
struct problem {
  bool trans_a, trans_b;
  long M, N, K;
  float alpha;
  const float* A;
  long lda;
  const float* B;
  long ldb;
  float beta;
  float* C;
  long ldc;
  bias_kind bias;
  const float* bias_ptr;
};

/// Column panel of a packed B block: columns [col, col + width) of the block, nv vectors wide.
struct col_panel {
  long col;
  long width;
  int nv;
  long offset;  // floats from the start of the packed block
};

// ---------------------------------------------------------------------------------------------------
// Portable packing (used by the AVX2 and plain C++ paths).
// Packed A panel: [k][tile_rows], rows >= m zero. Packed B panel: [k][nv * vec_len], columns >= width zero.
// ---------------------------------------------------------------------------------------------------

inline void pack_a_generic(const problem& p, long i0, long m, long pc, long kc, float* dst) noexcept {
  for (long k = 0; k < kc; ++k) {
    float* d = dst + k * tile_rows;
    for (long i = 0; i < tile_rows; ++i) {
      float v = 0.0f;
      if (i < m) v = p.trans_a ? p.A[(pc + k) * p.lda + i0 + i] : p.A[(i0 + i) * p.lda + pc + k];
      d[i] = v;
    }
  }
}

inline void pack_b_generic(const problem& p, long j0, long width, int nv, long pc, long kc, float* dst) noexcept {
  long const stride = long{nv} * vec_len;
  if (p.trans_b) {
    for (long k = 0; k < kc; ++k)
      for (long j = 0; j < stride; ++j) dst[k * stride + j] = j < width ? p.B[(j0 + j) * p.ldb + pc + k] : 0.0f;
  } else {
    for (long k = 0; k < kc; ++k) {
      const float* src = p.B + (pc + k) * p.ldb + j0;
      float* d = dst + k * stride;
      for (long j = 0; j < width; ++j) d[j] = src[j];
      for (long j = width; j < stride; ++j) d[j] = 0.0f;
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// AVX-512 path
// ---------------------------------------------------------------------------------------------------
#if defined(__AVX512F__)

inline __mmask16 tail_mask(long count) noexcept {
  return count >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << count) - 1u);
}

// Shuffle wrappers: the merge-masked forms with an all-ones mask compile to the same single instruction,
// but avoid GCC 12's bogus -Wmaybe-uninitialized on _mm512_undefined_ps() inside the plain intrinsics.
inline __m512 unpacklo_ps(__m512 a, __m512 b) noexcept { return _mm512_mask_unpacklo_ps(a, 0xFFFF, a, b); }
inline __m512 unpackhi_ps(__m512 a, __m512 b) noexcept { return _mm512_mask_unpackhi_ps(a, 0xFFFF, a, b); }
inline __m512 unpacklo_pd_ps(__m512 a, __m512 b) noexcept {
  __m512d const ad = _mm512_castps_pd(a);
  return _mm512_castpd_ps(_mm512_mask_unpacklo_pd(ad, 0xFF, ad, _mm512_castps_pd(b)));
}
inline __m512 unpackhi_pd_ps(__m512 a, __m512 b) noexcept {
  __m512d const ad = _mm512_castps_pd(a);
  return _mm512_castpd_ps(_mm512_mask_unpackhi_pd(ad, 0xFF, ad, _mm512_castps_pd(b)));
}
template <int Imm>
inline __m512 shuffle_lanes(__m512 a, __m512 b) noexcept {
  return _mm512_mask_shuffle_f32x4(a, 0xFFFF, a, b, Imm);
}

/// 4x4 transpose of 128-bit lanes: out[L] = {x0.lane L, x1.lane L, x2.lane L, x3.lane L}.
inline void transpose_lanes_4x4(__m512 x0, __m512 x1, __m512 x2, __m512 x3, __m512& o0, __m512& o1, __m512& o2,
                                __m512& o3) noexcept {
  __m512 const w0 = shuffle_lanes<0x44>(x0, x1);
  __m512 const w1 = shuffle_lanes<0xEE>(x0, x1);
  __m512 const w2 = shuffle_lanes<0x44>(x2, x3);
  __m512 const w3 = shuffle_lanes<0xEE>(x2, x3);
  o0 = shuffle_lanes<0x88>(w0, w2);
  o1 = shuffle_lanes<0xDD>(w0, w2);
  o2 = shuffle_lanes<0x88>(w1, w3);
  o3 = shuffle_lanes<0xDD>(w1, w3);
}

/// In-register 16x16 transpose: r[i] element j becomes r[j] element i.
inline void transpose_16x16(__m512 (&r)[16]) noexcept {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = unpackhi_ps(r[i], r[i + 1]);
  }
  // u[4g + c] lane L holds rows 4g..4g+3 of column 4L + c.
  __m512 u[16];
  for (int g = 0; g < 4; ++g) {
    u[4 * g + 0] = unpacklo_pd_ps(t[4 * g], t[4 * g + 2]);
    u[4 * g + 1] = unpackhi_pd_ps(t[4 * g], t[4 * g + 2]);
    u[4 * g + 2] = unpacklo_pd_ps(t[4 * g + 1], t[4 * g + 3]);
    u[4 * g + 3] = unpackhi_pd_ps(t[4 * g + 1], t[4 * g + 3]);
  }
  for (int c = 0; c < 4; ++c) transpose_lanes_4x4(u[c], u[4 + c], u[8 + c], u[12 + c], r[c], r[4 + c], r[8 + c], r[12 + c]);
}

/// Packs A rows [i0, i0+m) x k [pc, pc+kc) of a non-transposed A into [k][8]: an 8x16 in-register
/// transpose per 16 k produces 128 contiguous floats, so packing costs a fraction of a cycle per element.
inline void pack_a_rows_avx512(const problem& p, long i0, long m, long pc, long kc, float* dst) noexcept {
  static_assert(tile_rows == 8);
  const float* rows[8];
  for (long i = 0; i < 8; ++i) rows[i] = p.A + (i0 + std::min(i, m - 1)) * p.lda + pc;
  for (long k0 = 0; k0 < kc; k0 += 16) {
    __mmask16 const km = tail_mask(kc - k0);
    __m512 r[8];
    if (m == 8 && km == 0xFFFF) {
      // Eight interleaved row streams defeat the hardware prefetcher, so fetch a few lines ahead.
      for (int i = 0; i < 8; ++i) {
        _mm_prefetch(reinterpret_cast<const char*>(rows[i] + k0 + 64), _MM_HINT_T0);
        r[i] = _mm512_loadu_ps(rows[i] + k0);
      }
    } else {
      for (int i = 0; i < 8; ++i) r[i] = i < m ? _mm512_maskz_loadu_ps(km, rows[i] + k0) : _mm512_setzero_ps();
    }
    __m512 t[8];
    for (int i = 0; i < 8; i += 2) {
      t[i] = unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = unpackhi_ps(r[i], r[i + 1]);
    }
    __m512 const u0 = unpacklo_pd_ps(t[0], t[2]), u1 = unpackhi_pd_ps(t[0], t[2]);
    __m512 const u2 = unpacklo_pd_ps(t[1], t[3]), u3 = unpackhi_pd_ps(t[1], t[3]);
    __m512 const u4 = unpacklo_pd_ps(t[4], t[6]), u5 = unpackhi_pd_ps(t[4], t[6]);
    __m512 const u6 = unpacklo_pd_ps(t[5], t[7]), u7 = unpackhi_pd_ps(t[5], t[7]);
    __m512 o[8];
    transpose_lanes_4x4(u0, u4, u1, u5, o[0], o[2], o[4], o[6]);
    transpose_lanes_4x4(u2, u6, u3, u7, o[1], o[3], o[5], o[7]);
    // The buffer has slack past kc * 8, so a partial last block may store all 8 vectors.
    for (int q = 0; q < 8; ++q) _mm512_store_ps(dst + k0 * 8 + 16 * q, o[q]);
  }
}

inline void pack_a_cols_avx512(const problem& p, long i0, long m, long pc, long kc, float* dst) noexcept {
  __mmask16 const mm = tail_mask(m);
  const float* src = p.A + pc * p.lda + i0;
  if (m == 8) {
    for (long k = 0; k < kc; ++k) _mm256_store_ps(dst + k * 8, _mm256_loadu_ps(src + k * p.lda));
  } else {
    for (long k = 0; k < kc; ++k) _mm512_mask_storeu_ps(dst + k * 8, 0x00FF, _mm512_maskz_loadu_ps(mm, src + k * p.lda));
  }
}

/// Packs one column panel of a transposed B (stored [N, K]): 16 columns x 16 k at a time through an
/// in-register transpose, so the strided gather costs a fraction of a cycle per element.
inline void pack_b_trans_avx512(const problem& p, long j0, long width, int nv, long pc, long kc, float* dst) noexcept {
  long const stride = long{nv} * 16;
  for (int v = 0; v < nv; ++v) {
    long const cols = std::min<long>(16, width - 16 * v);
    const float* src = p.B + (j0 + 16 * v) * p.ldb + pc;
    for (long k0 = 0; k0 < kc; k0 += 16) {
      long const kk = std::min<long>(16, kc - k0);
      __mmask16 const km = tail_mask(kk);
      __m512 r[16];
      for (int j = 0; j < 16; ++j) r[j] = j < cols ? _mm512_maskz_loadu_ps(km, src + j * p.ldb + k0) : _mm512_setzero_ps();
      transpose_16x16(r);
      float* d = dst + k0 * stride + 16 * v;
      for (int t = 0; t < kk; ++t) _mm512_store_ps(d + t * stride, r[t]);
    }
  }
}

/// Micro-kernel: C[0:M, 0:16*NV] (last vector masked by `tail`) op= A[0:M, 0:kc] * B[0:kc, 0:16*NV].
/// RowA: A is read in place from a row-major matrix (element (i, k) at a[i * as + k]);
/// otherwise element (i, k) is at a[k * as + i] (packed panel with as = 8, or transposed A in place).
/// B row k starts at b + k * bs (a packed panel, or a non-transposed B in place; its last vector is
/// loaded under `tail` so an in-place B is never read past its last column).
template <int M, int NV, bool RowA>
inline void micro_kernel_avx512(long kc, const float* __restrict a, long as, const float* __restrict b, long bs,
                                float* c, long ldc, const tile_epilogue& ep, __mmask16 tail) noexcept {
  __m512 acc[M][NV];
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();

  // Start pulling the C tile in now so the epilogue does not stall on it.
  if (ep.beta != 0.0f) {
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16 * NV - 1), _MM_HINT_T0);
    }
  }

#pragma GCC unroll 4
  for (long k = 0; k < kc; ++k) {
    __m512 bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      bv[v] = v == NV - 1 ? _mm512_maskz_loadu_ps(tail, b + 16 * v) : _mm512_loadu_ps(b + 16 * v);
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm_prefetch(reinterpret_cast<const char*>(b + 8 * bs + 16 * v), _MM_HINT_T0);
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) {
      __m512 const av = _mm512_set1_ps(RowA ? a[i * as + k] : a[i]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
    }
    if (!RowA) a += as;
    b += bs;
  }

  if (ep.alpha == 1.0f && ep.bias == bias_kind::none && (ep.beta == 0.0f || ep.beta == 1.0f)) {
    if (ep.beta == 0.0f) {
#pragma GCC unroll 8
      for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) {
          if (v == NV - 1)
            _mm512_mask_storeu_ps(c + i * ldc + 16 * v, tail, acc[i][v]);
          else
            _mm512_storeu_ps(c + i * ldc + 16 * v, acc[i][v]);
        }
    } else {
#pragma GCC unroll 8
      for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) {
          float* cp = c + i * ldc + 16 * v;
          if (v == NV - 1)
            _mm512_mask_storeu_ps(cp, tail, _mm512_add_ps(acc[i][v], _mm512_maskz_loadu_ps(tail, cp)));
          else
            _mm512_storeu_ps(cp, _mm512_add_ps(acc[i][v], _mm512_loadu_ps(cp)));
        }
    }
    return;
  }

  __m512 const alpha = _mm512_set1_ps(ep.alpha);
  __m512 const beta = _mm512_set1_ps(ep.beta);
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      __mmask16 const mk = v == NV - 1 ? tail : __mmask16(0xFFFF);
      float* cp = c + i * ldc + 16 * v;
      __m512 x = _mm512_mul_ps(acc[i][v], alpha);
      if (ep.beta != 0.0f) x = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(mk, cp), x);
      if (ep.bias == bias_kind::per_column)
        x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mk, ep.bias_ptr + 16 * v));
      else if (ep.bias == bias_kind::per_row)
        x = _mm512_add_ps(x, _mm512_set1_ps(ep.bias_ptr[i]));
      _mm512_mask_storeu_ps(cp, mk, x);
    }
}

using kernel_fn = void (*)(long, const float*, long, const float*, long, float*, long, const tile_epilogue&,
                           __mmask16);

template <bool RowA, std::size_t... I>
constexpr std::array<kernel_fn, sizeof...(I)> make_kernel_table(std::index_sequence<I...>) {
  return {&micro_kernel_avx512<int(I / tile_vecs) + 1, int(I % tile_vecs) + 1, RowA>...};
}

inline constexpr auto kernels_packed = make_kernel_table<false>(std::make_index_sequence<tile_rows * tile_vecs>{});
inline constexpr auto kernels_rows = make_kernel_table<true>(std::make_index_sequence<tile_rows * tile_vecs>{});

inline void run_kernel(long m, long kc, const float* a, long as, bool row_a, const float* b, long bs,
                       const col_panel& cp, float* c, long ldc, const tile_epilogue& ep) noexcept {
  std::size_t const idx = std::size_t((m - 1) * tile_vecs + (cp.nv - 1));
  __mmask16 const tail = tail_mask(cp.width - 16L * (cp.nv - 1));
  (row_a ? kernels_rows : kernels_packed)[idx](kc, a, as, b, bs, c, ldc, ep, tail);
}

inline void pack_a(const problem& p, long i0, long m, long pc, long kc, float* dst) noexcept {
  if (p.trans_a)
    pack_a_cols_avx512(p, i0, m, pc, kc, dst);
  else
    pack_a_rows_avx512(p, i0, m, pc, kc, dst);
}

/// Packs every column panel of a B block. Non-transposed B is walked row by row across all panels so
/// each k reads one contiguous stretch (DRAM pages and prefetchers favour that over panel-by-panel).
inline void pack_b_block(const problem& p, long j0, const col_panel* panels, long npan, long pc, long kc,
                         float* dst) noexcept {
  if (p.trans_b) {
    for (long q = 0; q < npan; ++q)
      pack_b_trans_avx512(p, j0 + panels[q].col, panels[q].width, panels[q].nv, pc, kc, dst + panels[q].offset * kc);
    return;
  }
  const float* src = p.B + pc * p.ldb + j0;
  for (long k = 0; k < kc; ++k) {
    const float* row = src + k * p.ldb;
    if (k + 8 < kc) {
      const float* ahead = row + 8 * p.ldb;
      long const last = panels[npan - 1].col + panels[npan - 1].width;
      for (long j = 0; j < last; j += 16) _mm_prefetch(reinterpret_cast<const char*>(ahead + j), _MM_HINT_T0);
    }
    for (long q = 0; q < npan; ++q) {
      col_panel const& cp = panels[q];
      long const stride = long{cp.nv} * 16;
      float* d = dst + cp.offset * kc + k * stride;
      const float* s = row + cp.col;
      for (int v = 0; v < cp.nv; ++v) {
        long const left = cp.width - 16 * v;
        __m512 const x = left >= 16 ? _mm512_loadu_ps(s + 16 * v) : _mm512_maskz_loadu_ps(tail_mask(left), s + 16 * v);
        _mm512_store_ps(d + 16 * v, x);
      }
    }
  }
}

#else  // !__AVX512F__

/// Applies the epilogue to a full tile held in `acc` ([tile_rows][nv * vec_len]) for the valid m x n part.
inline void store_tile_generic(const float* acc, long acc_stride, long m, long n, float* c, long ldc,
                               const tile_epilogue& ep) noexcept {
  for (long i = 0; i < m; ++i) {
    float* cr = c + i * ldc;
    const float* ar = acc + i * acc_stride;
    for (long j = 0; j < n; ++j) {
      float x = ep.alpha * ar[j];
      if (ep.beta != 0.0f) x += ep.beta * cr[j];
      if (ep.bias == bias_kind::per_column)
        x += ep.bias_ptr[j];
      else if (ep.bias == bias_kind::per_row)
        x += ep.bias_ptr[i];
      cr[j] = x;
    }
  }
}

#if defined(__AVX2__) && defined(__FMA__)

template <int NV>
inline void micro_kernel_avx2(long kc, const float* __restrict a, const float* __restrict b, long m, long n, float* c,
                       long ldc, const tile_epilogue& ep) noexcept {
  __m256 acc[tile_rows][NV];
  for (int i = 0; i < tile_rows; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_setzero_ps();
  for (long k = 0; k < kc; ++k) {
    __m256 bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = _mm256_load_ps(b + 8 * v);
    for (int i = 0; i < tile_rows; ++i) {
      __m256 const av = _mm256_broadcast_ss(a + i);
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_fmadd_ps(av, bv[v], acc[i][v]);
    }
    a += tile_rows;
    b += 8 * NV;
  }
  if (m == tile_rows && n == 8 * NV && ep.bias == bias_kind::none) {
    __m256 const alpha = _mm256_set1_ps(ep.alpha);
    __m256 const beta = _mm256_set1_ps(ep.beta);
    for (int i = 0; i < tile_rows; ++i)
      for (int v = 0; v < NV; ++v) {
        float* cp = c + i * ldc + 8 * v;
        __m256 x = _mm256_mul_ps(acc[i][v], alpha);
        if (ep.beta != 0.0f) x = _mm256_fmadd_ps(beta, _mm256_loadu_ps(cp), x);
        _mm256_storeu_ps(cp, x);
      }
    return;
  }
  alignas(32) float tile[tile_rows * 8 * NV];
  for (int i = 0; i < tile_rows; ++i)
    for (int v = 0; v < NV; ++v) _mm256_store_ps(tile + i * 8 * NV + 8 * v, acc[i][v]);
  store_tile_generic(tile, 8 * NV, m, n, c, ldc, ep);
}

inline void run_kernel(long m, long kc, const float* a, long, bool, const float* b, long, const col_panel& cp,
                       float* c, long ldc, const tile_epilogue& ep) noexcept {
  if (cp.nv == 1)
    micro_kernel_avx2<1>(kc, a, b, m, cp.width, c, ldc, ep);
  else
    micro_kernel_avx2<2>(kc, a, b, m, cp.width, c, ldc, ep);
}

#else  // portable C++

template <int NV>
inline void micro_kernel_portable(long kc, const float* __restrict a, const float* __restrict b, long m, long n, float* c,
                           long ldc, const tile_epilogue& ep) noexcept {
  constexpr int nr = vec_len * NV;
  float acc[tile_rows][nr] = {};
  for (long k = 0; k < kc; ++k) {
    for (int i = 0; i < tile_rows; ++i) {
      float const av = a[i];
      for (int j = 0; j < nr; ++j) acc[i][j] += av * b[j];
    }
    a += tile_rows;
    b += nr;
  }
  store_tile_generic(&acc[0][0], nr, m, n, c, ldc, ep);
}

inline void run_kernel(long m, long kc, const float* a, long, bool, const float* b, long, const col_panel& cp,
                       float* c, long ldc, const tile_epilogue& ep) noexcept {
  if (cp.nv == 1)
    micro_kernel_portable<1>(kc, a, b, m, cp.width, c, ldc, ep);
  else
    micro_kernel_portable<2>(kc, a, b, m, cp.width, c, ldc, ep);
}

#endif

inline void pack_a(const problem& p, long i0, long m, long pc, long kc, float* dst) noexcept {
  pack_a_generic(p, i0, m, pc, kc, dst);
}

inline void pack_b_block(const problem& p, long j0, const col_panel* panels, long npan, long pc, long kc,
                         float* dst) noexcept {
  for (long q = 0; q < npan; ++q)
    pack_b_generic(p, j0 + panels[q].col, panels[q].width, panels[q].nv, pc, kc, dst + panels[q].offset * kc);
}

#endif  // __AVX512F__

// ---------------------------------------------------------------------------------------------------
// Blocking driver (shared by all paths)
// ---------------------------------------------------------------------------------------------------

/// Splits `total` into `parts` near-equal chunks that are multiples of `quantum` where possible; returns
/// the start of chunk `index`.
inline long balanced_start(long total, long parts, long index, long quantum) noexcept {
  long const units = ceil_div(total, quantum);
  long const base = units / parts, extra = units % parts;
  long const start = (index * base + std::min(index, extra)) * quantum;
  return std::min(start, total);
}

/// Splits the block's columns [0, nc) into panels of at most tile_vecs vectors, balanced so that e.g.
/// 5 vectors become 3 + 2 rather than 3 + 1 + 1 (fewer, fuller register tiles). Returns the panel count.
inline long make_col_panels(long nc, col_panel* panels) noexcept {
  long const nvec = ceil_div(nc, vec_len);
  long const npan = ceil_div(nvec, tile_vecs);
  long offset = 0;
  for (long q = 0; q < npan; ++q) {
    long const v0 = q * (nvec / npan) + std::min(q, nvec % npan);
    long const v1 = (q + 1) * (nvec / npan) + std::min(q + 1, nvec % npan);
    col_panel& cp = panels[q];
    cp.col = v0 * vec_len;
    cp.width = std::min(v1 * vec_len, nc) - cp.col;
    cp.nv = int(v1 - v0);
    cp.offset = offset;
    offset += cp.nv * long{vec_len};  // per k; the panel starts at offset * kc
  }
  return npan;
}

/// Computes C[m0:m1, n0:n1] on the calling thread.
/// Loop order: K blocks -> row blocks (A packed once per K block) -> column blocks (B block packed to
/// stay in L2) -> 8-row panels (A panel in L1) -> column panels.
inline void gemm_block(const problem& p, long m0, long m1, long n0, long n1) {
  long const rows = m1 - m0, cols = n1 - n0;
  if (rows <= 0 || cols <= 0) return;
  thread_scratch& scratch = local_scratch();

  // Near-equal K blocks (multiples of 16 for the transposing packers) so no block is a tiny remainder.
  long const k_blocks = ceil_div(p.K, kc_max);
  long const kc_nominal = std::min(p.K, round_up(ceil_div(p.K, k_blocks), 16));
  // B block width chosen to keep kc x nc packed floats within the L2 budget, in whole panels.
  long const nc_fit = (l2_block_bytes / long{sizeof(float)} / kc_nominal) / panel_cols_max * panel_cols_max;
  long const nc_budget = std::clamp(nc_fit, panel_cols_max, max_block_panels * panel_cols_max);
  long const n_blocks = ceil_div(cols, nc_budget);
  long const nc_nominal = round_up(ceil_div(cols, n_blocks), vec_len);

  long const row_panels = ceil_div(rows, tile_rows);
  long const row_block_panels = std::min(row_panels, mc_max / tile_rows);
  long const max_col_panels = ceil_div(ceil_div(nc_nominal, vec_len), tile_vecs);
  // A micro-panel reused by at most two column panels: packing it would cost about as much as using it.
  bool const in_place = can_read_a_in_place && n_blocks == 1 && max_col_panels <= max_in_place_panels;

  // Few rows reuse each B element, so a plain row-major B is cheaper to read in place than to copy;
  // only for short rows, as a long ldb would put every k on its own page.
  bool const in_place_b = can_read_b_in_place && !p.trans_b && rows <= max_in_place_b_rows && p.ldb <= 1024;

  float* const b_buf = in_place_b ? nullptr : scratch.b_block.get(std::size_t(kc_nominal * max_col_panels * panel_cols_max + 256));
  // Panels start on 64-byte boundaries; the transposing packer writes whole 16-k groups.
  long const a_panel_stride = round_up(kc_nominal, 16) * tile_rows;
  float* const a_buf = in_place ? nullptr : scratch.a_block.get(std::size_t(a_panel_stride * row_block_panels + 256));

  col_panel panels[max_block_panels];
  for (long pc = 0; pc < p.K; pc += kc_nominal) {
    long const kc = std::min(kc_nominal, p.K - pc);
    tile_epilogue ep{};
    ep.alpha = p.alpha;
    ep.beta = pc == 0 ? p.beta : 1.0f;
    ep.bias = pc + kc >= p.K ? p.bias : bias_kind::none;

    for (long r0 = 0; r0 < row_panels; r0 += row_block_panels) {
      long const r1 = std::min(row_panels, r0 + row_block_panels);
      if (!in_place) {
        for (long r = r0; r < r1; ++r) {
          long const i0 = m0 + balanced_start(rows, row_panels, r, 1);
          long const m = m0 + balanced_start(rows, row_panels, r + 1, 1) - i0;
          pack_a(p, i0, m, pc, kc, a_buf + (r - r0) * a_panel_stride);
        }
      }
      for (long jc = 0; jc < cols; jc += nc_nominal) {
        long const nc = std::min(nc_nominal, cols - jc);
        long const npan = make_col_panels(nc, panels);
        if (!in_place_b) pack_b_block(p, n0 + jc, panels, npan, pc, kc, b_buf);

        for (long r = r0; r < r1; ++r) {
          long const i0 = m0 + balanced_start(rows, row_panels, r, 1);
          long const m = m0 + balanced_start(rows, row_panels, r + 1, 1) - i0;
          const float* a = a_buf + (r - r0) * a_panel_stride;
          long as = tile_rows;
          bool row_a = false;
          if (in_place) {
            as = p.lda;
            row_a = !p.trans_a;
            a = p.trans_a ? p.A + pc * p.lda + i0 : p.A + i0 * p.lda + pc;
          }
          for (long q = 0; q < npan; ++q) {
            long const j0 = n0 + jc + panels[q].col;
            if (ep.bias != bias_kind::none) ep.bias_ptr = p.bias_ptr + (ep.bias == bias_kind::per_row ? i0 : j0);
            if (in_place_b)
              run_kernel(m, kc, a, as, row_a, p.B + pc * p.ldb + j0, p.ldb, panels[q], p.C + i0 * p.ldc + j0, p.ldc, ep);
            else
              run_kernel(m, kc, a, as, row_a, b_buf + panels[q].offset * kc, long{panels[q].nv} * vec_len, panels[q],
                         p.C + i0 * p.ldc + j0, p.ldc, ep);
          }
        }
      }
    }
  }
}

/// C = beta * C + bias without a product (K == 0 or alpha == 0).
inline void scale_c(const problem& p) noexcept {
  for (long i = 0; i < p.M; ++i) {
    float* cr = p.C + i * p.ldc;
    for (long j = 0; j < p.N; ++j) {
      float x = p.beta == 0.0f ? 0.0f : p.beta * cr[j];
      if (p.bias == bias_kind::per_column)
        x += p.bias_ptr[j];
      else if (p.bias == bias_kind::per_row)
        x += p.bias_ptr[i];
      cr[j] = x;
    }
  }
}

/// Thread grid (tm x tn) for `threads` threads: the split whose per-thread work plus redundant packing is
/// smallest. Packing cost is ~1/8 of the FMA cost per element in the model (k factored out).
inline std::pair<int, int> choose_grid(long M, long N, int threads) noexcept {
  std::pair<int, int> best{1, 1};
  double best_cost = -1.0;
  for (int tm = 1; tm <= threads; ++tm) {
    if (threads % tm != 0) continue;
    int const tn = threads / tm;
    long const mt = ceil_div(M, tm), nt = ceil_div(N, tn);
    if ((tm > 1 && mt < 1) || (tn > 1 && nt < vec_len)) continue;
    double const mp = double(round_up(mt, tile_rows)), np = double(round_up(nt, vec_len));
    double const a_passes = double(ceil_div(nt, 4096));
    double const cost = mp * np / 32.0 + 0.25 * (mp * a_passes + np);
    if (best_cost < 0.0 || cost < best_cost) {
      best_cost = cost;
      best = {tm, tn};
    }
  }
  return best;
}

inline void run(const problem& p, int threads) {
  if (p.M <= 0 || p.N <= 0) return;
  if (p.K <= 0 || p.alpha == 0.0f) {
    scale_c(p);
    return;
  }
#if defined(_OPENMP)
  if (threads < 1) threads = omp_get_max_threads();
  // Below ~1 MFLOP the fork/join costs more than the second thread saves.
  double const flops = 2.0 * double(p.M) * double(p.N) * double(p.K);
  if (flops < 1.0e6) threads = 1;
  if (threads > 1) {
    std::pair<int, int> const grid = choose_grid(p.M, p.N, threads);
    int const tm = grid.first, tn = grid.second;
    int const tiles = tm * tn;
    if (tiles > 1) {
      long const m_quant = p.M >= long{tm} * tile_rows ? tile_rows : 1;
#pragma omp parallel num_threads(tiles)
      {
        // A team smaller than requested (e.g. nested parallelism disabled) still covers every tile.
        int const team = omp_get_num_threads();
        for (int t = omp_get_thread_num(); t < tiles; t += team) {
          int const ti = t / tn, tj = t % tn;
          gemm_block(p, balanced_start(p.M, tm, ti, m_quant), balanced_start(p.M, tm, ti + 1, m_quant),
                     balanced_start(p.N, tn, tj, vec_len), balanced_start(p.N, tn, tj + 1, vec_len));
        }
      }
      return;
    }
  }
#else
  (void)threads;
#endif
  gemm_block(p, 0, p.M, 0, p.N);
}

}  // namespace sgemm_detail

/// Row-major C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, op(X) = X or X^T per flag.
/// lda/ldb/ldc are the row strides of the matrices as stored (A is [M,K] unless trans_a, then [K,M]).
/// beta == 0 ignores C's previous contents. threads: OpenMP threads to use (1 = calling thread only,
/// safe inside an enclosing parallel region; < 1 = omp_get_max_threads()).
inline void sgemm(bool trans_a, bool trans_b, long M, long N, long K, float alpha, const float* A, long lda,
                  const float* B, long ldb, float beta, float* C, long ldc, int threads) {
  sgemm_detail::problem const p{trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                                sgemm_detail::bias_kind::none, nullptr};
  sgemm_detail::run(p, threads);
}

/// sgemm with alpha = 1 followed by C[i,j] += bias_per_column ? bias[j] : bias[i] (bias may be nullptr),
/// fused into the store of the last K block so C is not traversed again.
inline void sgemm_bias(bool trans_a, bool trans_b, long M, long N, long K, const float* A, long lda, const float* B,
                       long ldb, float beta, float* C, long ldc, const float* bias, bool bias_per_column,
                       int threads) {
  using sgemm_detail::bias_kind;
  bias_kind const kind = bias == nullptr ? bias_kind::none : bias_per_column ? bias_kind::per_column : bias_kind::per_row;
  sgemm_detail::problem const p{trans_a, trans_b, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc, kind, bias};
  sgemm_detail::run(p, threads);
}

}  // namespace fd::backend::cpu::detail
