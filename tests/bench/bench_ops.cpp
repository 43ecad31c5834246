// Google Benchmark of the CPU ops on the hot path of an SD 1.5 UNet forward (batch 2, 64x64 latent):
// the shapes below are the ones the real model runs. GFLOP/s counts 2 per multiply-add.

#include <benchmark/benchmark.h>

#include <vector>

#include "fd/backend/cpu/ops.hpp"
#include "fd/nn/init.hpp"

namespace {

using B = fd::backend::Cpu;
using T = fd::Tensor<B>;

T random_tensor(B const& be, fd::Shape s, std::uint64_t stream) {
  T t = T::empty(be, s);
  float* d = t.data<float>();
  for (std::int64_t i = 0; i < t.numel(); ++i) d[i] = fd::nn::detail::approx_normal(stream, static_cast<std::uint64_t>(i));
  return t;
}

void set_flops(benchmark::State& state, double flops) {
  state.counters["GFLOP/s"] = benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

// args: cin, cout, hw, kernel, stride, threads
void BM_Conv2d(benchmark::State& state) {
  B be{{.threads = static_cast<int>(state.range(5))}};
  std::int64_t const cin = state.range(0), cout = state.range(1), hw = state.range(2), k = state.range(3);
  int const stride = static_cast<int>(state.range(4));
  T x = random_tensor(be, {2, cin, hw, hw}, 1);
  T w = random_tensor(be, {cout, cin, k, k}, 2);
  T b = random_tensor(be, {cout}, 3);
  fd::backend::Conv2dParams p{stride, static_cast<int>(k / 2)};
  for (auto _ : state) benchmark::DoNotOptimize(fd::backend::conv2d(be, x, w, b, p));
  std::int64_t const ho = (hw + 2 * (k / 2) - k) / stride + 1;
  set_flops(state, 2.0 * 2 * cout * cin * k * k * ho * ho);
}
BENCHMARK(BM_Conv2d)
    ->ArgNames({"cin", "cout", "hw", "k", "s", "threads"})
    ->Args({320, 320, 64, 3, 1, 2})
    ->Args({960, 320, 64, 3, 1, 2})
    ->Args({640, 640, 32, 3, 1, 2})
    ->Args({1280, 1280, 16, 3, 1, 2})
    ->Args({2560, 1280, 8, 3, 1, 2})
    ->Args({320, 320, 64, 3, 2, 2})
    ->Args({960, 320, 64, 1, 1, 2})
    ->Args({320, 320, 64, 3, 1, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// args: tokens, channels, context tokens (0 = self-attention), heads, threads
void BM_Attention(benchmark::State& state) {
  B be{{.threads = static_cast<int>(state.range(4))}};
  std::int64_t const l = state.range(0), c = state.range(1), lc = state.range(2);
  int const heads = static_cast<int>(state.range(3));
  std::int64_t const lk = lc == 0 ? l : lc;
  T q = random_tensor(be, {2, l, c}, 4), k = random_tensor(be, {2, lk, c}, 5), v = random_tensor(be, {2, lk, c}, 6);
  float const scale = 1.0f / std::sqrt(static_cast<float>(c / heads));
  for (auto _ : state) benchmark::DoNotOptimize(fd::backend::attention(be, q, k, v, heads, scale));
  set_flops(state, 4.0 * 2 * l * lk * c);
}
BENCHMARK(BM_Attention)
    ->ArgNames({"L", "C", "Lctx", "heads", "threads"})
    ->Args({4096, 320, 0, 8, 2})
    ->Args({1024, 640, 0, 8, 2})
    ->Args({256, 1280, 0, 8, 2})
    ->Args({4096, 320, 77, 8, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// args: tokens, in, out, threads
void BM_Linear(benchmark::State& state) {
  B be{{.threads = static_cast<int>(state.range(3))}};
  std::int64_t const l = state.range(0), in = state.range(1), out = state.range(2);
  T x = random_tensor(be, {2, l, in}, 7), w = random_tensor(be, {out, in}, 8), b = random_tensor(be, {out}, 9);
  for (auto _ : state) benchmark::DoNotOptimize(fd::backend::linear(be, x, w, b));
  set_flops(state, 2.0 * 2 * l * in * out);
}
BENCHMARK(BM_Linear)
    ->ArgNames({"L", "in", "out", "threads"})
    ->Args({4096, 320, 960, 2})
    ->Args({4096, 320, 2560, 2})
    ->Args({4096, 1280, 320, 2})
    ->Args({256, 1280, 10240, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// GroupNorm + SiLU and GEGLU: memory-bound; report bytes moved.
void BM_GroupNormSilu(benchmark::State& state) {
  B be{{.threads = 2}};
  std::int64_t const c = state.range(0), hw = state.range(1);
  T x = random_tensor(be, {2, c, hw, hw}, 10), g = random_tensor(be, {c}, 11), b = random_tensor(be, {c}, 12);
  for (auto _ : state) benchmark::DoNotOptimize(fd::backend::group_norm(be, x, 32, g, b, 1e-5f, fd::backend::Activation::kSilu));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * x.numel() * 8);
}
BENCHMARK(BM_GroupNormSilu)->Args({320, 64})->Args({960, 64})->Args({1280, 16})->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Geglu(benchmark::State& state) {
  B be{{.threads = 2}};
  T x = random_tensor(be, {2, state.range(0), state.range(1)}, 13);
  for (auto _ : state) benchmark::DoNotOptimize(fd::backend::geglu(be, x));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * x.numel() * 6);
}
BENCHMARK(BM_Geglu)->Args({4096, 2560})->Args({256, 10240})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
