// Schedulers: parity with the golden fixtures in shared/fixtures/schedulers (diffusers 0.23, float32):
// bit-exact beta / alphas_cumprod tables, exact timesteps, every trajectory step within 1e-5 of the
// step's max|ref|, the debug quantities each fixture records, and config / call-order errors.

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/compare.hpp"
#include "fd/io/safetensors.hpp"
#include "fd/schedulers/all.hpp"

using B = fd::backend::Cpu;
using T = fd::Tensor<B>;

namespace {

// The fixtures' pass criterion (README "Tolerances for these fixtures"): per step,
// max|a_i - b_i| <= 1e-5 * max|ref_i|. float32 lands near 1e-6.
constexpr double kStepTol = 1e-5;

struct Fixture {
  std::string name;
  nlohmann::json meta;
  fd::io::SafeTensorsFile file;
};

Fixture open_fixture(std::string const& name) {
  std::string const base = fdtest::fixtures_dir() + "/schedulers/" + name;
  std::ifstream f(base + ".json");
  REQUIRE(f.good());
  nlohmann::json meta = nlohmann::json::parse(f);
  return Fixture{name, std::move(meta), fd::io::SafeTensorsFile::open(base + ".safetensors")};
}

fd::SchedulerConfig config_of(Fixture const& fx) {
  return fd::SchedulerConfig::from_json(fx.meta.at("scheduler"), fx.name + ".json");
}

std::vector<float> values(B const& be, Fixture const& fx, std::string const& tensor) {
  return fx.file.load(be, tensor).to_vector_f32(be);
}

// Worst per-row max|got - want| / max|want| over the rows of a stacked reference [rows, ...].
double worst_row_error(std::vector<std::vector<float>> const& got, std::vector<float> const& want) {
  if (got.empty()) return INFINITY;
  std::size_t const per = want.size() / got.size();
  double worst = 0;
  for (std::size_t r = 0; r < got.size(); ++r) {
    if (got[r].size() != per) return INFINITY;
    double m = 0, d = 0;
    for (std::size_t i = 0; i < per; ++i) {
      double const w = want[r * per + i];
      if (!std::isfinite(got[r][i])) return INFINITY;
      m = std::max(m, std::fabs(w));
      d = std::max(d, std::fabs(static_cast<double>(got[r][i]) - w));
    }
    worst = std::max(worst, m > 0 ? d / m : d);
  }
  return worst;
}

std::size_t mismatches(std::vector<float> const& a, std::vector<float> const& b) {
  if (a.size() != b.size()) return std::max(a.size(), b.size());
  std::size_t n = 0;
  for (std::size_t i = 0; i < a.size(); ++i) n += a[i] != b[i] ? 1 : 0;
  return n;
}

struct Trajectory {
  std::vector<std::vector<float>> latents, pred, scaled;
  std::size_t noise_draws = 0;
};

// The fixture protocol: x = x_T * init_noise_sigma; call i: (scale_model_input), step with
// model_outputs[i] and variance_noise[i] as the noise the step draws.
Trajectory replay(B const& be, fd::AnyScheduler& s, Fixture const& fx) {
  Trajectory tr;
  T x = fx.file.load(be, "x_T");
  {
    auto v = x.to_vector_f32(be);
    for (float& e : v) e = e * s.init_noise_sigma();
    x = T::from_host(be, x.shape(), v);
  }
  T const outputs = fx.file.load(be, "model_outputs");
  bool const has_noise = fx.file.contains("variance_noise");
  T const noise_rows = has_noise ? fx.file.load(be, "variance_noise") : T{};
  for (int i = 0; i < static_cast<int>(s.timesteps().size()); ++i) {
    if (s.scales_input()) tr.scaled.push_back(s.scale_model_input(be, x, i).to_vector_f32(be));
    fd::ReplayNoise noise;
    if (has_noise) noise.push(noise_rows.select(0, i).to_vector_f32(be));
    x = s.step(be, outputs.select(0, i), i, x, has_noise ? &noise : nullptr);
    tr.noise_draws += noise.used();
    tr.latents.push_back(x.to_vector_f32(be));
    if (s.has_pred_original_sample()) tr.pred.push_back(s.pred_original_sample(be).to_vector_f32(be));
  }
  return tr;
}

std::vector<float> json_floats(nlohmann::json const& j) {
  std::vector<float> v;
  for (auto const& e : j) v.push_back(e.get<float>());
  return v;
}

char const* const kFixtures[] = {"ddim50_sd15",  "ddim50_eta05_sd15", "dpmpp2m20_sd15", "pndm50_sd15",
                                 "euler30_sd15", "euler_a30_sd15",    "ddpm20_if"};

template <class F>
void expect_config_error(nlohmann::json const& j, std::string const& field, F&& construct) {
  try {
    construct(j);
    FAIL("expected an fd::error naming '" << field << "'");
  } catch (fd::error const& e) {
    INFO(e.what());
    CHECK(e.code() == fd::Errc::kConfig);
    CHECK(std::string(e.what()).find("'" + field + "'") != std::string::npos);
  }
}

}  // namespace

