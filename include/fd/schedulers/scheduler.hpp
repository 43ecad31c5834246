#pragma once
/// @file
/// Diffusion schedulers: the shared configuration (read from a diffusers `scheduler_config.json`), the
/// float32 noise-schedule tables, the caller-owned noise interface and the `Scheduler<Policy>`
/// customization point. Each specialization lives in its own header (ddim.hpp, pndm.hpp, dpmpp_2m.hpp,
/// ddpm.hpp, euler.hpp, euler_ancestral.hpp); all.hpp gathers them with the runtime `AnyScheduler`.
///
/// Numerics follow diffusers v0.23.0 on a CPU in float32: the beta and alphas_cumprod tables are
/// reproduced bit for bit (see make_noise_schedule), and every step is computed on host float data in
/// the operation order of the reference, so trajectories stay within ~1e-6 relative of it.
///
/// @code
///   auto cfg = fd::SchedulerConfig::from_file("scheduler/scheduler_config.json");
///   fd::Scheduler<fd::sched::Ddim> s(cfg);
///   s.set_timesteps(50);
///   for (int i = 0; i < int(s.timesteps().size()); ++i) x = s.step(be, unet(x, s.timesteps()[i]), i, x);
/// @endcode

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numbers>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "fd/config.hpp"
#include "fd/core/dtype.hpp"
#include "fd/core/shape.hpp"
#include "fd/core/tensor.hpp"
#include "fd/error.hpp"

namespace fd {

// ================================================================================================
// Configuration
// ================================================================================================

/// The diffusers scheduler class a config names in `_class_name`.
enum class SchedulerKind {
  kDdim,                    ///< DDIMScheduler
  kPndm,                    ///< PNDMScheduler
  kDpmSolverMultistep,      ///< DPMSolverMultistepScheduler
  kDdpm,                    ///< DDPMScheduler
  kEulerDiscrete,           ///< EulerDiscreteScheduler
  kEulerAncestralDiscrete,  ///< EulerAncestralDiscreteScheduler
};

/// The diffusers class name of a kind ("DDIMScheduler", ...).
constexpr std::string_view scheduler_class_name(SchedulerKind k) noexcept {
  switch (k) {
    case SchedulerKind::kDdim: return "DDIMScheduler";
    case SchedulerKind::kPndm: return "PNDMScheduler";
    case SchedulerKind::kDpmSolverMultistep: return "DPMSolverMultistepScheduler";
    case SchedulerKind::kDdpm: return "DDPMScheduler";
    case SchedulerKind::kEulerDiscrete: return "EulerDiscreteScheduler";
    case SchedulerKind::kEulerAncestralDiscrete: return "EulerAncestralDiscreteScheduler";
  }
  return "?";
}

enum class BetaSchedule {
  kLinear,           ///< betas = linspace(beta_start, beta_end, T)
  kScaledLinear,     ///< betas = linspace(sqrt(beta_start), sqrt(beta_end), T)^2 (Stable Diffusion)
  kSquaredCosCapV2,  ///< cosine alpha-bar schedule of Nichol & Dhariwal 2021, betas capped at 0.999 (IF)
};

enum class PredictionType {
  kEpsilon,     ///< the model predicts the added noise
  kVPrediction, ///< the model predicts v = sqrt(a) eps - sqrt(1 - a) x0 (Salimans & Ho 2022)
  kSample,      ///< the model predicts x0 directly
};

enum class TimestepSpacing {
  kLeading,   ///< (N-1-k) * (T // N) + steps_offset
  kTrailing,  ///< round(arange(T, 0, -T/N)) - 1
  kLinspace,  ///< round(linspace(0, T-1, N)), descending
};

/// DDPM's posterior variance (DPMSolverMultistep only looks at whether it is learned*).
enum class VarianceType { kFixedSmall, kFixedSmallLog, kFixedLarge, kFixedLargeLog, kLearned, kLearnedRange };

enum class DpmAlgorithm { kDpmSolverPP, kDpmSolver, kSdeDpmSolverPP, kSdeDpmSolver };
enum class DpmSolverType { kMidpoint, kHeun };
enum class InterpolationType { kLinear, kLogLinear };

/// Every `scheduler_config.json` field the six schedulers read (diffusers v0.23.0 names).
///
/// Fields whose default depends on the scheduler class are optional: unset means "the default of the
/// class that is constructed", which is what diffusers' `X.from_config(other_config)` does. A config
/// therefore works for any of the six specializations; `kind` (from `_class_name`) only picks the
/// class for AnyScheduler.
struct SchedulerConfig {
  SchedulerKind kind = SchedulerKind::kDdim;  ///< from `_class_name`
  std::string source = "scheduler config";    ///< named in error messages (the file, normally)

