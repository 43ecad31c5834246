// ControlNet sampling against fd_tiny_controlnet_ddim50 (unet_tiny_sd + controlnet_tiny, DDIM-50, CFG
// 7.5): the baseline runs the ControlNet at every step; FasterDiffusion only at key steps, its residuals
// reused for the whole group.

#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/compare.hpp"
#include "fd/backend/cpu/ops.hpp"
#include "fd/io/safetensors.hpp"
#include "fd/models/controlnet/controlled_unet.hpp"
#include "fd/pipelines/sampler.hpp"
#include "fd/schedulers/all.hpp"

using B = fd::backend::Cpu;
using T = fd::Tensor<B>;
using Baseline = fd::Sampler<fd::keys::All, fd::prop::None, fd::inject::None>;
using FasterPar = fd::Sampler<fd::keys::Paper50, fd::prop::EncoderPropagation<fd::prop::Parallel>, fd::inject::Prior>;
using FasterSeq = fd::Sampler<fd::keys::Paper50, fd::prop::EncoderPropagation<fd::prop::Sequential>, fd::inject::Prior>;

namespace {

struct Env {
  B be{{.threads = 2}};
  fd::models::UNet2DCondition<B> unet = fd::models::UNet2DCondition<B>::load(be, fdtest::fixtures_dir() + "/unet_tiny_sd");
  fd::models::ControlNetModel<B> cn = fd::models::ControlNetModel<B>::load(be, fdtest::fixtures_dir() + "/controlnet_tiny");
  fd::io::SafeTensorsFile io =
      fd::io::SafeTensorsFile::open(fdtest::fixtures_dir() + "/fd_tiny_sd/fd_tiny_controlnet_ddim50.safetensors");
};
Env& env() {
  static Env e;
  return e;
}

fd::SchedulerConfig ddim_config() {
  std::ifstream in(fdtest::fixtures_dir() + "/fd_tiny_sd/fd_tiny_controlnet_ddim50.json");
  nlohmann::json const j = nlohmann::json::parse(in);
  return fd::SchedulerConfig::from_json(j.at("scheduler"), "fd_tiny_controlnet_ddim50.json scheduler");
}

double worst_step_error(B const& be, std::vector<T> const& got, T const& ref) {
  REQUIRE(static_cast<std::int64_t>(got.size()) == ref.dim(0));
  double worst = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    worst = std::max(worst, fdtest::rel_to_max(be, got[i], ref.select(0, static_cast<std::int64_t>(i)).contiguous(be)));
  }
  return worst;
}

template <class S>
fd::SampleResult<B> run(fd::models::ControlledUNet<B> const& model) {
  auto& e = env();
  fd::Scheduler<fd::sched::Ddim> sched(ddim_config());
  return S::run(e.be, model, sched, 50, e.io.load(e.be, "init_latents"), e.io.load(e.be, "encoder_hidden_states"),
                fd::SamplerOptions{.guidance = 7.5f});
}

}  // namespace

TEST_CASE("controlnet sampler: baseline and FasterDiffusion match fd_tiny_controlnet_ddim50",
          "[pipelines][controlnet][fixture]") {
  auto& e = env();
  fd::models::ControlledUNet<B> model(e.unet, {{.net = &e.cn, .image = e.io.load(e.be, "controlnet_cond")}});
  for (std::string prefix : {"baseline", "fd"}) {
    auto res = prefix == "baseline" ? run<Baseline>(model) : run<FasterPar>(model);
    double const lat = worst_step_error(e.be, res.latents, e.io.load(e.be, prefix + ".latents"));
    double const eps = worst_step_error(e.be, res.noise_preds, e.io.load(e.be, prefix + ".noise_pred"));
    std::printf("  fd_tiny_controlnet_ddim50 %-8s worst per-step: latents %.2e, noise_pred %.2e; ControlNet runs %d\n",
                prefix.c_str(), lat, eps, res.stats.controlnet_runs);
    CHECK(lat <= 1e-4);
    CHECK(eps <= 1e-4);
    CHECK(res.stats.controlnet_runs == (prefix == "baseline" ? 50 : 9));
  }
  // Sequential propagation caches the same features: the same trajectory as the parallel decoder.
  auto seq = run<FasterSeq>(model);
  CHECK(seq.stats.controlnet_runs == 9);
  CHECK(worst_step_error(e.be, seq.latents, e.io.load(e.be, "fd.latents")) <= 1e-4);
}

TEST_CASE("controlnet sampler: guidance start/end, several ControlNets, guess mode", "[pipelines][controlnet]") {
  auto& e = env();
  T const img = e.io.load(e.be, "controlnet_cond");
  // Active for steps i with i/50 >= 0.5: 25 baseline runs, and the key steps 25 and 35 under FasterDiffusion.
  fd::models::ControlledUNet<B> late(e.unet, {{.net = &e.cn, .image = img, .guidance_start = 0.5f}});
  CHECK(run<Baseline>(late).stats.controlnet_runs == 25);
  CHECK(run<FasterPar>(late).stats.controlnet_runs == 2);

  // Two ControlNets at scale 0.5 each sum to one at scale 1.0.
  fd::models::ControlledUNet<B> one(e.unet, {{.net = &e.cn, .image = img}});
  fd::models::ControlledUNet<B> two(e.unet, {{.net = &e.cn, .image = img, .scale = 0.5f},
                                             {.net = &e.cn, .image = img, .scale = 0.5f}});
  T const x = fd::backend::tile_halves(e.be, e.io.load(e.be, "init_latents"), 1, 2);
  T const ctx = e.io.load(e.be, "encoder_hidden_states");
  float const t = 801.0f;
  auto r1 = one.residuals(x, {&t, 1}, ctx), r2 = two.residuals(x, {&t, 1}, ctx);
  REQUIRE(r2.down.size() == r1.down.size());
  for (std::size_t i = 0; i < r1.down.size(); ++i) CHECK(fdtest::rel_to_max(e.be, r2.down[i], r1.down[i]) <= 1e-6);
  CHECK(two.controlnet_calls() == 2);

  // Guess mode under guidance: the ControlNet sees the conditional half; the unconditional half gets zeros.
  fd::models::ControlledUNet<B> guess(e.unet, {{.net = &e.cn, .image = img}}, /*guess_mode=*/true);
  auto g = guess.residuals(x, {&t, 1}, ctx);
  auto const v = g.mid.to_vector_f32(e.be);
  bool zeros = true, nonzero = false;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i < v.size() / 2) {
      zeros = zeros && v[i] == 0.0f;
    } else {
      nonzero = nonzero || v[i] != 0.0f;
    }
  }
  CHECK(zeros);
  CHECK(nonzero);
  auto direct = e.cn.forward(x.slice(0, 1, 2).contiguous(e.be), {&t, 1}, ctx.slice(0, 1, 2).contiguous(e.be), img, 1.0f, true);
  CHECK(fdtest::rel_to_max(e.be, g.mid.slice(0, 1, 2).contiguous(e.be), direct.mid) == 0.0);

  CHECK_THROWS_WITH((fd::models::ControlledUNet<B>(e.unet, {{.net = &e.cn, .image = img, .guidance_start = 0.8f,
                                                              .guidance_end = 0.2f}})),
                    Catch::Contains("0 <= start < end <= 1"));
  fd::models::ControlledUNet<B> four(e.unet, {{.net = &e.cn, .image = fd::backend::tile_halves(e.be, img, 1, 4)}});
  CHECK_THROWS_WITH(four.residuals(x, {&t, 1}, ctx),
                    Catch::Contains("control image batch of 4 does not tile the model batch of 2"));
}
