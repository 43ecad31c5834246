// The sampler against the golden FasterDiffusion runs (fd_tiny_sd_ddim50, fd_tiny_sd_pndm50: baseline and
// FasterDiffusion loops on unet_tiny_sd, per step within 1e-4 of each step's max) and the method's
// self-checks of spec §9.

#include <catch2/catch.hpp>

#include <cstdio>

#include "common/compare.hpp"
#include "fd/backend/cpu/ops.hpp"
#include "fd/io/safetensors.hpp"
#include "fd/models/unet/unet.hpp"
#include "fd/pipelines/sampler.hpp"
#include "fd/schedulers/all.hpp"

using B = fd::backend::Cpu;
using T = fd::Tensor<B>;
using UNet = fd::models::UNet2DCondition<B>;

namespace {

using Baseline = fd::Sampler<fd::keys::All, fd::prop::None, fd::inject::None>;
using FasterPar = fd::Sampler<fd::keys::Paper50, fd::prop::EncoderPropagation<fd::prop::Parallel>, fd::inject::Prior>;
using FasterSeq = fd::Sampler<fd::keys::Paper50, fd::prop::EncoderPropagation<fd::prop::Sequential>, fd::inject::Prior>;
using ParNoInject = fd::Sampler<fd::keys::Paper50, fd::prop::EncoderPropagation<fd::prop::Parallel>, fd::inject::None>;
using SeqNoInject = fd::Sampler<fd::keys::Paper50, fd::prop::EncoderPropagation<fd::prop::Sequential>, fd::inject::None>;
using AllKeysPar = fd::Sampler<fd::keys::All, fd::prop::EncoderPropagation<fd::prop::Parallel>, fd::inject::None>;

struct Env {
  B be{{.threads = 2}};
  UNet unet = UNet::load(be, fdtest::fixtures_dir() + "/unet_tiny_sd");
};
Env& env() {
  static Env e;
  return e;
}

fd::SchedulerConfig config_of(std::string const& fixture) {
  std::ifstream in(fdtest::fixtures_dir() + "/fd_tiny_sd/" + fixture + ".json");
  nlohmann::json const j = nlohmann::json::parse(in);
  return fd::SchedulerConfig::from_json(j.at("scheduler"), fixture + ".json scheduler");
}

// Worst per-step max|a - b| / max|ref_i| over a trajectory.
double worst_step_error(B const& be, std::vector<T> const& got, T const& ref) {
  REQUIRE(static_cast<std::int64_t>(got.size()) == ref.dim(0));
  double worst = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    auto const si = static_cast<std::int64_t>(i);
    worst = std::max(worst, fdtest::rel_to_max(be, got[i], ref.select(0, si).contiguous(be)));
  }
  return worst;
}

template <class Sampler, class Sched>
void check_run(std::string const& fixture, std::string const& prefix) {
  auto& e = env();
  auto io = fd::io::SafeTensorsFile::open(fdtest::fixtures_dir() + "/fd_tiny_sd/" + fixture + ".safetensors");
  Sched sched(config_of(fixture));
  auto res = Sampler::run(e.be, e.unet, sched, 50, io.load(e.be, "init_latents"), io.load(e.be, "encoder_hidden_states"),
                          fd::SamplerOptions{.guidance = 7.5f});
  auto const ts = io.load(e.be, "timesteps").to_vector_f32(e.be);
  REQUIRE(res.timesteps.size() == ts.size());
  for (std::size_t i = 0; i < ts.size(); ++i) CHECK(res.timesteps[i] == static_cast<int>(ts[i]));
  double const lat = worst_step_error(e.be, res.latents, io.load(e.be, prefix + ".latents"));
  double const eps = worst_step_error(e.be, res.noise_preds, io.load(e.be, prefix + ".noise_pred"));
  double const fin = fdtest::rel_to_max(e.be, res.final, io.load(e.be, prefix + ".final"));
  std::printf("  %s %-8s worst per-step rel error: latents %.2e, noise_pred %.2e; final %.2e\n", fixture.c_str(),
              prefix.c_str(), lat, eps, fin);
  CHECK(lat <= 1e-4);
  CHECK(eps <= 1e-4);
  CHECK(fin <= 1e-4);
}

}  // namespace

TEST_CASE("sampler: DDIM-50 baseline and FasterDiffusion match fd_tiny_sd_ddim50", "[pipelines][sampler][fixture]") {
  check_run<Baseline, fd::Scheduler<fd::sched::Ddim>>("fd_tiny_sd_ddim50", "baseline");
  check_run<FasterPar, fd::Scheduler<fd::sched::Ddim>>("fd_tiny_sd_ddim50", "fd");
}

TEST_CASE("sampler: PNDM-50 (51 calls) baseline and FasterDiffusion match fd_tiny_sd_pndm50",
          "[pipelines][sampler][fixture]") {
  check_run<Baseline, fd::Scheduler<fd::sched::Pndm>>("fd_tiny_sd_pndm50", "baseline");
  check_run<FasterPar, fd::Scheduler<fd::sched::Pndm>>("fd_tiny_sd_pndm50", "fd");
}

