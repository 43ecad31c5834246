// Google Benchmark for fd::backend::cpu::detail::sgemm on the UNet's GEMM shapes.
// Args: M, N, K, trans_b, threads. Reports GFLOP/s (2*M*N*K per iteration).

#include <benchmark/benchmark.h>

#include <fd/backend/cpu/detail/sgemm.hpp>

#include <cstddef>
#include <random>
#include <vector>

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

}  // namespace

BENCHMARK(bm_sgemm)->Name("sgemm/unet")->Apply(unet_shapes)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(bm_sgemm)->Name("sgemm/attention")->Apply(attention_shapes)->UseRealTime()->Unit(benchmark::kMicrosecond);