TEST_CASE("scheduler beta and alphas_cumprod tables are bit-exact", "[schedulers]") {
  B be{{.threads = 1}};
  for (char const* name : kFixtures) {
    Fixture const fx = open_fixture(name);
    fd::AnyScheduler s(config_of(fx));
    std::size_t const mb = mismatches(s.schedule().betas, values(be, fx, "betas"));
    std::size_t const ma = mismatches(s.schedule().alphas_cumprod, values(be, fx, "alphas_cumprod"));
    std::printf("  %-18s betas %zu/1000 differ, alphas_cumprod %zu/1000 differ\n", name, mb, ma);
    INFO(name);
    CHECK(mb == 0);
    CHECK(ma == 0);
  }
}

TEST_CASE("scheduler timesteps equal the fixtures exactly", "[schedulers]") {
  B be{{.threads = 1}};
  for (char const* name : kFixtures) {
    Fixture const fx = open_fixture(name);
    fd::AnyScheduler s(config_of(fx));
    s.set_timesteps(fx.meta.at("num_inference_steps").get<int>());
    INFO(name);
    CHECK(s.timesteps_f32() == json_floats(fx.meta.at("timesteps")));
    CHECK(s.timesteps_f32() == values(be, fx, "timesteps"));
    CHECK(s.init_noise_sigma() == fx.meta.at("init_noise_sigma").get<float>());
    if (fx.meta.contains("num_step_calls")) {
      CHECK(s.timesteps().size() == fx.meta.at("num_step_calls").get<std::size_t>());
    }
  }
}

TEST_CASE("scheduler trajectories match the fixtures per step", "[schedulers]") {
  B be{{.threads = 1}};
  for (char const* name : kFixtures) {
    Fixture const fx = open_fixture(name);
    fd::AnyScheduler s(config_of(fx));
    if (fx.meta.contains("eta")) s.set_eta(fx.meta.at("eta").get<float>());
    s.set_timesteps(fx.meta.at("num_inference_steps").get<int>());
    Trajectory const tr = replay(be, s, fx);
    double const e_lat = worst_row_error(tr.latents, values(be, fx, "latents"));
    double e_pred = 0, e_scaled = 0;
    if (fx.file.contains("pred_original_sample")) {
      REQUIRE(s.has_pred_original_sample());
      e_pred = worst_row_error(tr.pred, values(be, fx, "pred_original_sample"));
    }
    if (fx.file.contains("scaled_model_inputs")) {
      REQUIRE(s.scales_input());
      e_scaled = worst_row_error(tr.scaled, values(be, fx, "scaled_model_inputs"));
    }
    std::printf("  %-18s %2zu calls: worst per-step rel error latents %.2e, pred_original_sample %.2e, "
                "scaled_model_inputs %.2e (noise draws %zu)\n",
                name, tr.latents.size(), e_lat, e_pred, e_scaled, tr.noise_draws);
    INFO(name);
    CHECK(e_lat <= kStepTol);
    CHECK(e_pred <= kStepTol);
    CHECK(e_scaled <= kStepTol);
    // The reference's random draws: DDIM got its noise passed in (0 draws recorded), yet uses one per step.
    if (fx.meta.contains("eta")) {
      CHECK(tr.noise_draws == tr.latents.size());
    } else if (fx.meta.contains("rng_draws_per_trajectory") && fx.file.contains("variance_noise")) {
      CHECK(tr.noise_draws == fx.meta.at("rng_draws_per_trajectory").get<std::size_t>());
    }
  }
}