TEST_CASE("sampler: FasterDiffusion self-checks (spec §9)", "[pipelines][sampler]") {
  auto& e = env();
  auto io = fd::io::SafeTensorsFile::open(fdtest::fixtures_dir() + "/fd_tiny_sd/fd_tiny_sd_ddim50.safetensors");
  T const x = io.load(e.be, "init_latents"), ctx = io.load(e.be, "encoder_hidden_states");
  using Ddim = fd::Scheduler<fd::sched::Ddim>;
  auto run = [&](auto sampler_tag, fd::SamplerOptions o = {}) {
    using S = decltype(sampler_tag);
    Ddim sched(config_of("fd_tiny_sd_ddim50"));
    return S::run(e.be, e.unet, sched, 50, x, ctx, o);
  };
  auto base = run(Baseline{});

  // 1. All steps key: identical to the baseline.
  auto all = run(AllKeysPar{});
  CHECK(fdtest::rel_to_max(e.be, all.final, base.final) <= 1e-6);
  CHECK(all.stats.encoder_runs == 50);

  // 2. Parallel == sequential without injection (only summation order differs).
  auto par = run(ParNoInject{});
  auto seq = run(SeqNoInject{});
  double const ps = worst_step_error(e.be, par.latents, [&] {
    T stacked = T::empty(e.be, {50, 1, 4, 16, 16});
    for (std::int64_t i = 0; i < 50; ++i) {
      T dst = stacked.select(0, i);
      seq.latents[static_cast<std::size_t>(i)].reshape({1, 4, 16, 16}).copy_to(e.be, dst);
    }
    return stacked;
  }());
  std::printf("  parallel vs sequential (no injection): worst per-step rel %.2e\n", ps);
  CHECK(ps <= 1e-4);

  // 4-5. Call and injection counts: 9 encoder runs, decoder batches 2B x [1,1,1,2,5,5,10,10,15], 25 injections.
  auto fd_par = run(FasterPar{});
  CHECK(fd_par.stats.encoder_runs == 9);
  CHECK(fd_par.stats.decoder_calls == 9);
  CHECK(fd_par.stats.decoded_steps == 50);
  CHECK(fd_par.stats.decoder_batches == std::vector<int>{2, 2, 2, 4, 10, 10, 20, 20, 30});
  CHECK(fd_par.stats.injected_steps == 25);
  auto fd_seq = run(FasterSeq{});
  CHECK(fd_seq.stats.encoder_runs == 9);
  CHECK(fd_seq.stats.decoder_calls == 50);
  CHECK(fd_seq.stats.injected_steps == 25);
  CHECK(base.stats.encoder_runs == 50);
  {
    fd::Scheduler<fd::sched::Pndm> pndm(config_of("fd_tiny_sd_pndm50"));
    CHECK(FasterPar::run(e.be, e.unet, pndm, 50, x, ctx).stats.injected_steps == 25);  // PNDM-51 -> 25
    fd::Scheduler<fd::sched::DpmSolverPP2M> dpm(fd::SchedulerConfig::sd15(fd::SchedulerKind::kDpmSolverMultistep));
    auto d = FasterPar::run(e.be, e.unet, dpm, 20, x, ctx);
    CHECK(d.stats.injected_steps == 9);  // DPM-20 -> 9 (t = 500 excluded)
    CHECK(d.stats.decoder_batches == std::vector<int>{2, 2, 2, 4, 10, 10, 10});
  }

  // Memory cap: a group split into sub-batches gives the same numbers.
  auto capped = run(FasterPar{}, fd::SamplerOptions{.max_decoder_rows = 6});
  CHECK(fdtest::rel_to_max(e.be, capped.final, fd_par.final) <= 1e-5);
  CHECK(capped.stats.decoder_calls > fd_par.stats.decoder_calls);
  for (int rows : capped.stats.decoder_batches) CHECK(rows <= 6);

  // Run-time keys equal compile-time keys; an interrupting callback stops after the step it returns false.
  {
    Ddim sched(config_of("fd_tiny_sd_ddim50"));
    using RuntimePar = fd::Sampler<fd::keys::Runtime, fd::prop::EncoderPropagation<fd::prop::Parallel>, fd::inject::Prior>;
    auto rt = RuntimePar::run(e.be, e.unet, sched, 50, x, ctx, {}, fd::keys::Runtime::parse("50ls"));
    CHECK(fdtest::rel_to_max(e.be, rt.final, fd_par.final) == 0.0);
    int seen = 0;
    auto stopped = FasterPar::run(e.be, e.unet, sched, 50, x, ctx, {}, {}, [&](fd::StepInfo const& s) {
      ++seen;
      return s.index < 6;
    });
    CHECK(stopped.stats.interrupted);
    CHECK(seen == 7);
    CHECK(stopped.latents.size() == 7u);
  }
}

TEST_CASE("sampler: without guidance the context is [B, L, D]", "[pipelines][sampler]") {
  auto& e = env();
  auto io = fd::io::SafeTensorsFile::open(fdtest::fixtures_dir() + "/fd_tiny_sd/fd_tiny_sd_ddim50.safetensors");
  T const x = io.load(e.be, "init_latents"), ctx2 = io.load(e.be, "encoder_hidden_states");
  T const cond = ctx2.slice(0, 1, 2).contiguous(e.be);
  fd::Scheduler<fd::sched::Ddim> sched(config_of("fd_tiny_sd_ddim50"));
  auto par = ParNoInject::run(e.be, e.unet, sched, 10, x, cond, {.guidance = 1.0f});
  auto seq = SeqNoInject::run(e.be, e.unet, sched, 10, x, cond, {.guidance = 1.0f});
  CHECK(fdtest::rel_to_max(e.be, par.final, seq.final) <= 1e-5);
  CHECK(par.stats.decoder_batches.front() == 1);
  CHECK_THROWS_AS(ParNoInject::run(e.be, e.unet, sched, 10, x, ctx2, {.guidance = 1.0f}), fd::error);
  CHECK_THROWS_AS(ParNoInject::run(e.be, e.unet, sched, 10, x, cond, {.guidance = 7.5f}), fd::error);
}