  int num_train_timesteps = 1000;
  double beta_start = 0.0001;
  double beta_end = 0.02;
  BetaSchedule beta_schedule = BetaSchedule::kLinear;
  std::vector<float> trained_betas;  ///< non-empty: used instead of beta_schedule (float32, as torch.tensor)
  PredictionType prediction_type = PredictionType::kEpsilon;
  std::optional<TimestepSpacing> timestep_spacing;  ///< unset: leading (DDIM/DDPM/PNDM), linspace (DPM/Euler)
  int steps_offset = 0;
  std::optional<bool> set_alpha_to_one;  ///< unset: true (DDIM), false (PNDM)
  std::optional<bool> clip_sample;       ///< unset: true (DDIM, DDPM)
  float clip_sample_range = 1.0f;
  bool thresholding = false;
  float dynamic_thresholding_ratio = 0.995f;
  float sample_max_value = 1.0f;
  std::optional<VarianceType> variance_type;  ///< unset/null: fixed_small (DDPM), not learned (DPM)
  int solver_order = 2;
  DpmAlgorithm algorithm_type = DpmAlgorithm::kDpmSolverPP;
  DpmSolverType solver_type = DpmSolverType::kMidpoint;
  bool lower_order_final = true;
  bool euler_at_final = false;
  bool use_karras_sigmas = false;  ///< not implemented: DPM/Euler reject true
  bool use_lu_lambdas = false;     ///< not implemented: DPM rejects true
  double lambda_min_clipped = -std::numeric_limits<double>::infinity();
  bool skip_prk_steps = false;
  InterpolationType interpolation_type = InterpolationType::kLinear;
  bool rescale_betas_zero_snr = false;  ///< not implemented: rejected when true

  /// Parses a diffusers scheduler config object. `as` overrides `_class_name` (diffusers'
  /// `X.from_config(config)`); without it `_class_name` is required and must name one of the six
  /// classes. Throws fd::error kConfig naming `source` and the field for a missing, malformed or
  /// unknown value.
  static SchedulerConfig from_json(nlohmann::json const& j, std::string source,
                                   std::optional<SchedulerKind> as = std::nullopt);
  /// Reads and parses a `scheduler_config.json` (kIo if unreadable, kFormat if not JSON).
  static SchedulerConfig from_file(std::filesystem::path const& path, std::optional<SchedulerKind> as = std::nullopt);

  /// runwayml/stable-diffusion-v1-5 `scheduler/scheduler_config.json` (a PNDMScheduler config) loaded
  /// as `kind`, exactly as `X.from_config(sd15_config)` would.
  static SchedulerConfig sd15(SchedulerKind kind = SchedulerKind::kPndm) {
    SchedulerConfig c;
    c.kind = kind;
    c.source = "sd15 scheduler_config.json";
    c.beta_start = 0.00085;
    c.beta_end = 0.012;
    c.beta_schedule = BetaSchedule::kScaledLinear;
    c.set_alpha_to_one = false;
    c.skip_prk_steps = true;
    c.steps_offset = 1;
    c.clip_sample = false;
    return c;
  }

  /// DeepFloyd IF-I-XL's DDPMScheduler config (stage II: sample_max_value 1.0).
  static SchedulerConfig deepfloyd_if(float sample_max_value = 1.5f) {
    SchedulerConfig c;
    c.kind = SchedulerKind::kDdpm;
    c.source = "deepfloyd IF scheduler_config.json";
    c.beta_schedule = BetaSchedule::kSquaredCosCapV2;
    c.variance_type = VarianceType::kLearnedRange;
    c.thresholding = true;
    c.dynamic_thresholding_ratio = 0.95f;
    c.sample_max_value = sample_max_value;
    c.clip_sample = true;
    return c;
  }

  /// Throws kConfig "<source>: field '<field>' <why>".
  [[noreturn]] void reject(std::string_view field, std::string const& why) const {
    fail(Errc::kConfig, source + ": field '" + std::string(field) + "' " + why);
  }
};

// ================================================================================================
// Noise sources
// ================================================================================================

/// Where stochastic steps get their standard-normal noise. The caller owns it; a scheduler asks for
/// exactly the draws diffusers' step would make, in the same order, with the shape of the sample.
struct NoiseSource {
  virtual ~NoiseSource() = default;
  /// Fills `out` with independent N(0, 1) values.
  virtual void fill_normal(std::span<float> out) = 0;
};

/// Hands out pre-recorded draws in order (e.g. a fixture's `variance_noise` rows).
/// @code
///   auto noise = fd::ReplayNoise::from_rows(be, file.load(be, "variance_noise"));   // [steps, ...]
///   x = sched.step(be, eps, i, x, &noise);
/// @endcode
class ReplayNoise : public NoiseSource {
 public:
  ReplayNoise() = default;
  explicit ReplayNoise(std::vector<std::vector<float>> draws) : draws_(std::move(draws)) {}

  /// One draw per row of `stacked` ([draws, ...]).
  template <class B>
  static ReplayNoise from_rows(B const& be, Tensor<B> const& stacked) {
    if (stacked.rank() < 1) fail(Errc::kShapeMismatch, "ReplayNoise: stacked noise must have a leading draw axis");
    std::vector<float> const all = stacked.to_vector_f32(be);
    std::size_t const rows = static_cast<std::size_t>(stacked.dim(0));
    std::size_t const per = rows == 0 ? 0 : all.size() / rows;
    std::vector<std::vector<float>> draws(rows);
    for (std::size_t r = 0; r < rows; ++r) {
      draws[r].assign(all.begin() + static_cast<std::ptrdiff_t>(r * per),
                      all.begin() + static_cast<std::ptrdiff_t>((r + 1) * per));
    }
    return ReplayNoise(std::move(draws));
  }

  void push(std::vector<float> draw) { draws_.push_back(std::move(draw)); }

