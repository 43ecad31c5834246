// Google Benchmark for fd::backend::cpu::detail::sgemm on the UNet's GEMM shapes.
// Args: M, N, K, trans_b, threads. Reports GFLOP/s (2*M*N*K per iteration).

#include <benchmark/benchmark.h>

#include <fd/backend/cpu/detail/sgemm.hpp>

#include <cstddef>
#include <random>
#include <vector>

#if defined(FD_BENCH_WITH_EIGEN)
#include <Eigen/Core>
#endif

#if defined(FD_BENCH_WITH_BLAS)
// The Fortran BLAS entry point every Debian BLAS (OpenBLAS, BLIS, reference) exports; no header needed.
extern "C" void sgemm_(char const* ta, char const* tb, int const* m, int const* n, int const* k, float const* alpha,
                       float const* a, int const* lda, float const* b, int const* ldb, float const* beta, float* c,
                       int const* ldc);
#endif

namespace {

void bm_sgemm(benchmark::State& state) {
  long const M = state.range(0), N = state.range(1), K = state.range(2);
  bool const trans_b = state.range(3) != 0;
  int const threads = int(state.range(4));
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> a(std::size_t(M * K)), b(std::size_t(K * N)), c(std::size_t(M * N));
  for (float& v : a) v = dist(rng);
  for (float& v : b) v = dist(rng);
  long const ldb = trans_b ? K : N;
  for (auto _ : state) {
    fd::backend::cpu::detail::sgemm(false, trans_b, M, N, K, 1.0f, a.data(), K, b.data(), ldb, 0.0f, c.data(), N,
                                    threads);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * double(M) * double(N) * double(K) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void unet_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"M", "N", "K", "tb", "thr"});
  struct shape {
    long M, N, K, trans_b;
  };
  shape const shapes[] = {
      {320, 4096, 2880, 0}, {640, 1024, 5760, 0}, {1280, 256, 11520, 0}, {1280, 64, 11520, 0},
      {4096, 320, 320, 0},  {4096, 2560, 320, 0}, {4096, 320, 1280, 0},  {8192, 320, 320, 0},
      {64, 4096, 40, 1},    {64, 40, 4096, 0},    {77, 320, 768, 1},
  };
  for (int threads : {1, 2})
    for (shape const& s : shapes) b->Args({s.M, s.N, s.K, s.trans_b, threads});
}

// Per-head attention products as the attention op issues them: one thread each, inside a parallel loop.
void attention_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"M", "N", "K", "tb", "thr"});
  for (long d : {40, 80, 160})
    for (long m : {64, 256}) {
      b->Args({m, 4096, d, 1, 1});  // Q K^T
      b->Args({m, d, 4096, 0, 1});  // P V
    }
}

// The same products through the libraries the issue asked us to measure against (same shapes, same
// process): Eigen's GEMM and the system BLAS. Large shapes only; both use their own threading.
[[maybe_unused]] void large_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"M", "N", "K"});
  for (auto const& s : std::vector<std::vector<long>>{{320, 4096, 2880}, {640, 1024, 5760}, {1280, 256, 11520},
                                                      {4096, 320, 320}, {4096, 2560, 320}})
    b->Args({s[0], s[1], s[2]});
}

void fill(std::vector<float>& v) {
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (float& x : v) x = dist(rng);
}

void bm_fd_large(benchmark::State& state) {
  long const M = state.range(0), N = state.range(1), K = state.range(2);
  std::vector<float> a(std::size_t(M * K)), b(std::size_t(K * N)), c(std::size_t(M * N));
  fill(a);
  fill(b);
  for (auto _ : state) {
    fd::backend::cpu::detail::sgemm(false, false, M, N, K, 1.0f, a.data(), K, b.data(), N, 0.0f, c.data(), N, 2);
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2e-9 * double(M) * double(N) * double(K), benchmark::Counter::kIsIterationInvariantRate);
}

#if defined(FD_BENCH_WITH_EIGEN)
void bm_eigen_large(benchmark::State& state) {
  using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  long const M = state.range(0), N = state.range(1), K = state.range(2);
  Mat a = Mat::Random(M, K), b = Mat::Random(K, N), c(M, N);
  Eigen::setNbThreads(2);
  for (auto _ : state) {
    c.noalias() = a * b;
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2e-9 * double(M) * double(N) * double(K), benchmark::Counter::kIsIterationInvariantRate);
}
#endif

#if defined(FD_BENCH_WITH_BLAS)
void bm_blas_large(benchmark::State& state) {
  int const M = int(state.range(0)), N = int(state.range(1)), K = int(state.range(2));
  std::vector<float> a(std::size_t(M) * K), b(std::size_t(K) * N), c(std::size_t(M) * N);
  fill(a);
  fill(b);
  float const one = 1.0f, zero = 0.0f;
  for (auto _ : state) {
    // Row-major C = A B is column-major C^T = B^T A^T.
    sgemm_("N", "N", &N, &M, &K, &one, b.data(), &N, a.data(), &K, &zero, c.data(), &N);
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2e-9 * double(M) * double(N) * double(K), benchmark::Counter::kIsIterationInvariantRate);
}
#endif

}  // namespace

BENCHMARK(bm_fd_large)->Name("compare/fd")->Apply(large_shapes)->UseRealTime()->Unit(benchmark::kMillisecond);
#if defined(FD_BENCH_WITH_EIGEN)
BENCHMARK(bm_eigen_large)->Name("compare/eigen")->Apply(large_shapes)->UseRealTime()->Unit(benchmark::kMillisecond);
#endif
#if defined(FD_BENCH_WITH_BLAS)
BENCHMARK(bm_blas_large)->Name("compare/blas")->Apply(large_shapes)->UseRealTime()->Unit(benchmark::kMillisecond);
#endif

BENCHMARK(bm_sgemm)->Name("sgemm/unet")->Apply(unet_shapes)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(bm_sgemm)->Name("sgemm/attention")->Apply(attention_shapes)->UseRealTime()->Unit(benchmark::kMicrosecond);
