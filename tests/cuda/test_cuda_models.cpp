// The UNet and the FasterDiffusion sampler on the CUDA backend against the golden fixtures: fp32 to
// 1e-4 of each tensor's max (the CPU criterion), f16 / bf16 against the same fixtures at the tolerance
// their storage allows; and the parallel decoder split by a memory cap giving the same trajectory.

#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/compare.hpp"
#include "cuda/cuda_test_common.hpp"
#include "fd/backend/cpu/ops.hpp"
#include "fd/backend/cuda/graph.hpp"
#include "fd/backend/cuda/ops.hpp"
#include "fd/io/safetensors.hpp"
#include "fd/models/unet/unet.hpp"
#include "fd/pipelines/sampler.hpp"
#include "fd/schedulers/all.hpp"

using namespace fdtest::cuda;
using fd::DType;

namespace {


std::string unet_dir() { return fdtest::fixtures_dir() + "/unet_tiny_sd"; }

double check(G const& g, char const* what, TG const& got, TC const& want, double tol) {
  double const e = fdtest::rel_to_max(cpu(), down(g, got), want);
  std::printf("  cuda %-5s %-10s rel_to_max %.2e (tolerance %.0e)\n", std::string(fd::dtype_name(g.dtype())).c_str(),
              what, e, tol);
  INFO(what << " in " << fd::dtype_name(g.dtype()) << ": " << e);
  CHECK(e <= tol);
  return e;
}

fd::SchedulerConfig config_of(std::string const& fixture) {
  std::ifstream in(fdtest::fixtures_dir() + "/fd_tiny_sd/" + fixture + ".json");
  nlohmann::json const j = nlohmann::json::parse(in);
  return fd::SchedulerConfig::from_json(j.at("scheduler"), fixture + ".json scheduler");
}

double worst_step(G const& g, std::vector<TG> const& got, TC const& ref) {
  REQUIRE(static_cast<std::int64_t>(got.size()) == ref.dim(0));
  double w = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    w = std::max(w, fdtest::rel_to_max(cpu(), down(g, got[i]), ref.select(0, static_cast<std::int64_t>(i)).contiguous(cpu())));
  }
  return w;
}

}  // namespace

TEST_CASE("cuda: unet_tiny_sd forward, encoder/decoder split and parallel decode match the fixture",
          "[cuda][unet][fixture]") {
  auto io = fd::io::SafeTensorsFile::open(unet_dir() + "/unet_tiny_sd_io.safetensors");
  auto ref = [&](std::string const& n) { return io.load(cpu(), n); };
  for (auto [dt, tol] : {std::pair{DType::kF32, 1e-4}, std::pair{DType::kF16, 1e-2}, std::pair{DType::kBF16, 5e-2}}) {
    G g{{.dtype = dt}};
    auto unet = fd::models::UNet2DCondition<G>::load(g, unet_dir());
    auto on_gpu = [&](std::string const& n) { return io.load(g, n); };
    float const t = ref("timestep").to_vector_f32(cpu())[0];
    float const td = ref("t_dec").to_vector_f32(cpu())[0];
    TG const x = on_gpu("sample"), ctx = on_gpu("encoder_hidden_states");
    check(g, "out", unet.forward(x, {&t, 1}, ctx), ref("out"), tol);
    auto feats = unet.encode(x, {&t, 1}, ctx);
    check(g, "enc.mid", feats.mid, ref("enc.mid"), tol);
    check(g, "dec.out", unet.decode(feats, {&td, 1}, ctx), ref("dec.out"), tol);
    auto const ts = ref("fdpar.timesteps").to_vector_f32(cpu());
    check(g, "fdpar.out", unet.decode(feats, ts, ctx), ref("fdpar.out"), tol);
  }
}