TEST_CASE("scheduler debug quantities match the fixtures", "[schedulers]") {
  B be{{.threads = 1}};
  auto close = [](float a, float b) { return std::fabs(a - b) <= 1e-6f * std::max(1.0f, std::fabs(b)); };

  SECTION("DPM-Solver++ sigmas") {
    Fixture const fx = open_fixture("dpmpp2m20_sd15");
    fd::Scheduler<fd::sched::DpmSolverPP2M> s(config_of(fx));
    s.set_timesteps(20);
    CHECK(mismatches(s.sigmas(), values(be, fx, "sigmas")) == 0);
  }
  SECTION("Euler sigmas, init_noise_sigma, input divisors") {
    for (char const* name : {"euler30_sd15", "euler_a30_sd15"}) {
      Fixture const fx = open_fixture(name);
      fd::Scheduler<fd::sched::Euler> e(config_of(fx));
      e.set_timesteps(30);
      INFO(name);
      CHECK(mismatches(e.sigmas(), values(be, fx, "sigmas")) == 0);
      CHECK(e.init_noise_sigma() == values(be, fx, "init_noise_sigma")[0]);
      auto const div = values(be, fx, "scale_model_input_divisor");
      for (int i = 0; i < 30; ++i) CHECK(close(e.input_divisor(i), div[static_cast<std::size_t>(i)]));
    }
  }
  SECTION("Euler ancestral sigma_up / sigma_down") {
    Fixture const fx = open_fixture("euler_a30_sd15");
    fd::Scheduler<fd::sched::EulerAncestral> s(config_of(fx));
    s.set_timesteps(30);
    auto const up = values(be, fx, "sigma_up");
    auto const down = values(be, fx, "sigma_down");
    for (int i = 0; i < 30; ++i) {
      auto const [u, d] = s.sigma_up_down(i);
      CHECK(close(u, up[static_cast<std::size_t>(i)]));
      CHECK(close(d, down[static_cast<std::size_t>(i)]));
    }
    CHECK(s.sigma_up_down(29).first == 0.0f);
  }
  SECTION("DDIM eta 0.5 std_dev_t and targets") {
    Fixture const fx = open_fixture("ddim50_eta05_sd15");
    fd::Scheduler<fd::sched::Ddim> s(config_of(fx));
    s.set_eta(0.5f);
    s.set_timesteps(50);
    auto const sd = values(be, fx, "std_dev_t");
    auto const prev = fx.meta.at("prev_timesteps");
    for (int i = 0; i < 50; ++i) {
      CHECK(close(s.std_dev(i), sd[static_cast<std::size_t>(i)]));
      CHECK(s.prev_timestep(i) == prev.at(static_cast<std::size_t>(i)).get<int>());
    }
    CHECK(s.final_alpha_cumprod() == fx.meta.at("final_alpha_cumprod").get<float>());
  }
  SECTION("PNDM update intervals") {
    Fixture const fx = open_fixture("pndm50_sd15");
    fd::Scheduler<fd::sched::Pndm> s(config_of(fx));
    s.set_timesteps(50);
    T x = fx.file.load(be, "x_T");
    T const mo = fx.file.load(be, "model_outputs");
    auto const intervals = fx.meta.at("plms_update_timesteps");
    for (int i = 0; i < 51; ++i) {
      x = s.step(be, mo.select(0, i), i, x);
      auto const want = intervals.at(static_cast<std::size_t>(i));
      CHECK(s.last_update().first == want.at(0).get<int>());
      CHECK(s.last_update().second == want.at(1).get<int>());
    }
    CHECK(s.final_alpha_cumprod() == fx.meta.at("final_alpha_cumprod").get<float>());
  }
  SECTION("DDPM (IF) thresholds and targets") {
    Fixture const fx = open_fixture("ddpm20_if");
    fd::Scheduler<fd::sched::Ddpm> s(config_of(fx));
    s.set_timesteps(20);
    T x = fx.file.load(be, "x_T");
    T const mo = fx.file.load(be, "model_outputs");
    T const z = fx.file.load(be, "variance_noise");
    auto const thr = values(be, fx, "threshold_s");
    auto const prev = fx.meta.at("prev_timesteps");
    for (int i = 0; i < 20; ++i) {
      fd::ReplayNoise noise;
      noise.push(z.select(0, i).to_vector_f32(be));
      x = s.step(be, mo.select(0, i), i, x, &noise);
      CHECK(s.prev_timestep(i) == prev.at(static_cast<std::size_t>(i)).get<int>());
      CHECK(noise.used() == (s.timesteps()[static_cast<std::size_t>(i)] > 0 ? 1u : 0u));
      REQUIRE(s.last_thresholds().size() == 2);
      for (int b = 0; b < 2; ++b) CHECK(close(s.last_thresholds()[static_cast<std::size_t>(b)], thr[static_cast<std::size_t>(2 * i + b)]));
    }
  }
}

