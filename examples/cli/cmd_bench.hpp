#pragma once
// `fasterdiffusion bench`: times a UNet forward at real shapes with random weights (no checkpoint
// needed) and reports seconds per forward and achieved GFLOP/s, plus the encoder/decoder split.

#include <CLI/CLI.hpp>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
#include <omp.h>

#include <fd/models/controlnet/controlled_unet.hpp>
#include <fd/nn/init.hpp>
#include <fd/pipelines/sampler.hpp>
#include <fd/schedulers/all.hpp>

#include "cli_common.hpp"

namespace fdcli {

struct BenchArgs {
  std::string config = "sd15";
  int batch = 2, height = 64, width = 64, context_len = 77;
  int threads = 0, warmup = 1, repeat = 3;
  int sampler_steps = 0;  ///< > 0: also time DDIM loops of this many steps (baseline, fd-seq, fd)
  std::string loops = "none,fd-seq,fd";
  int max_decoder_rows = 0;
  bool controlnet = false;  ///< add a ControlNet of the same trunk (SD 1.5 canny layout) to every loop
};

/// The machine's fp32 FMA peak on `threads` threads (GFLOP/s): independent FMA chains on the widest
/// vector unit this program was compiled for. Measured in the same process as the forward, since a
/// shared machine's speed drifts between runs.
inline double measure_fma_peak_once(int threads) {
  constexpr long kIters = 5'000'000;
  double flops_per_iter = 0;
  double const t0 = now_ms();
  float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
  {
#if defined(__AVX512F__)
    __m512 acc[12];
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(0.001f * static_cast<float>(i));
    __m512 const b = _mm512_set1_ps(0.9999f), c = _mm512_set1_ps(1e-4f);
    for (long it = 0; it < kIters; ++it) {
      for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], b, c);
    }
    alignas(64) float tmp[16];
    for (int i = 1; i < 12; ++i) acc[0] = _mm512_add_ps(acc[0], acc[i]);
    _mm512_store_ps(tmp, acc[0]);
    for (float v : tmp) sink += v;
#pragma omp single
    flops_per_iter = 12.0 * 16 * 2;
#elif defined(__AVX2__) && defined(__FMA__)
    __m256 acc[12];
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(0.001f * static_cast<float>(i));
    __m256 const b = _mm256_set1_ps(0.9999f), c = _mm256_set1_ps(1e-4f);
    for (long it = 0; it < kIters; ++it) {
      for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], b, c);
    }
    alignas(32) float tmp[8];
    for (int i = 1; i < 12; ++i) acc[0] = _mm256_add_ps(acc[0], acc[i]);
    _mm256_store_ps(tmp, acc[0]);
    for (float v : tmp) sink += v;
#pragma omp single
    flops_per_iter = 12.0 * 8 * 2;
#else
    float acc[12];
    for (int i = 0; i < 12; ++i) acc[i] = 0.001f * static_cast<float>(i);
    for (long it = 0; it < kIters; ++it) {
      for (int i = 0; i < 12; ++i) acc[i] = acc[i] * 0.9999f + 1e-4f;
    }
    for (float v : acc) sink += v;
#pragma omp single
    flops_per_iter = 12.0 * 2;
#endif
  }
  double const seconds = (now_ms() - t0) / 1e3;
  if (sink == 12345.0f) std::puts("");  // keeps the loop observable
  return flops_per_iter * static_cast<double>(kIters) * threads / seconds / 1e9;
}

/// The best of several short trials: a peak is a maximum, and a trial that lost its core to another
/// process for a moment says nothing about the machine.
inline double measure_fma_peak(int threads) {
  double best = 0;
  for (int i = 0; i < 9; ++i) best = std::max(best, measure_fma_peak_once(threads));
  return best;
}

inline fd::models::UNetConfig bench_config(std::string const& name) {
  if (name == "sd15") return fd::models::UNetConfig::sd15();
  if (name == "sd21") return fd::models::UNetConfig::sd21();
  return fd::models::UNetConfig::from_file(name);
}