TEST_CASE("cuda: DDIM-50 baseline and FasterDiffusion match fd_tiny_sd_ddim50 in fp32", "[cuda][sampler][fixture]") {
  G g{{.dtype = DType::kF32}};
  auto unet = fd::models::UNet2DCondition<G>::load(g, unet_dir());
  auto io = fd::io::SafeTensorsFile::open(fdtest::fixtures_dir() + "/fd_tiny_sd/fd_tiny_sd_ddim50.safetensors");
  auto run = [&]<class S>(S*, std::string const& prefix, fd::SamplerOptions opt) {
    fd::Scheduler<fd::sched::Ddim> sched(config_of("fd_tiny_sd_ddim50"));
    auto res = S::run(g, unet, sched, 50, io.load(g, "init_latents"), io.load(g, "encoder_hidden_states"), opt);
    double const lat = worst_step(g, res.latents, io.load(cpu(), prefix + ".latents"));
    double const eps = worst_step(g, res.noise_preds, io.load(cpu(), prefix + ".noise_pred"));
    std::printf("  cuda f32 %s: worst per-step latents %.2e, noise_pred %.2e; decoder batches %zu, splits %d\n",
                prefix.c_str(), lat, eps, res.stats.decoder_batches.size(), res.stats.decoder_splits);
    CHECK(lat <= 1e-4);
    CHECK(eps <= 1e-4);
    return res;
  };
  using Baseline = fd::Sampler<fd::keys::All, fd::prop::None, fd::inject::None>;
  using Faster = fd::Sampler<fd::keys::Paper50, fd::prop::EncoderPropagation<fd::prop::Parallel>, fd::inject::Prior>;
  run(static_cast<Baseline*>(nullptr), "baseline", {.guidance = 7.5f});
  auto whole = run(static_cast<Faster*>(nullptr), "fd", {.guidance = 7.5f});
  CHECK(whole.stats.encoder_runs == 9);
  CHECK(whole.stats.decoder_splits == 0);

  // The same run with a memory cap that the largest group (15 steps x 2 rows) cannot fit in one batch:
  // the sampler halves the batch and the trajectory stays the same.
  g.trim_pool();
  g.reset_peak();
  auto const before = g.memory().in_use;
  run(static_cast<Faster*>(nullptr), "fd", {.guidance = 7.5f});
  auto const peak = g.memory().peak - before;
  G capped{{.dtype = DType::kF32, .memory_cap = g.memory().in_use + peak / 2}};
  auto unet_c = fd::models::UNet2DCondition<G>::load(capped, unet_dir());
  fd::Scheduler<fd::sched::Ddim> sched(config_of("fd_tiny_sd_ddim50"));
  auto res = Faster::run(capped, unet_c, sched, 50, io.load(capped, "init_latents"),
                         io.load(capped, "encoder_hidden_states"), {.guidance = 7.5f});
  std::printf("  memory cap %zu bytes: %d splits, %zu decoder calls\n", capped.options().memory_cap,
              res.stats.decoder_splits, res.stats.decoder_batches.size());
  CHECK(res.stats.decoder_splits > 0);
  CHECK(worst_step(capped, res.latents, io.load(cpu(), "fd.latents")) <= 1e-4);
}

TEST_CASE("cuda: UNet calls through CUDA graphs equal eager calls, with new inputs and timesteps each call",
          "[cuda][graph]") {
  G g{{.dtype = DType::kF32, .graphs = false}};  // the model's own regions off: this test records by hand
  auto unet = fd::models::UNet2DCondition<G>::load(g, unet_dir());
  auto io = fd::io::SafeTensorsFile::open(unet_dir() + "/unet_tiny_sd_io.safetensors");
  TG const x0 = io.load(g, "sample"), ctx = io.load(g, "encoder_hidden_states");
  fd::backend::CudaGraphs graphs(g);
  for (int call = 0; call < 5; ++call) {
    // Different latents and timesteps at every call: replays must see both.
    TG x = x0.clone(g);
    fd::backend::scale_(g, x, 1.0f + 0.1f * static_cast<float>(call));
    std::vector<float> const ts{900.0f - 37.0f * static_cast<float>(call), 500.0f - 11.0f * static_cast<float>(call)};
    auto outs = graphs.run("decode2", {x, ctx}, [&](fd::backend::CudaGraphs::Tensors const& in) {
      auto f = unet.encode(in[0], {ts.data(), 1}, in[1]);
      return fd::backend::CudaGraphs::Tensors{unet.decode(f, ts, in[1])};
    });
    auto f = unet.encode(x, {ts.data(), 1}, ctx);
    TC const want = down(g, unet.decode(f, ts, ctx));
    double const e = fdtest::rel_to_max(cpu(), down(g, outs.at(0)), want);
    INFO("call " << call << ": " << e);
    CHECK(e <= 1e-6);
  }
  auto const st = graphs.stats();
  CHECK(st.eager == 1);
  CHECK(st.captures == 1);
  CHECK(st.replays == 3);
}

TEST_CASE("cuda: the sampler with the UNet's CUDA graphs gives the trajectory without them", "[cuda][graph][sampler]") {
  auto io = fd::io::SafeTensorsFile::open(fdtest::fixtures_dir() + "/fd_tiny_sd/fd_tiny_sd_ddim50.safetensors");
  using Faster = fd::Sampler<fd::keys::Paper50, fd::prop::EncoderPropagation<fd::prop::Parallel>, fd::inject::Prior>;
  auto run = [&](G const& g, fd::models::UNet2DCondition<G> const& unet) {
    fd::Scheduler<fd::sched::Ddim> sched(config_of("fd_tiny_sd_ddim50"));
    return Faster::run(g, unet, sched, 50, io.load(g, "init_latents"), io.load(g, "encoder_hidden_states"),
                       {.guidance = 7.5f});
  };
  G plain{{.dtype = DType::kF16, .graphs = false}};
  auto unet_plain = fd::models::UNet2DCondition<G>::load(plain, unet_dir());
  TC const want = down(plain, run(plain, unet_plain).final);
  G graphed{{.dtype = DType::kF16, .graphs = true}};
  auto unet_graphed = fd::models::UNet2DCondition<G>::load(graphed, unet_dir());
  for (int round = 0; round < 3; ++round) {  // warm-up, capture, replay of every group shape
    double const e = fdtest::rel_to_max(cpu(), down(graphed, run(graphed, unet_graphed).final), want);
    INFO("round " << round << ": " << e);
    CHECK(e <= 1e-6);
  }
}