  /// @pre the next recorded draw has out.size() values (kShapeMismatch otherwise); one is left
  /// (kInvalidArgument otherwise).
  void fill_normal(std::span<float> out) override {
    if (next_ >= draws_.size()) {
      fail(Errc::kInvalidArgument, "ReplayNoise: draw " + std::to_string(next_ + 1) + " requested, but only " +
                                       std::to_string(draws_.size()) + " were recorded");
    }
    auto const& d = draws_[next_];
    if (d.size() != out.size()) {
      fail(Errc::kShapeMismatch, "ReplayNoise: draw " + std::to_string(next_) + " holds " + std::to_string(d.size()) +
                                     " values, the step asks for " + std::to_string(out.size()));
    }
    std::copy(d.begin(), d.end(), out.begin());
    ++next_;
  }

  std::size_t used() const noexcept { return next_; }
  std::size_t size() const noexcept { return draws_.size(); }

 private:
  std::vector<std::vector<float>> draws_;
  std::size_t next_ = 0;
};

// ================================================================================================
// The customization point
// ================================================================================================

namespace sched {

/// Policy tags: each selects one diffusers v0.23 scheduler algorithm.
struct Ddim {};            ///< DDIMScheduler (eta = 0: deterministic DDIM; eta > 0 draws noise)
struct Pndm {};            ///< PNDMScheduler (PLMS; Runge-Kutta warm-up unless skip_prk_steps)
struct DpmSolverPP2M {};   ///< DPMSolverMultistepScheduler (DPM-Solver++ 2M by default)
struct Ddpm {};            ///< DDPMScheduler (ancestral sampling; learned_range variance for IF)
struct Euler {};           ///< EulerDiscreteScheduler (s_churn = 0)
struct EulerAncestral {};  ///< EulerAncestralDiscreteScheduler

}  // namespace sched

//! `Scheduler<Policy>`: one diffusion sampler, selected by a tag from fd::sched.
//!
//! A specialization must provide (see docs/extending.md#schedulers):
//!   - `explicit Scheduler(SchedulerConfig const&)`                 rejects unsupported fields with kConfig
//!   - `static constexpr bool kStochastic`                          step may draw from a NoiseSource
//!   - `static constexpr bool kScalesInput`                         scale_model_input is not the identity
//!   - `void set_timesteps(int num_inference_steps)`                also resets the history
//!   - `std::vector<int> const& timesteps() const`                  one entry per model call
//!   - `std::vector<float> const& timesteps_f32() const`            the values to feed the model
//!   - `float init_noise_sigma() const`                             x_T = randn * init_noise_sigma
//!   - `Tensor<B> scale_model_input(B const&, Tensor<B> const& x, int step_index) const`
//!   - `Tensor<B> step(B const&, Tensor<B> const& model_output, int step_index, Tensor<B> const& sample,
//!                     NoiseSource* noise = nullptr)`               the previous sample
//!   - `void reset()`                                               forgets the history, keeps the timesteps
//!   - `bool uses_noise() const`                                    this configuration consumes noise
//! Optional: `set_eta`/`eta` (DDIM), `pred_original_sample(be)` (DDIM, DDPM, Euler, Euler ancestral).
template <class Policy>
class Scheduler {
  static_assert(fd::dependent_false<Policy>, "No Scheduler for this policy tag; see docs/extending.md#schedulers");
};

// ================================================================================================
// Shared numerics
// ================================================================================================

namespace sched::detail {

// Products and sums are kept apart where the reference rounds them separately: with -march=native
// the compiler may otherwise fuse a*b+c into one FMA, which changes the last bit of the tables.
inline float mul_rounded(float a, float b) {
  volatile float p = a * b;
  return p;
}
inline double mul_rounded(double a, double b) {
  volatile double p = a * b;
  return p;
}

/// torch.linspace(start, end, steps, dtype=float32) on an x86-64 CPU (AVX2 build, PyTorch 1.13/2.x).
/// Bit-exact: start/end are rounded to float, step = (end - start) / (steps - 1) in float; the
/// kernel fills chunks of 8 lanes whose base is fma(step, i0, start) for i0 < steps / 2 and
/// fma(-step, steps - 1 - i0, end) after that, lane j being base + j * step; the elements past the
/// last pair of chunks come from the scalar loop, each from the same two formulas.
inline std::vector<float> torch_linspace_f32(double start_d, double end_d, int steps) {
  std::vector<float> out(static_cast<std::size_t>(std::max(steps, 0)));
  if (steps <= 0) return out;
  float const start = static_cast<float>(start_d);
  float const end = static_cast<float>(end_d);
  if (steps == 1) {
    out[0] = start;
    return out;
  }
  float const step = (end - start) / static_cast<float>(steps - 1);
  int const halfway = steps / 2;
  auto point = [&](int i) {
    return i < halfway ? std::fma(step, static_cast<float>(i), start)
                       : std::fma(-step, static_cast<float>(steps - i - 1), end);
  };
  constexpr int kLanes = 8;
  int const vec_end = steps - steps % (2 * kLanes);
  for (int i0 = 0; i0 < vec_end; i0 += kLanes) {
    float const base = point(i0);
    out[static_cast<std::size_t>(i0)] = base;
    for (int j = 1; j < kLanes; ++j) {
      out[static_cast<std::size_t>(i0 + j)] = base + mul_rounded(static_cast<float>(j), step);
    }
  }
  for (int i = vec_end; i < steps; ++i) out[static_cast<std::size_t>(i)] = point(i);
  return out;
}

/// numpy.linspace(start, stop, num) in float64: i * ((stop - start) / (num - 1)) + start, last = stop.
inline std::vector<double> np_linspace(double start, double stop, int num) {
  std::vector<double> y(static_cast<std::size_t>(std::max(num, 0)));
  if (num <= 0) return y;
  if (num == 1) {
    y[0] = start;
    return y;
  }
  double const step = (stop - start) / static_cast<double>(num - 1);
  for (int i = 0; i < num; ++i) y[static_cast<std::size_t>(i)] = mul_rounded(static_cast<double>(i), step) + start;
  y.back() = stop;
  return y;
}

/// numpy.arange(start, 0, -step) for a positive float step: numpy fills start, start - step, then
/// start + i * delta with delta = (start - step) - start; the length is ceil(start / step).
inline std::vector<double> np_arange_down(double start, double step) {
  double const neg = -step;
  auto const len = static_cast<std::int64_t>(std::ceil((0.0 - start) / neg));
  std::vector<double> v(static_cast<std::size_t>(std::max<std::int64_t>(len, 0)));
  if (v.empty()) return v;
  v[0] = start;
  if (v.size() > 1) v[1] = start + neg;
  double const delta = (v.size() > 1 ? v[1] : start + neg) - start;
  for (std::size_t i = 2; i < v.size(); ++i) v[i] = start + mul_rounded(static_cast<double>(i), delta);
  return v;
}

/// numpy.round (half to even).
inline double np_round(double x) { return std::nearbyint(x); }

/// numpy.interp(x, arange(len(fp)), fp) in float64.
inline double np_interp_arange(double x, std::vector<float> const& fp) {
  auto const n = static_cast<std::int64_t>(fp.size());
  if (std::isnan(x)) return x;
  if (x < 0) return fp.front();
  if (x >= static_cast<double>(n - 1)) return fp.back();
  auto const j = static_cast<std::int64_t>(std::floor(x));
  double const xj = static_cast<double>(j);
  double const yj = fp[static_cast<std::size_t>(j)];
  if (xj == x) return yj;
  double const yk = fp[static_cast<std::size_t>(j + 1)];
  double const slope = (yk - yj) / 1.0;
  return mul_rounded(slope, x - xj) + yj;
}

/// Betas, alphas and alphas_cumprod as diffusers v0.23 builds them (float32 torch tensors).
struct NoiseSchedule {
  std::vector<float> betas;
  std::vector<float> alphas;          ///< 1 - betas (float32)
  std::vector<float> alphas_cumprod;  ///< torch.cumprod: double accumulation, each prefix stored as float