TEST_CASE("scheduler timestep grids of the spec", "[schedulers]") {
  auto sd = [](fd::SchedulerKind k) { return fd::SchedulerConfig::sd15(k); };
  SECTION("DDIM leading+1, 25 steps: 961, 921, ..., 1") {
    fd::Scheduler<fd::sched::Ddim> s(sd(fd::SchedulerKind::kDdim));
    s.set_timesteps(25);
    REQUIRE(s.timesteps().size() == 25);
    CHECK(s.timesteps().front() == 961);
    CHECK(s.timesteps()[1] == 921);
    CHECK(s.timesteps().back() == 1);
  }
  SECTION("PNDM 50 steps: 51 calls with 961 twice") {
    fd::Scheduler<fd::sched::Pndm> s(sd(fd::SchedulerKind::kPndm));
    s.set_timesteps(50);
    REQUIRE(s.timesteps().size() == 51);
    CHECK(s.timesteps()[0] == 981);
    CHECK(s.timesteps()[1] == 961);
    CHECK(s.timesteps()[2] == 961);
    CHECK(s.timesteps()[3] == 941);
    CHECK(s.timesteps().back() == 1);
  }
  SECTION("PNDM with the Runge-Kutta warm-up: 12 PRK calls, then PLMS from the 4th-largest grid point") {
    auto c = sd(fd::SchedulerKind::kPndm);
    c.skip_prk_steps = false;
    fd::Scheduler<fd::sched::Pndm> s(c);
    s.set_timesteps(50);
    std::vector<int> const prk{981, 971, 971, 961, 961, 951, 951, 941, 941, 931, 931, 921};
    REQUIRE(s.timesteps().size() == 12 + 47);
    CHECK(std::vector<int>(s.timesteps().begin(), s.timesteps().begin() + 12) == prk);
    CHECK(s.timesteps()[12] == 921);
    CHECK(s.timesteps().back() == 1);
  }
  SECTION("DPM++ linspace, 25 steps: 999, 959, ..., 519, 480, ..., 40") {
    fd::Scheduler<fd::sched::DpmSolverPP2M> s(sd(fd::SchedulerKind::kDpmSolverMultistep));
    s.set_timesteps(25);
    REQUIRE(s.timesteps().size() == 25);
    CHECK(s.timesteps()[0] == 999);
    CHECK(s.timesteps()[1] == 959);
    CHECK(s.timesteps()[12] == 519);
    CHECK(s.timesteps()[13] == 480);
    CHECK(s.timesteps().back() == 40);
  }
  SECTION("Euler linspace, 50 steps: fractional timesteps") {
    fd::Scheduler<fd::sched::Euler> s(sd(fd::SchedulerKind::kEulerDiscrete));
    s.set_timesteps(50);
    CHECK(s.timesteps_f32().front() == 999.0f);
    CHECK(s.timesteps_f32()[1] == Approx(978.6122).epsilon(1e-7));
    CHECK(s.timesteps_f32().back() == 0.0f);
    CHECK(s.timesteps()[1] == 979);
    CHECK(s.init_noise_sigma() == Approx(14.614645).epsilon(1e-6));
  }
  SECTION("DDPM (IF) leading, offset 0: 100 steps 990..0; custom lists") {
    fd::Scheduler<fd::sched::Ddpm> s(fd::SchedulerConfig::deepfloyd_if());
    s.set_timesteps(100);
    CHECK(s.timesteps().front() == 990);
    CHECK(s.timesteps().back() == 0);
    std::vector<int> const fast27{999, 800, 799, 600, 599, 500, 400, 399, 377, 355, 333, 311, 288, 266,
                                  244, 222, 200, 199, 177, 155, 133, 111, 88,  66,  44,  22,  0};
    s.set_timesteps(fast27);
    CHECK(s.timesteps() == fast27);
    CHECK(s.prev_timestep(0) == 800);
    CHECK(s.prev_timestep(26) == -1);
    CHECK_THROWS_AS(s.set_timesteps(std::vector<int>{10, 20}), fd::error);
  }
  SECTION("trailing spacing") {
    auto c = sd(fd::SchedulerKind::kDdim);
    c.timestep_spacing = fd::TimestepSpacing::kTrailing;
    fd::Scheduler<fd::sched::Ddim> s(c);
    s.set_timesteps(50);
    REQUIRE(s.timesteps().size() == 50);
    CHECK(s.timesteps().front() == 999);
    CHECK(s.timesteps()[1] == 979);
    CHECK(s.timesteps().back() == 19);
  }
  SECTION("the SD1.5 preset equals the hub scheduler_config.json") {
    Fixture const fx = open_fixture("pndm50_sd15");
    auto const hub = fd::SchedulerConfig::from_json(fx.meta.at("source_scheduler_config"), "sd15");
    fd::AnyScheduler a(hub), b(fd::SchedulerConfig::sd15());
    CHECK(a.kind() == fd::SchedulerKind::kPndm);
    a.set_timesteps(50);
    b.set_timesteps(50);
    CHECK(a.timesteps() == b.timesteps());
    CHECK(a.schedule().alphas_cumprod == b.schedule().alphas_cumprod);
    // diffusers' X.from_config(sd15): DDIM keeps leading spacing, DPM switches to its linspace default.
    fd::AnyScheduler d(fd::SchedulerConfig::from_json(fx.meta.at("source_scheduler_config"), "sd15",
                                                      fd::SchedulerKind::kDpmSolverMultistep));
    d.set_timesteps(20);
    CHECK(d.timesteps().front() == 999);
  }
}

