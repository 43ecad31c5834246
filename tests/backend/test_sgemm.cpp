// Tests for fd::backend::cpu::detail::sgemm / sgemm_bias against a double-precision reference.

#include <catch2/catch.hpp>

#include <fd/backend/cpu/detail/sgemm.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

using fd::backend::cpu::detail::sgemm;
using fd::backend::cpu::detail::sgemm_bias;

struct gemm_case {
  bool trans_a = false, trans_b = false;
  long M = 0, N = 0, K = 0;
  long lda_pad = 0, ldb_pad = 0, ldc_pad = 0;  // extra elements per stored row
  float alpha = 1.0f, beta = 0.0f;
  int bias = 0;  // 0 none, 1 per row, 2 per column
  int threads = 1;

  std::string describe() const {
    std::ostringstream os;
    os << "ta=" << trans_a << " tb=" << trans_b << " M=" << M << " N=" << N << " K=" << K << " pads=" << lda_pad
       << "/" << ldb_pad << "/" << ldc_pad << " alpha=" << alpha << " beta=" << beta << " bias=" << bias
       << " threads=" << threads;
    return os.str();
  }
};

struct gemm_data {
  std::vector<float> a, b, c, bias;
  long lda = 0, ldb = 0, ldc = 0;
};

gemm_data make_data(const gemm_case& t, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  gemm_data d;
  long const a_rows = t.trans_a ? t.K : t.M, a_cols = t.trans_a ? t.M : t.K;
  long const b_rows = t.trans_b ? t.N : t.K, b_cols = t.trans_b ? t.K : t.N;
  d.lda = a_cols + t.lda_pad;
  d.ldb = b_cols + t.ldb_pad;
  d.ldc = t.N + t.ldc_pad;
  // Padding holds NaN so reading past a row's logical end shows up in the result.
  float const nan = std::numeric_limits<float>::quiet_NaN();
  d.a.assign(std::size_t(std::max<long>(a_rows * d.lda, 1)), nan);
  d.b.assign(std::size_t(std::max<long>(b_rows * d.ldb, 1)), nan);
  d.c.assign(std::size_t(std::max<long>(t.M * d.ldc, 1)), nan);
  for (long r = 0; r < a_rows; ++r)
    for (long q = 0; q < a_cols; ++q) d.a[std::size_t(r * d.lda + q)] = dist(rng);
  for (long r = 0; r < b_rows; ++r)
    for (long q = 0; q < b_cols; ++q) d.b[std::size_t(r * d.ldb + q)] = dist(rng);
  if (t.beta != 0.0f)
    for (long i = 0; i < t.M; ++i)
      for (long j = 0; j < t.N; ++j) d.c[std::size_t(i * d.ldc + j)] = dist(rng);
  long const bias_len = t.bias == 1 ? t.M : t.bias == 2 ? t.N : 0;
  for (long i = 0; i < bias_len; ++i) d.bias.push_back(dist(rng));
  return d;
}