  /// alphas_cumprod[t] with a range check naming the caller.
  float alpha_cumprod(int t) const {
    if (t < 0 || t >= static_cast<int>(alphas_cumprod.size())) {
      fail(Errc::kInvalidArgument, "timestep " + std::to_string(t) + " outside the schedule [0, " +
                                       std::to_string(alphas_cumprod.size()) + ")");
    }
    return alphas_cumprod[static_cast<std::size_t>(t)];
  }
  /// sqrt((1 - alphas_cumprod) / alphas_cumprod) in float32 (the Karras-style sigma of every training step).
  std::vector<float> train_sigmas() const {
    std::vector<float> s(alphas_cumprod.size());
    for (std::size_t i = 0; i < s.size(); ++i) s[i] = std::sqrt((1.0f - alphas_cumprod[i]) / alphas_cumprod[i]);
    return s;
  }
};

/// The cosine schedule's alpha-bar (Nichol & Dhariwal 2021, eq. 17, s = 0.008), in float64.
inline double cosine_alpha_bar(double t) {
  // Python's `c ** 2` calls libm pow; a volatile exponent keeps the compiler from turning it into c * c.
  volatile double two = 2.0;
  return std::pow(std::cos((t + 0.008) / 1.008 * std::numbers::pi / 2), static_cast<double>(two));
}

/// Builds the float32 tables of a config. Bit-exact against diffusers v0.23 / torch on x86-64 CPUs for
/// linear, scaled_linear (torch_linspace_f32) and squaredcos_cap_v2 (float64 then float32).
inline NoiseSchedule make_noise_schedule(SchedulerConfig const& c) {
  NoiseSchedule s;
  int const T = c.num_train_timesteps;
  if (!c.trained_betas.empty()) {
    s.betas = c.trained_betas;
  } else {
    switch (c.beta_schedule) {
      case BetaSchedule::kLinear: s.betas = torch_linspace_f32(c.beta_start, c.beta_end, T); break;
      case BetaSchedule::kScaledLinear: {
        // Python's `beta ** 0.5` is libm pow, kept as such (not sqrt) for the last bit.
        volatile double half = 0.5;
        s.betas = torch_linspace_f32(std::pow(c.beta_start, static_cast<double>(half)),
                                     std::pow(c.beta_end, static_cast<double>(half)), T);
        for (float& b : s.betas) b = b * b;
        break;
      }
      case BetaSchedule::kSquaredCosCapV2: {
        s.betas.resize(static_cast<std::size_t>(T));
        for (int i = 0; i < T; ++i) {
          double const t1 = static_cast<double>(i) / T;
          double const t2 = static_cast<double>(i + 1) / T;
          double const b = std::min(1.0 - cosine_alpha_bar(t2) / cosine_alpha_bar(t1), 0.999);
          s.betas[static_cast<std::size_t>(i)] = static_cast<float>(b);
        }
        break;
      }
    }
  }
  s.alphas.resize(s.betas.size());
  s.alphas_cumprod.resize(s.betas.size());
  double acc = 1.0;
  for (std::size_t i = 0; i < s.betas.size(); ++i) {
    s.alphas[i] = 1.0f - s.betas[i];
    acc *= static_cast<double>(s.alphas[i]);
    s.alphas_cumprod[i] = static_cast<float>(acc);
  }
  return s;
}

/// torch.lerp for float.
inline float torch_lerp(float a, float b, float w) {
  return std::fabs(w) < 0.5f ? a + w * (b - a) : b - (b - a) * (1.0f - w);
}

/// torch.quantile(v, q) with linear interpolation, q and the rank in float32. Sorts `v`.
inline float torch_quantile(std::vector<float>& v, float q) {
  std::sort(v.begin(), v.end());
  float const rank = q * static_cast<float>(v.size() - 1);
  auto const below = static_cast<std::size_t>(rank);
  float const weight = rank - static_cast<float>(below);
  auto const above = static_cast<std::size_t>(std::ceil(rank));
  return torch_lerp(v[below], v[std::min(above, v.size() - 1)], weight);
}

/// Dynamic thresholding (Saharia et al. 2022, "Imagen", sec. 2.3) of x0 in place, per sample:
/// s = clamp(quantile(|x0|, ratio), 1, max_value); x0 = clamp(x0, -s, s) / s. `batch` samples of
/// equal size. Returns the thresholds.
inline std::vector<float> dynamic_threshold(std::vector<float>& x0, std::int64_t batch, float ratio, float max_value) {
  std::vector<float> thresholds;
  if (batch <= 0 || x0.empty()) return thresholds;
  std::size_t const per = x0.size() / static_cast<std::size_t>(batch);
  std::vector<float> a(per);
  for (std::int64_t b = 0; b < batch; ++b) {
    float* p = x0.data() + static_cast<std::size_t>(b) * per;
    for (std::size_t i = 0; i < per; ++i) a[i] = std::fabs(p[i]);
    float s = torch_quantile(a, ratio);
    s = std::min(std::max(s, 1.0f), max_value);
    for (std::size_t i = 0; i < per; ++i) p[i] = std::min(std::max(p[i], -s), s) / s;
    thresholds.push_back(s);
  }
  return thresholds;
}

/// Host copy of a floating tensor; kDTypeMismatch for integer data.
template <class B>
std::vector<float> host_values(B const& be, Tensor<B> const& t, std::string_view who) {
  if (!t.defined()) fail(Errc::kInvalidArgument, std::string(who) + " is undefined");
  if (!is_floating(t.dtype())) {
    fail(Errc::kDTypeMismatch, std::string(who) + " must be a floating tensor, got " + std::string(dtype_name(t.dtype())));
  }
  return t.to_vector_f32(be);
}

/// A tensor of like's shape and dtype holding `values` (computed in float32).
template <class B>
Tensor<B> tensor_like(B const& be, std::vector<float> const& values, Tensor<B> const& like) {
  Tensor<B> out = Tensor<B>::from_host(be, like.shape(), values);
  if (like.dtype() != DType::kF32) return out.to(be, like.dtype());
  return out;
}

/// Checks that model_output matches sample ([N, C, ...]), allowing `channel_factor` times the channels.
template <class B>
void check_step_shapes(char const* who, Tensor<B> const& model_output, Tensor<B> const& sample, bool allow_double = false) {
  if (model_output.shape() == sample.shape()) return;
  if (allow_double && model_output.rank() == sample.rank() && sample.rank() >= 2) {
    Shape twice = sample.shape();
    twice[1] *= 2;
    if (model_output.shape() == twice) return;
  }
  fail(Errc::kShapeMismatch, std::string(who) + ": model_output " + model_output.shape().str() +
                                 " does not match sample " + sample.shape().str() +
                                 (allow_double ? " (or twice its channels for a learned variance)" : ""));
}

/// The first `c` of every `2c` channels of [N, 2c, ...] values (eps), and the rest (variance values).
inline std::pair<std::vector<float>, std::vector<float>> split_channels(std::vector<float> const& v, Shape const& sample) {
  std::int64_t const n = sample[0];
  std::int64_t const per = sample.numel() / std::max<std::int64_t>(n, 1);
  std::vector<float> first, second;
  first.reserve(static_cast<std::size_t>(sample.numel()));
  second.reserve(static_cast<std::size_t>(sample.numel()));
  for (std::int64_t b = 0; b < n; ++b) {
    auto const base = v.begin() + static_cast<std::ptrdiff_t>(b * 2 * per);
    first.insert(first.end(), base, base + static_cast<std::ptrdiff_t>(per));
    second.insert(second.end(), base + static_cast<std::ptrdiff_t>(per), base + static_cast<std::ptrdiff_t>(2 * per));
  }
  return {std::move(first), std::move(second)};
}

/// Draws sample-sized noise, or fails naming the scheduler when none was given.
inline std::vector<float> draw_noise(NoiseSource* noise, std::size_t n, char const* who) {
  if (noise == nullptr) {
    fail(Errc::kInvalidArgument, std::string(who) + ": this step is stochastic and needs a NoiseSource (got nullptr)");
  }
  std::vector<float> z(n);
  noise->fill_normal(z);
  return z;
}

/// Integer timesteps of the discrete schedulers for a spacing (DDIM, DDPM; PNDM and DPM adapt them).
/// Returned in descending order, as `scheduler.timesteps`.
inline std::vector<int> spaced_timesteps(TimestepSpacing spacing, int T, int n, int steps_offset) {
  std::vector<int> ts;
  ts.reserve(static_cast<std::size_t>(n));
  switch (spacing) {
    case TimestepSpacing::kLinspace: {
      auto const lin = np_linspace(0.0, static_cast<double>(T - 1), n);
      for (auto it = lin.rbegin(); it != lin.rend(); ++it) ts.push_back(static_cast<int>(np_round(*it)));
      break;
    }
    case TimestepSpacing::kLeading: {
      int const ratio = T / n;
      for (int k = n - 1; k >= 0; --k) ts.push_back(k * ratio + steps_offset);
      break;
    }
    case TimestepSpacing::kTrailing: {
      for (double v : np_arange_down(static_cast<double>(T), static_cast<double>(T) / n)) {
        ts.push_back(static_cast<int>(np_round(v)) - 1);
      }
      break;
    }
  }
  return ts;
}

/// State every specialization shares: config, tables, timesteps, the call-order check.
class SchedulerBase {
 public:
  SchedulerConfig const& config() const noexcept { return config_; }
  NoiseSchedule const& schedule() const noexcept { return schedule_; }
  /// One entry per model call (integers; Euler schedulers: rounded, see timesteps_f32()).
  std::vector<int> const& timesteps() const noexcept { return timesteps_; }
  /// The timestep values to give the model (fractional for the Euler schedulers).
  std::vector<float> const& timesteps_f32() const noexcept { return timesteps_f32_; }
  int num_inference_steps() const noexcept { return num_inference_steps_; }