TEST_CASE("scheduler policy traits", "[schedulers]") {
  using namespace fd;
  STATIC_REQUIRE(Scheduler<sched::Ddim>::kStochastic);
  STATIC_REQUIRE_FALSE(Scheduler<sched::Ddim>::kScalesInput);
  STATIC_REQUIRE_FALSE(Scheduler<sched::Pndm>::kStochastic);
  STATIC_REQUIRE_FALSE(Scheduler<sched::DpmSolverPP2M>::kStochastic);
  STATIC_REQUIRE(Scheduler<sched::Ddpm>::kStochastic);
  STATIC_REQUIRE_FALSE(Scheduler<sched::Euler>::kStochastic);
  STATIC_REQUIRE(Scheduler<sched::Euler>::kScalesInput);
  STATIC_REQUIRE(Scheduler<sched::EulerAncestral>::kStochastic);
  STATIC_REQUIRE(Scheduler<sched::EulerAncestral>::kScalesInput);
  AnyScheduler a(SchedulerConfig::sd15(SchedulerKind::kEulerAncestralDiscrete));
  CHECK(a.class_name() == "EulerAncestralDiscreteScheduler");
  CHECK(a.stochastic());
  CHECK(a.scales_input());
  AnyScheduler d(SchedulerConfig::sd15(SchedulerKind::kDdim));
  CHECK_FALSE(d.uses_noise());
  d.set_eta(0.3f);
  CHECK(d.uses_noise());
  CHECK(d.eta() == 0.3f);
}

