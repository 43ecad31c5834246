// fd_cuda_bench: the SD 1.5 UNet on the CUDA backend at real shapes with random weights — ms per
// forward, and the 50-step DDIM loop with classifier-free guidance, baseline vs FasterDiffusion
// (parallel decoding, keys 50ls, prior noise injection), in one process. Prints a table last.
//   fd_cuda_bench [--dtype f16|bf16|f32] [--batch 1] [--size 64] [--steps 50] [--repeat 20] [--loops 3]
//                 [--tf32] [--max-decoder-rows N] [--no-graphs] [--unfused-attention]

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fd/backend/cuda/ops.hpp"
#include "fd/models/unet/unet.hpp"
#include "fd/nn/init.hpp"
#include "fd/pipelines/sampler.hpp"
#include "fd/schedulers/all.hpp"

using G = fd::backend::Cuda;
using T = fd::Tensor<G>;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

T random_tensor(G const& g, fd::Shape s, std::uint64_t seed) {
  std::vector<float> v(static_cast<std::size_t>(s.numel()));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = fd::nn::detail::approx_normal(seed, i);
  return T::from_host(g, s, v);
}

}  // namespace

int main(int argc, char** argv) {
  std::string dtype = "f16";
  int batch = 1, size = 64, steps = 50, repeat = 20, loops = 3, max_rows = 0;
  bool tf32 = false, graphs = true, fused = true;
  for (int i = 1; i < argc; ++i) {
    std::string const a = argv[i];
    auto next = [&]() -> char const* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "fd_cuda_bench: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--dtype") dtype = next();
    else if (a == "--batch") batch = std::atoi(next());
    else if (a == "--size") size = std::atoi(next());
    else if (a == "--steps") steps = std::atoi(next());
    else if (a == "--repeat") repeat = std::atoi(next());
    else if (a == "--loops") loops = std::atoi(next());
    else if (a == "--max-decoder-rows") max_rows = std::atoi(next());
    else if (a == "--tf32") tf32 = true;
    else if (a == "--no-graphs") graphs = false;
    else if (a == "--unfused-attention") fused = false;
    else {
      std::fprintf(stderr, "fd_cuda_bench: unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  if (!G::available()) {
    std::printf("fd_cuda_bench: no CUDA device present\n");
    return 77;
  }
  fd::DType dt{};
  std::string upper = dtype;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (!fd::parse_dtype(upper, dt)) {
    std::fprintf(stderr, "fd_cuda_bench: unknown dtype %s\n", dtype.c_str());
    return 2;
  }
  try {
    G g{{.dtype = dt, .allow_tf32 = tf32, .graphs = graphs, .fused_attention = fused}};
    auto const cfg = fd::models::UNetConfig::sd15();
    double const t_build = now_ms();
    fd::models::UNet2DCondition<G> unet(g, cfg);
    fd::nn::init_random(g, unet, 1);
    g.synchronize();
    std::printf("device %s, dtype %s, graphs %s, attention %s; SD 1.5 UNet with random weights built in %.1f s\n",
                g.device_name().c_str(), dtype.c_str(), graphs ? "on" : "off", fused ? "fused" : "2 GEMMs + softmax",
                (now_ms() - t_build) / 1e3);
    std::int64_t const cfg_rows = 2 * batch;
    T const x = random_tensor(g, {cfg_rows, 4, size, size}, 7);
    T const ctx = fd::backend::cast(g, random_tensor(g, {cfg_rows, 77, 768}, 8), dt);
    float const t = 801.0f;
    for (int i = 0; i < 3; ++i) unet.forward(x, {&t, 1}, ctx);
    g.synchronize();
    std::vector<double> fwd, enc;
    for (int i = 0; i < repeat; ++i) {
      double const t0 = now_ms();
      auto f = unet.encode(x, {&t, 1}, ctx);
      g.synchronize();
      double const t1 = now_ms();
      T y = unet.decode(f, {&t, 1}, ctx);
      g.synchronize();
      fwd.push_back(now_ms() - t0);
      enc.push_back(t1 - t0);
    }
    double const fwd_ms = median(fwd), enc_ms = median(enc);
    std::printf("unet forward [%lld, 4, %d, %d] + context [%lld, 77, 768]: median %.2f ms (encoder %.2f ms) over %d\n",
                static_cast<long long>(cfg_rows), size, size, static_cast<long long>(cfg_rows), fwd_ms, enc_ms, repeat);

    if (loops <= 0) {
      std::printf("\n| case (%s, %s) | value |\n|---|---|\n", g.device_name().c_str(), dtype.c_str());
      std::printf("| UNet forward, batch %lld, %dx%d, graphs %s, %s attention | %.2f ms |\n",
                  static_cast<long long>(cfg_rows), size, size, graphs ? "on" : "off", fused ? "fused" : "unfused",
                  fwd_ms);
      return 0;
    }
    // Whole 50-step loops (latents [B, 4, s, s], CFG context [2B, 77, 768]); median of `loops` runs each,
    // baseline and FasterDiffusion interleaved so drift affects both alike.
    T const z = random_tensor(g, {batch, 4, size, size}, 9);
    fd::SamplerOptions opt{.guidance = 7.5f, .max_decoder_rows = max_rows, .keep_trajectory = false};
    using Baseline = fd::Sampler<fd::keys::All, fd::prop::None, fd::inject::None>;
    using Faster = fd::Sampler<fd::keys::Paper50, fd::prop::EncoderPropagation<fd::prop::Parallel>, fd::inject::Prior>;
    std::vector<double> base_s, fast_s;
    fd::SamplerStats fast_stats;
    for (int r = 0; r < loops + 2; ++r) {  // two untimed rounds: eager warm-up, then graph capture
      fd::Scheduler<fd::sched::Ddim> s1(fd::SchedulerConfig::sd15(fd::SchedulerKind::kDdim));
      double const t0 = now_ms();
      Baseline::run(g, unet, s1, steps, z, ctx, opt);
      g.synchronize();
      double const t1 = now_ms();
      fd::Scheduler<fd::sched::Ddim> s2(fd::SchedulerConfig::sd15(fd::SchedulerKind::kDdim));
      auto res = Faster::run(g, unet, s2, steps, z, ctx, opt);
      g.synchronize();
      double const t2 = now_ms();
      if (r < 2) continue;
      base_s.push_back((t1 - t0) / 1e3);
      fast_s.push_back((t2 - t1) / 1e3);
      fast_stats = res.stats;
    }
    double const b = median(base_s), f = median(fast_s);
    auto const mem = g.memory();
    std::printf("DDIM-%d with CFG: baseline %.3f s (%.1f it/s), FasterDiffusion %.3f s (%.1f it/s): %.2fx; "
                "encoder runs %d, decoder calls %d, splits %d; peak arena %.2f GiB\n",
                steps, b, steps / b, f, steps / f, b / f, fast_stats.encoder_runs, fast_stats.decoder_calls,
                fast_stats.decoder_splits, static_cast<double>(mem.peak) / (1 << 30));
    std::printf("\n| case (%s, %s) | value |\n|---|---|\n", g.device_name().c_str(), dtype.c_str());
    std::printf("| UNet forward, batch %lld, %dx%d | %.2f ms |\n", static_cast<long long>(cfg_rows), size, size, fwd_ms);
    std::printf("| DDIM-%d baseline | %.3f s = %.1f it/s |\n", steps, b, steps / b);
    std::printf("| DDIM-%d FasterDiffusion (parallel) | %.3f s = %.1f it/s |\n", steps, f, steps / f);
    std::printf("| speed-up | %.2fx |\n", b / f);
    return 0;
  } catch (fd::error const& e) {
    std::fprintf(stderr, "fd_cuda_bench: %s\n", e.what());
    return 1;
  }
}