 protected:
  SchedulerBase(SchedulerConfig const& c, SchedulerKind as) : config_(c) {
    std::string const cls(scheduler_class_name(as));
    if (config_.num_train_timesteps <= 0) {
      config_.reject("num_train_timesteps", "must be positive, got " + std::to_string(config_.num_train_timesteps));
    }
    if (!config_.trained_betas.empty() &&
        static_cast<int>(config_.trained_betas.size()) != config_.num_train_timesteps) {
      config_.reject("trained_betas", "has " + std::to_string(config_.trained_betas.size()) +
                                          " entries, but num_train_timesteps is " +
                                          std::to_string(config_.num_train_timesteps));
    }
    if (config_.rescale_betas_zero_snr) {
      config_.reject("rescale_betas_zero_snr", "= true is not implemented (" + cls + ")");
    }
    schedule_ = make_noise_schedule(config_);
  }

  /// Validates N and fills the timesteps from integer values.
  void check_steps(int n, char const* who) const {
    if (n <= 0 || n > config_.num_train_timesteps) {
      fail(Errc::kInvalidArgument, std::string(who) + "::set_timesteps: num_inference_steps " + std::to_string(n) +
                                       " must be in [1, num_train_timesteps = " +
                                       std::to_string(config_.num_train_timesteps) + "]");
    }
  }
  void assign_timesteps(std::vector<int> ts) {
    timesteps_ = std::move(ts);
    timesteps_f32_.assign(timesteps_.begin(), timesteps_.end());
  }