TEST_CASE("scheduler config errors name the field", "[schedulers]") {
  Fixture const fx = open_fixture("dpmpp2m20_sd15");
  nlohmann::json const good = fx.meta.at("scheduler");
  auto any = [](nlohmann::json const& j) { fd::AnyScheduler s(fd::SchedulerConfig::from_json(j, "test.json")); };

  SECTION("unknown _class_name") {
    auto j = good;
    j["_class_name"] = "LMSDiscreteScheduler";
    expect_config_error(j, "_class_name", any);
  }
  SECTION("missing _class_name") {
    auto j = good;
    j.erase("_class_name");
    expect_config_error(j, "_class_name", any);
  }
  SECTION("bad beta_schedule") {
    auto j = good;
    j["beta_schedule"] = "sigmoid";
    expect_config_error(j, "beta_schedule", any);
  }
  SECTION("bad timestep_spacing") {
    auto j = good;
    j["timestep_spacing"] = "uniform";
    expect_config_error(j, "timestep_spacing", any);
  }
  SECTION("use_karras_sigmas true (not implemented)") {
    auto j = good;
    j["use_karras_sigmas"] = true;
    expect_config_error(j, "use_karras_sigmas", any);
    j["_class_name"] = "EulerDiscreteScheduler";
    expect_config_error(j, "use_karras_sigmas", any);
  }
  SECTION("wrong types, unknown fields, unsupported values") {
    auto j = good;
    j["num_train_timesteps"] = "1000";
    expect_config_error(j, "num_train_timesteps", any);
    j = good;
    j["mystery_option"] = 3;
    expect_config_error(j, "mystery_option", any);
    j = good;
    j["solver_order"] = 3;
    expect_config_error(j, "solver_order", any);
    j = good;
    j["trained_betas"] = {0.1, 0.2};
    expect_config_error(j, "trained_betas", any);
    j = good;
    j["_class_name"] = "DDPMScheduler";
    j["variance_type"] = "fixed_large_log";
    expect_config_error(j, "variance_type", any);
  }
  SECTION("the source file is named") {
    auto j = good;
    j["prediction_type"] = "x0";
    try {
      any(j);
      FAIL("no error");
    } catch (fd::error const& e) {
      CHECK(std::string(e.what()).find("test.json") != std::string::npos);
    }
  }
}

TEST_CASE("scheduler call-order, noise and shape errors", "[schedulers]") {
  B be{{.threads = 1}};
  T const x = T::zeros(be, fd::Shape{1, 4, 2, 2});
  T const e = T::zeros(be, fd::Shape{1, 4, 2, 2});
  auto code_of = [](auto&& f) {
    try {
      f();
    } catch (fd::error const& err) {
      return err.code();
    }
    return fd::Errc::kIo;  // "no error" marker for these checks
  };

  fd::AnyScheduler pndm(fd::SchedulerConfig::sd15());
  CHECK(code_of([&] { pndm.step(be, e, 0, x); }) == fd::Errc::kInvalidArgument);  // before set_timesteps
  pndm.set_timesteps(10);
  pndm.step(be, e, 0, x);
  CHECK(code_of([&] { pndm.step(be, e, 2, x); }) == fd::Errc::kInvalidArgument);  // skipped call 1
  pndm.reset();
  pndm.step(be, e, 0, x);
  pndm.step(be, e, 1, x);

  fd::AnyScheduler ddim(fd::SchedulerConfig::sd15(fd::SchedulerKind::kDdim));
  ddim.set_timesteps(10);
  ddim.set_eta(1.0f);
  CHECK(code_of([&] { ddim.step(be, e, 0, x); }) == fd::Errc::kInvalidArgument);  // stochastic without noise
  CHECK(code_of([&] { ddim.step(be, e, 10, x); }) == fd::Errc::kInvalidArgument);
  CHECK(code_of([&] { ddim.step(be, T::zeros(be, fd::Shape{1, 3, 2, 2}), 0, x); }) == fd::Errc::kShapeMismatch);
  fd::ReplayNoise short_noise({std::vector<float>(3)});
  CHECK(code_of([&] { ddim.step(be, e, 0, x, &short_noise); }) == fd::Errc::kShapeMismatch);

  fd::AnyScheduler pndm2(fd::SchedulerConfig::sd15());
  CHECK(code_of([&] { pndm2.set_eta(0.5f); }) == fd::Errc::kInvalidArgument);
  CHECK(code_of([&] { pndm2.set_timesteps(0); }) == fd::Errc::kInvalidArgument);
  CHECK(code_of([&] { (void)pndm2.pred_original_sample(be); }) == fd::Errc::kUnsupported);
  CHECK(code_of([&] { pndm2.set_timesteps(std::vector<int>{999, 0}); }) == fd::Errc::kUnsupported);

  fd::AnyScheduler ddpm(fd::SchedulerConfig::deepfloyd_if());
  ddpm.set_timesteps(std::vector<int>{999, 500, 0});
  CHECK(ddpm.timesteps() == std::vector<int>{999, 500, 0});
  CHECK(code_of([&] { ddpm.step(be, T::zeros(be, fd::Shape{1, 6, 2, 2}), 0, T::zeros(be, fd::Shape{1, 3, 2, 2})); }) ==
        fd::Errc::kInvalidArgument);  // t = 999 > 0 draws noise
}