inline void add_bench_command(CLI::App& app, BenchArgs& a, std::function<void()>& run) {
  auto* cmd = app.add_subcommand("bench", "Time one UNet forward at real shapes with random weights");
  cmd->add_option("--config", a.config, "sd15, sd21, or a unet config.json")->capture_default_str();
  cmd->add_option("--batch", a.batch, "batch (2 = one image with classifier-free guidance)")->capture_default_str();
  cmd->add_option("--height", a.height, "latent height")->capture_default_str();
  cmd->add_option("--width", a.width, "latent width")->capture_default_str();
  cmd->add_option("--context-len", a.context_len, "text tokens")->capture_default_str();
  cmd->add_option("--threads", a.threads, "CPU threads (0 = all)");
  cmd->add_option("--warmup", a.warmup, "untimed forwards first")->capture_default_str();
  cmd->add_option("--repeat", a.repeat, "timed forwards")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--sampler-steps", a.sampler_steps,
                  "also time DDIM sampling loops of this many steps with guidance 7.5 (keys 50ls, injection 0.003)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--loops", a.loops, "which loops to time, comma-separated: none, fd-seq, fd")->capture_default_str();
  cmd->add_option("--max-decoder-rows", a.max_decoder_rows, "parallel decoder sub-batch cap in rows (0 = whole groups)");
  cmd->add_flag("--controlnet", a.controlnet,
                "loops with a ControlNet of the UNet's trunk (random weights, conditioning embedding 16,32,96,256; a "
                "control image of 8x the latent size): ControlNet at every step vs at key steps only");
  cmd->callback([&run, &a] {
    run = [&a] {
      Backend be{{.threads = a.threads}};
      fd::models::UNetConfig cfg = bench_config(a.config);
      double const t_build = now_ms();
      fd::models::UNet2DCondition<Backend> unet(be, cfg);
      fd::nn::init_random(be, unet, 1);
      std::size_t params = 0;
      unet.visit([&](std::string const&, Tensor& t) { params += static_cast<std::size_t>(t.numel()); });
      std::printf("model: %s, %.1f M parameters (random), built in %.1f s; threads %d\n", a.config.c_str(),
                  static_cast<double>(params) / 1e6, (now_ms() - t_build) / 1e3, be.threads());

      Tensor x = Tensor::empty(be, {a.batch, cfg.in_channels, a.height, a.width});
      Tensor ctx = Tensor::empty(be, {a.batch, a.context_len, cfg.cross_attention_dim[0]});
      {
        std::vector<float> v(static_cast<std::size_t>(x.numel()));
        for (std::size_t i = 0; i < v.size(); ++i) v[i] = fd::nn::detail::approx_normal(7, i);
        Tensor::from_host(be, x.shape(), v).copy_to(be, x);
        std::vector<float> c(static_cast<std::size_t>(ctx.numel()));
        for (std::size_t i = 0; i < c.size(); ++i) c[i] = fd::nn::detail::approx_normal(8, i);
        Tensor::from_host(be, ctx.shape(), c).copy_to(be, ctx);
      }
      float const t = 801.0f;
      for (int i = 0; i < a.warmup; ++i) unet.forward(x, {&t, 1}, ctx);
      std::vector<double> full, enc, dec;
      std::uint64_t flops = 0;
      for (int i = 0; i < a.repeat; ++i) {
        be.reset_flops();
        double const t0 = now_ms();
        auto f = unet.encode(x, {&t, 1}, ctx);
        double const t1 = now_ms();
        Tensor y = unet.decode(f, {&t, 1}, ctx);
        double const t2 = now_ms();
        flops = be.flops();
        enc.push_back(t1 - t0);
        dec.push_back(t2 - t1);
        full.push_back(t2 - t0);
      }
      Timing const tf = summarize(full), te = summarize(enc), td = summarize(dec);
      double const gflop = static_cast<double>(flops) / 1e9;
      std::printf("unet forward [%d, %d, %d, %d], context [%d, %d, %d]: median %.3f s, min %.3f s over %d runs\n",
                  a.batch, cfg.in_channels, a.height, a.width, a.batch, a.context_len, cfg.cross_attention_dim[0],
                  tf.median_ms / 1e3, tf.min_ms / 1e3, a.repeat);
      std::printf("  encoder median %.3f s, decoder median %.3f s (decoder share %.1f %%)\n", te.median_ms / 1e3,
                  td.median_ms / 1e3, 100.0 * td.median_ms / tf.median_ms);
      std::optional<fd::models::ControlNetModel<Backend>> cn;
      Tensor cond;
      if (a.controlnet) {
        fd::models::ControlNetConfig cc;
        cc.trunk = cfg;
        cn.emplace(be, cc);
        fd::nn::init_random(be, *cn, 2);
        std::vector<float> img(static_cast<std::size_t>(3 * 8 * a.height * 8 * a.width));
        for (std::size_t i = 0; i < img.size(); ++i) img[i] = 0.5f + 0.5f * fd::nn::detail::approx_normal(9, i);
        cond = Tensor::from_host(be, {1, 3, 8 * a.height, 8 * a.width}, img);
        // One ControlNet forward at the forward's shapes, for the per-call cost.
        std::vector<double> ms;
        for (int i = 0; i < a.repeat; ++i) {
          double const t0 = now_ms();
          auto r = cn->forward(x, {&t, 1}, ctx, fd::backend::tile_halves(be, cond, 1, static_cast<int>(a.batch)));
          ms.push_back(now_ms() - t0);
        }
        std::printf("  controlnet forward median %.3f s (%.0f %% of the UNet forward)\n", summarize(ms).median_ms / 1e3,
                    100.0 * summarize(ms).median_ms / tf.median_ms);
      }
      if (a.sampler_steps > 0) {
        std::fflush(stdout);
        // CFG batch: x is [B, ...] latents, the context [2B, L, D] (the forward above used x as the batch).
        std::int64_t const b = std::max<std::int64_t>(1, a.batch / 2);
        Tensor z = x.slice(0, 0, b).contiguous(be);
        Tensor c2 = ctx.slice(0, 0, 2 * b).contiguous(be);
        fd::SamplerOptions o{.guidance = 7.5f, .max_decoder_rows = a.max_decoder_rows, .keep_trajectory = false};
        double base_s = 0;
        std::vector<std::string> wanted;
        for (std::size_t p = 0; p <= a.loops.size();) {
          std::size_t const q = std::min(a.loops.find(',', p), a.loops.size());
          wanted.push_back(a.loops.substr(p, q - p));
          p = q + 1;
        }
        for (std::string_view mode : {"none", "fd-seq", "fd"}) {
          if (std::find(wanted.begin(), wanted.end(), mode) == wanted.end()) continue;
          fd::Scheduler<fd::sched::Ddim> ddim(fd::SchedulerConfig::sd15(fd::SchedulerKind::kDdim));
          fd::SamplerStats st;
          auto loop = [&](auto const& model) {
            if (mode == "none") {
              st = fd::Sampler<fd::keys::All, fd::prop::None, fd::inject::None>::run(be, model, ddim, a.sampler_steps, z, c2, o)
                       .stats;
            } else if (mode == "fd-seq") {
              st = fd::Sampler<fd::keys::Paper50, fd::prop::EncoderPropagation<fd::prop::Sequential>, fd::inject::Prior>::run(
                       be, model, ddim, a.sampler_steps, z, c2, o)
                       .stats;
            } else {
              st = fd::Sampler<fd::keys::Paper50, fd::prop::EncoderPropagation<fd::prop::Parallel>, fd::inject::Prior>::run(
                       be, model, ddim, a.sampler_steps, z, c2, o)
                       .stats;
            }
          };
          if (cn) {
            loop(fd::models::ControlledUNet<Backend>(unet, {{.net = &*cn, .image = cond}}));
          } else {
            loop(unet);
          }
          if (mode == "none") base_s = st.seconds;
          std::printf("sampler DDIM-%d %-6s: %.2f s, encoder runs %d, controlnet runs %d, decoder calls %d, decoded steps %d%s\n",
                      a.sampler_steps, std::string(mode).c_str(), st.seconds, st.encoder_runs, st.controlnet_runs,
                      st.decoder_calls, st.decoded_steps,
                      base_s > 0 && mode != "none" ? (", speed-up " + std::to_string(base_s / st.seconds) + "x").c_str() : "");
          std::fflush(stdout);
        }
      }
      double const peak = measure_fma_peak(be.threads());
      std::printf("  %.1f GFLOP per forward (matrix products), %.1f GFLOP/s at the median\n", gflop,
                  gflop / (tf.median_ms / 1e3));
      std::printf("  fp32 FMA peak on %d threads (measured now): %.1f GFLOP/s; the median forward reaches %.1f %%\n",
                  be.threads(), peak, 100.0 * gflop / (tf.median_ms / 1e3) / peak);
    };
  });
}

}  // namespace fdcli