  /// The step index must address a call; ordered schedulers also need consecutive calls after the first.
  void begin_step(int step_index, bool ordered, char const* who) {
    if (timesteps_.empty()) fail(Errc::kInvalidArgument, std::string(who) + "::step: call set_timesteps first");
    if (step_index < 0 || step_index >= static_cast<int>(timesteps_.size())) {
      fail(Errc::kInvalidArgument, std::string(who) + "::step: step_index " + std::to_string(step_index) +
                                       " outside [0, " + std::to_string(timesteps_.size()) + ")");
    }
    if (ordered && next_index_ >= 0 && step_index != next_index_) {
      fail(Errc::kInvalidArgument, std::string(who) + "::step: step_index " + std::to_string(step_index) +
                                       " out of order, expected " + std::to_string(next_index_) +
                                       " (this scheduler keeps a history; call reset() to start over)");
    }
  }
  void end_step(int step_index) { next_index_ = step_index + 1; }
  void reset_order() { next_index_ = -1; }

  SchedulerConfig config_;
  NoiseSchedule schedule_;
  std::vector<int> timesteps_;
  std::vector<float> timesteps_f32_;
  int num_inference_steps_ = 0;
  int next_index_ = -1;
};

/// Keeps the x0 prediction of the last step for pred_original_sample().
class PredOriginal {
 public:
  template <class B>
  Tensor<B> pred_original_sample(B const& be) const {
    if (values_.empty()) fail(Errc::kInvalidArgument, "pred_original_sample: no step has been taken yet");
    return Tensor<B>::from_host(be, shape_, values_);
  }

 protected:
  void keep(std::vector<float> v, Shape const& s) {
    values_ = std::move(v);
    shape_ = s;
  }
  void forget() { values_.clear(); }