/// Runs the case and compares every element against a double reference with an fp32 summation error
/// bound; also checks that ldc padding was not written.
void check_case(const gemm_case& t, std::mt19937& rng) {
  INFO(t.describe());
  gemm_data d = make_data(t, rng);
  std::vector<float> const c_old = d.c;
  if (t.bias == 0 && t.alpha != 1.0f) {
    sgemm(t.trans_a, t.trans_b, t.M, t.N, t.K, t.alpha, d.a.data(), d.lda, d.b.data(), d.ldb, t.beta, d.c.data(), d.ldc,
          t.threads);
  } else if (t.bias == 0) {
    sgemm(t.trans_a, t.trans_b, t.M, t.N, t.K, 1.0f, d.a.data(), d.lda, d.b.data(), d.ldb, t.beta, d.c.data(), d.ldc,
          t.threads);
  } else {
    sgemm_bias(t.trans_a, t.trans_b, t.M, t.N, t.K, d.a.data(), d.lda, d.b.data(), d.ldb, t.beta, d.c.data(), d.ldc,
               d.bias.data(), t.bias == 2, t.threads);
  }
  float const alpha = t.bias == 0 ? t.alpha : 1.0f;
  long bad = 0;
  for (long i = 0; i < t.M; ++i) {
    for (long j = 0; j < t.N; ++j) {
      double sum = 0.0, abs_sum = 0.0;
      for (long k = 0; k < t.K; ++k) {
        double const av = t.trans_a ? d.a[std::size_t(k * d.lda + i)] : d.a[std::size_t(i * d.lda + k)];
        double const bv = t.trans_b ? d.b[std::size_t(j * d.ldb + k)] : d.b[std::size_t(k * d.ldb + j)];
        sum += av * bv;
        abs_sum += std::fabs(av * bv);
      }
      double ref = double(alpha) * sum;
      double mag = std::fabs(double(alpha)) * abs_sum;
      if (t.beta != 0.0f) {
        double const cb = double(t.beta) * c_old[std::size_t(i * d.ldc + j)];
        ref += cb;
        mag += std::fabs(cb);
      }
      if (t.bias != 0) {
        double const bv = d.bias[std::size_t(t.bias == 1 ? i : j)];
        ref += bv;
        mag += std::fabs(bv);
      }
      double const got = d.c[std::size_t(i * d.ldc + j)];
      double const tol = double(t.K + 4) * 1.2e-7 * mag + 1e-30;
      if (!(std::fabs(got - ref) <= tol)) {
        if (bad < 5) UNSCOPED_INFO("C[" << i << "," << j << "] = " << got << ", expected " << ref << " (tol " << tol << ")");
        ++bad;
      }
    }
    for (long j = t.N; j < d.ldc; ++j)
      if (!std::isnan(d.c[std::size_t(i * d.ldc + j)])) ++bad;  // padding must stay untouched
  }
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("sgemm matches a double reference on small and ragged shapes", "[sgemm]") {
  std::mt19937 rng(12345);
  std::vector<long> const sizes{0, 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 47, 48, 49, 63, 65, 97};
  std::uniform_int_distribution<std::size_t> pick(0, sizes.size() - 1);
  std::uniform_int_distribution<int> coin(0, 1);
  std::uniform_int_distribution<long> pad(0, 5);
  for (int iter = 0; iter < 400; ++iter) {
    gemm_case t;
    t.trans_a = (iter & 1) != 0;
    t.trans_b = (iter & 2) != 0;
    t.M = sizes[pick(rng)];
    t.N = sizes[pick(rng)];
    t.K = sizes[pick(rng)];
    if (coin(rng)) {
      t.lda_pad = pad(rng);
      t.ldb_pad = pad(rng);
      t.ldc_pad = pad(rng);
    }
    int const mode = iter % 5;
    t.alpha = mode == 1 ? -0.75f : 1.0f;
    t.beta = mode == 2 ? 1.0f : mode == 3 ? 0.5f : 0.0f;
    t.threads = 1 + ((iter >> 2) & 1);
    check_case(t, rng);
  }
}

TEST_CASE("sgemm handles all transposes on blocked shapes", "[sgemm]") {
  std::mt19937 rng(777);
  // K > 384 exercises K blocking (beta handling between blocks), N > ~340 exercises N blocking,
  // N <= 96 exercises reading A in place, M <= 512 with short B rows reading B in place, M > 1024
  // several packed row blocks.
  struct shape {
    long M, N, K;
  };
  std::vector<shape> const shapes{{64, 40, 1000}, {77, 320, 768}, {130, 700, 129}, {33, 96, 800},
                                  {64, 4096 / 8, 40}, {200, 64, 1100}, {19, 1000, 5}, {300, 17, 300},
                                  {40, 900, 700},   {1100, 150, 20}, {600, 1100, 30}};
  for (shape const& s : shapes)
    for (int tr = 0; tr < 4; ++tr)
      for (int threads : {1, 2}) {
        gemm_case t;
        t.trans_a = (tr & 1) != 0;
        t.trans_b = (tr & 2) != 0;
        t.M = s.M;
        t.N = s.N;
        t.K = s.K;
        t.lda_pad = 3;
        t.ldb_pad = 1;
        t.ldc_pad = 2;
        t.beta = tr == 3 ? 0.25f : 0.0f;
        t.alpha = tr == 1 ? 2.0f : 1.0f;
        t.threads = threads;
        check_case(t, rng);
      }
}

TEST_CASE("sgemm_bias fuses per-row and per-column bias", "[sgemm]") {
  std::mt19937 rng(99);
  for (int bias = 0; bias <= 2; ++bias)
    for (float beta : {0.0f, 1.0f, -0.5f})
      for (long K : {0L, 1L, 37L, 900L})
        for (int threads : {1, 2}) {
          gemm_case t;
          t.trans_a = K == 37;
          t.trans_b = K == 900;
          t.M = 45;
          t.N = 83;
          t.K = K;
          t.ldc_pad = 4;
          t.beta = beta;
          t.bias = bias;
          t.threads = threads;
          check_case(t, rng);
        }
}

TEST_CASE("sgemm with beta == 0 ignores NaN in C and K == 0 scales C", "[sgemm]") {
  long const M = 9, N = 21, K = 13;
  std::vector<float> a(std::size_t(M * K), 1.0f), b(std::size_t(K * N), 2.0f);
  std::vector<float> c(std::size_t(M * N), std::numeric_limits<float>::quiet_NaN());
  sgemm(false, false, M, N, K, 1.0f, a.data(), K, b.data(), N, 0.0f, c.data(), N, 1);
  for (float v : c) REQUIRE(v == 26.0f);
  sgemm(false, false, M, N, 0, 1.0f, a.data(), K, b.data(), N, 0.5f, c.data(), N, 2);
  for (float v : c) REQUIRE(v == 13.0f);
  std::fill(c.begin(), c.end(), std::numeric_limits<float>::quiet_NaN());
  sgemm(false, false, M, N, 0, 1.0f, a.data(), K, b.data(), N, 0.0f, c.data(), N, 1);
  for (float v : c) REQUIRE(v == 0.0f);
  // alpha == 0 must not read A or B (BLAS convention): NaN inputs do not reach C.
  std::vector<float> nan_a(a.size(), std::numeric_limits<float>::quiet_NaN());
  std::fill(c.begin(), c.end(), 4.0f);
  sgemm(false, false, M, N, K, 0.0f, nan_a.data(), K, b.data(), N, 0.5f, c.data(), N, 1);
  for (float v : c) REQUIRE(v == 2.0f);
}

TEST_CASE("sgemm with threads == 1 is safe inside an enclosing parallel region", "[sgemm]") {
  long const M = 64, N = 200, K = 40, heads = 8;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> a(std::size_t(heads * M * K)), b(std::size_t(heads * N * K));
  for (float& v : a) v = dist(rng);
  for (float& v : b) v = dist(rng);
  std::vector<float> c(std::size_t(heads * M * N)), c_ref(std::size_t(heads * M * N));
  for (long h = 0; h < heads; ++h)
    sgemm(false, true, M, N, K, 1.0f, a.data() + h * M * K, K, b.data() + h * N * K, K, 0.0f, c_ref.data() + h * M * N,
          N, 1);
#pragma omp parallel for num_threads(2)
  for (long h = 0; h < heads; ++h)
    sgemm(false, true, M, N, K, 1.0f, a.data() + h * M * K, K, b.data() + h * N * K, K, 0.0f, c.data() + h * M * N, N,
          1);
  // Same blocking on every thread, so results are bitwise identical.
  CHECK(c == c_ref);
}