 private:
  std::vector<float> values_;
  Shape shape_;
};

// ---- config parsing ----------------------------------------------------------------------------

class SchedulerJsonReader {
 public:
  SchedulerJsonReader(nlohmann::json const& j, std::string const& source) : j_(j), source_(source) {
    if (!j_.is_object()) fail(Errc::kConfig, source_ + ": scheduler config is not a JSON object");
  }
  [[noreturn]] void bad(std::string const& key, std::string const& why) const {
    fail(Errc::kConfig, source_ + ": field '" + key + "' " + why);
  }
  bool present(std::string const& key) const { return j_.contains(key) && !j_.at(key).is_null(); }
  nlohmann::json const& at(std::string const& key) const { return j_.at(key); }

  void get(std::string const& key, int& out) {
    if (!take(key)) return;
    auto const& v = j_.at(key);
    if (!v.is_number_integer()) bad(key, "must be an integer, got " + v.dump());
    out = v.get<int>();
  }
  void get(std::string const& key, bool& out) {
    if (!take(key)) return;
    auto const& v = j_.at(key);
    if (!v.is_boolean()) bad(key, "must be true or false, got " + v.dump());
    out = v.get<bool>();
  }
  void get(std::string const& key, std::optional<bool>& out) {
    bool b = false;
    if (!present(key)) {
      take(key);
      return;
    }
    get(key, b);
    out = b;
  }
  /// Numbers, or the strings "inf" / "-inf" (how strict JSON writers spell infinities).
  void get(std::string const& key, double& out) {
    if (!take(key)) return;
    auto const& v = j_.at(key);
    if (v.is_number()) {
      out = v.get<double>();
    } else if (v.is_string() && (v.get<std::string>() == "inf" || v.get<std::string>() == "Infinity")) {
      out = std::numeric_limits<double>::infinity();
    } else if (v.is_string() && (v.get<std::string>() == "-inf" || v.get<std::string>() == "-Infinity")) {
      out = -std::numeric_limits<double>::infinity();
    } else {
      bad(key, "must be a number, got " + v.dump());
    }
  }
  void get(std::string const& key, float& out) {
    double d = out;
    get(key, d);
    out = static_cast<float>(d);
  }
  /// A string field mapped through `choices` ({"name", value}); the message lists them.
  template <class E>
  bool get_enum(std::string const& key, E& out, std::initializer_list<std::pair<char const*, E>> choices) {
    if (!take(key)) return false;
    auto const& v = j_.at(key);
    std::string known;
    for (auto const& [name, value] : choices) known += (known.empty() ? "" : ", ") + std::string(name);
    if (!v.is_string()) bad(key, "must be a string (one of " + known + "), got " + v.dump());
    std::string const s = v.get<std::string>();
    for (auto const& [name, value] : choices) {
      if (s == name) {
        out = value;
        return true;
      }
    }
    bad(key, "= \"" + s + "\" is not supported (known: " + known + ")");
  }
  void mark(std::string const& key) { seen_.push_back(key); }

  /// Keys starting with '_' are metadata; other unknown keys must be null or false.
  void reject_unknown() const {
    for (auto it = j_.begin(); it != j_.end(); ++it) {
      std::string const& k = it.key();
      if (k.empty() || k[0] == '_') continue;
      if (std::find(seen_.begin(), seen_.end(), k) != seen_.end()) continue;
      auto const& v = it.value();
      if (v.is_null() || (v.is_boolean() && !v.get<bool>())) continue;
      fail(Errc::kConfig, source_ + ": unknown field '" + k + "' = " + v.dump() +
                              " (fd's schedulers implement the diffusers 0.23 DDIM, PNDM, DPMSolverMultistep, DDPM, "
                              "EulerDiscrete and EulerAncestralDiscrete options)");
    }
  }

 private:
  // Records the key; true when it holds a non-null value.
  bool take(std::string const& key) {
    seen_.push_back(key);
    return present(key);
  }
  nlohmann::json const& j_;
  std::string const& source_;
  std::vector<std::string> seen_;
};

}  // namespace sched::detail

inline SchedulerConfig SchedulerConfig::from_json(nlohmann::json const& j, std::string source,
                                                  std::optional<SchedulerKind> as) {
  SchedulerConfig c;
  c.source = std::move(source);
  sched::detail::SchedulerJsonReader r(j, c.source);

  // `_class_name` picks the class unless the caller converts the config to another one.
  r.mark("_class_name");
  if (as) {
    c.kind = *as;
  } else if (!r.present("_class_name")) {
    r.bad("_class_name", "is missing (it names the scheduler class, e.g. \"DDIMScheduler\")");
  } else {
    r.get_enum("_class_name", c.kind,
               {{"DDIMScheduler", SchedulerKind::kDdim},
                {"PNDMScheduler", SchedulerKind::kPndm},
                {"DPMSolverMultistepScheduler", SchedulerKind::kDpmSolverMultistep},
                {"DDPMScheduler", SchedulerKind::kDdpm},
                {"EulerDiscreteScheduler", SchedulerKind::kEulerDiscrete},
                {"EulerAncestralDiscreteScheduler", SchedulerKind::kEulerAncestralDiscrete}});
  }

  r.get("num_train_timesteps", c.num_train_timesteps);
  r.get("beta_start", c.beta_start);
  r.get("beta_end", c.beta_end);
  r.get_enum("beta_schedule", c.beta_schedule,
             {{"linear", BetaSchedule::kLinear},
              {"scaled_linear", BetaSchedule::kScaledLinear},
              {"squaredcos_cap_v2", BetaSchedule::kSquaredCosCapV2}});
  r.mark("trained_betas");
  if (r.present("trained_betas")) {
    auto const& v = r.at("trained_betas");
    if (!v.is_array() || v.empty()) r.bad("trained_betas", "must be null or a non-empty list of numbers");
    for (auto const& e : v) {
      if (!e.is_number()) r.bad("trained_betas", "must be a list of numbers, got an element " + e.dump());
      c.trained_betas.push_back(static_cast<float>(e.get<double>()));
    }
  }
  r.get_enum("prediction_type", c.prediction_type,
             {{"epsilon", PredictionType::kEpsilon},
              {"v_prediction", PredictionType::kVPrediction},
              {"sample", PredictionType::kSample}});
  {
    TimestepSpacing s{};
    if (r.get_enum("timestep_spacing", s,
                   {{"leading", TimestepSpacing::kLeading},
                    {"trailing", TimestepSpacing::kTrailing},
                    {"linspace", TimestepSpacing::kLinspace}})) {
      c.timestep_spacing = s;
    }
  }
  r.get("steps_offset", c.steps_offset);
  r.get("set_alpha_to_one", c.set_alpha_to_one);
  r.get("clip_sample", c.clip_sample);
  r.get("clip_sample_range", c.clip_sample_range);
  r.get("thresholding", c.thresholding);
  r.get("dynamic_thresholding_ratio", c.dynamic_thresholding_ratio);
  r.get("sample_max_value", c.sample_max_value);
  {
    VarianceType v{};
    if (r.get_enum("variance_type", v,
                   {{"fixed_small", VarianceType::kFixedSmall},
                    {"fixed_small_log", VarianceType::kFixedSmallLog},
                    {"fixed_large", VarianceType::kFixedLarge},
                    {"fixed_large_log", VarianceType::kFixedLargeLog},
                    {"learned", VarianceType::kLearned},
                    {"learned_range", VarianceType::kLearnedRange}})) {
      c.variance_type = v;
    }
  }
  r.get("solver_order", c.solver_order);
  // diffusers maps the DEIS/UniPC names onto DPM-Solver++ midpoint when converting configs.
  r.get_enum("algorithm_type", c.algorithm_type,
             {{"dpmsolver++", DpmAlgorithm::kDpmSolverPP},
              {"dpmsolver", DpmAlgorithm::kDpmSolver},
              {"sde-dpmsolver++", DpmAlgorithm::kSdeDpmSolverPP},
              {"sde-dpmsolver", DpmAlgorithm::kSdeDpmSolver},
              {"deis", DpmAlgorithm::kDpmSolverPP}});
  r.get_enum("solver_type", c.solver_type,
             {{"midpoint", DpmSolverType::kMidpoint},
              {"heun", DpmSolverType::kHeun},
              {"logrho", DpmSolverType::kMidpoint},
              {"bh1", DpmSolverType::kMidpoint},
              {"bh2", DpmSolverType::kMidpoint}});
  r.get("lower_order_final", c.lower_order_final);
  r.get("euler_at_final", c.euler_at_final);
  r.get("use_karras_sigmas", c.use_karras_sigmas);
  r.get("use_lu_lambdas", c.use_lu_lambdas);
  r.get("lambda_min_clipped", c.lambda_min_clipped);
  r.get("skip_prk_steps", c.skip_prk_steps);
  r.get_enum("interpolation_type", c.interpolation_type,
             {{"linear", InterpolationType::kLinear}, {"log_linear", InterpolationType::kLogLinear}});
  r.get("rescale_betas_zero_snr", c.rescale_betas_zero_snr);
  r.reject_unknown();

  if (c.num_train_timesteps <= 0) r.bad("num_train_timesteps", "must be positive");
  if (!c.trained_betas.empty() && static_cast<int>(c.trained_betas.size()) != c.num_train_timesteps) {
    r.bad("trained_betas", "has " + std::to_string(c.trained_betas.size()) + " entries, num_train_timesteps is " +
                               std::to_string(c.num_train_timesteps));
  }
  if (c.trained_betas.empty() && !(c.beta_start > 0 && c.beta_end > 0) &&
      c.beta_schedule == BetaSchedule::kScaledLinear) {
    r.bad("beta_start", "and beta_end must be positive for scaled_linear");
  }
  return c;
}

inline SchedulerConfig SchedulerConfig::from_file(std::filesystem::path const& path, std::optional<SchedulerKind> as) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(Errc::kIo, path.string() + ": cannot open scheduler config");
  std::ostringstream ss;
  ss << f.rdbuf();
  nlohmann::json j;
#if defined(FD_NO_EXCEPTIONS)
  j = nlohmann::json::parse(ss.str(), nullptr, false);
  if (j.is_discarded()) fail(Errc::kFormat, path.string() + ": not valid JSON");
#else
  try {
    j = nlohmann::json::parse(ss.str());
  } catch (nlohmann::json::exception const& e) {
    fail(Errc::kFormat, path.string() + ": not valid JSON (" + e.what() + ")");
  }
#endif
  return from_json(j, path.string(), as);
}

}  // namespace fd
