#pragma once
/// @file
/// Scheduler<sched::Euler>: EulerDiscreteScheduler of diffusers v0.23 (Karras et al. 2022, "Elucidating
/// the Design Space of Diffusion-Based Generative Models", algorithm 2 with s_churn = 0). Works in the
/// sigma parametrisation: x_T = randn * init_noise_sigma, and the model sees x / sqrt(sigma^2 + 1).

#include "fd/schedulers/scheduler.hpp"

namespace fd {

namespace sched::detail {

/// Timesteps (float32, possibly fractional) and sigmas shared by the two Euler schedulers.
class EulerBase : public SchedulerBase, public PredOriginal {
 public:
  /// sigma of every timestep, then 0.
  std::vector<float> const& sigmas() const noexcept { return sigmas_; }

  /// max(sigmas) for linspace/trailing spacing, sqrt(max^2 + 1) for leading (diffusers 0.23).
  float init_noise_sigma() const {
    if (sigmas_.empty()) fail(Errc::kInvalidArgument, name_ + "::init_noise_sigma: call set_timesteps first");
    float const m = *std::max_element(sigmas_.begin(), sigmas_.end());
    if (spacing_ == TimestepSpacing::kLeading) return std::sqrt(m * m + 1.0f);
    return m;
  }

  /// x / sqrt(sigma_i^2 + 1) (float32): what the model receives at step i.
  template <class B>
  Tensor<B> scale_model_input(B const& be, Tensor<B> const& x, int step_index) const {
    check_index(step_index, "scale_model_input");
    auto v = host_values(be, x, name_ + "::scale_model_input: sample");
    float const d = input_divisor(step_index);
    for (float& e : v) e = e / d;
    return tensor_like(be, v, x);
  }

  /// sqrt(sigma_i^2 + 1) in float32.
  float input_divisor(int step_index) const {
    float const s = sigmas_.at(static_cast<std::size_t>(step_index));
    return std::sqrt(s * s + 1.0f);
  }

 protected:
  EulerBase(SchedulerConfig const& c, SchedulerKind kind) : SchedulerBase(c, kind), name_(scheduler_class_name(kind)) {
    if (config_.use_karras_sigmas) {
      config_.reject("use_karras_sigmas", "= true is not implemented (" + name_ + " uses the interpolated training "
                                          "sigmas only)");
    }
    if (config_.interpolation_type != InterpolationType::kLinear) {
      config_.reject("interpolation_type", "= \"log_linear\" is not implemented (linear)");
    }
    spacing_ = config_.timestep_spacing.value_or(TimestepSpacing::kLinspace);
  }

  void make_timesteps(int n) {
    check_steps(n, name_.c_str());
    num_inference_steps_ = n;
    int const T = config_.num_train_timesteps;
    std::vector<float> ts;
    switch (spacing_) {
      case TimestepSpacing::kLinspace: {
        auto const lin = np_linspace(0.0, static_cast<double>(T - 1), n);
        for (auto it = lin.rbegin(); it != lin.rend(); ++it) ts.push_back(static_cast<float>(*it));
        break;
      }
      case TimestepSpacing::kLeading: {
        int const ratio = T / n;
        for (int k = n - 1; k >= 0; --k) ts.push_back(static_cast<float>(k * ratio) + static_cast<float>(config_.steps_offset));
        break;
      }
      case TimestepSpacing::kTrailing: {
        for (double v : np_arange_down(static_cast<double>(T), static_cast<double>(T) / n)) {
          ts.push_back(static_cast<float>(np_round(v)) - 1.0f);
        }
        break;
      }
    }
    // Sigmas interpolated linearly (in float64, numpy.interp) at the fractional timesteps, then 0.
    auto const train = schedule_.train_sigmas();
    sigmas_.clear();
    for (float t : ts) sigmas_.push_back(static_cast<float>(np_interp_arange(static_cast<double>(t), train)));
    sigmas_.push_back(0.0f);
    timesteps_f32_ = ts;
    timesteps_.clear();
    for (float t : ts) timesteps_.push_back(static_cast<int>(std::lround(t)));
  }

  void check_index(int step_index, char const* what) const {
    if (timesteps_.empty()) fail(Errc::kInvalidArgument, name_ + "::" + what + ": call set_timesteps first");
    if (step_index < 0 || step_index >= static_cast<int>(timesteps_.size())) {
      fail(Errc::kInvalidArgument, name_ + "::" + what + ": step_index " + std::to_string(step_index) +
                                       " outside [0, " + std::to_string(timesteps_.size()) + ")");
    }
  }

  std::string name_;
  TimestepSpacing spacing_ = TimestepSpacing::kLinspace;
  std::vector<float> sigmas_;
};

}  // namespace sched::detail

/// Euler (deterministic, s_churn = 0). Stateless given the step index. Like diffusers it draws one
/// sample-sized noise tensor per step when a NoiseSource is given (keeping a shared random stream in
/// step with the reference), but with s_churn = 0 the draw never enters the result; nullptr is fine.
/// `timesteps()` holds the fractional timesteps rounded to the nearest integer: give the model
/// `timesteps_f32()`.
template <>
class Scheduler<sched::Euler> : public sched::detail::EulerBase {
 public:
  static constexpr bool kStochastic = false;
  static constexpr bool kScalesInput = true;

  /// @throws fd::error kConfig for use_karras_sigmas true or interpolation_type log_linear.
  explicit Scheduler(SchedulerConfig const& config) : EulerBase(config, SchedulerKind::kEulerDiscrete) {}

  void set_timesteps(int num_inference_steps) {
    make_timesteps(num_inference_steps);
    reset();
  }

  /// The step from sigmas()[i] to sigmas()[i + 1]; `sample` is the unscaled x.
  template <class B>
  Tensor<B> step(B const& be, Tensor<B> const& model_output, int step_index, Tensor<B> const& sample,
                 NoiseSource* noise = nullptr) {
    check_index(step_index, "step");
    sched::detail::check_step_shapes("EulerDiscreteScheduler::step", model_output, sample);
    auto const x = sched::detail::host_values(be, sample, "EulerDiscreteScheduler::step: sample");
    auto const e = sched::detail::host_values(be, model_output, "EulerDiscreteScheduler::step: model_output");
    if (noise != nullptr) {
      std::vector<float> unused(x.size());
      noise->fill_normal(unused);
    }
    std::size_t const n = x.size();
    float const sigma = sigmas_[static_cast<std::size_t>(step_index)];
    float const sigma_hat = sigma * (0.0f + 1.0f);
    std::vector<float> x0(n);
    switch (config_.prediction_type) {
      case PredictionType::kEpsilon:
        for (std::size_t i = 0; i < n; ++i) x0[i] = x[i] - sigma_hat * e[i];
        break;
      case PredictionType::kSample: x0 = e; break;
      case PredictionType::kVPrediction: {
        float const c_out = -sigma / std::sqrt(sigma * sigma + 1.0f);
        float const c_skip_div = sigma * sigma + 1.0f;
        for (std::size_t i = 0; i < n; ++i) x0[i] = e[i] * c_out + x[i] / c_skip_div;
        break;
      }
    }
    float const dt = sigmas_[static_cast<std::size_t>(step_index) + 1] - sigma_hat;
    std::vector<float> out(n);
    for (std::size_t i = 0; i < n; ++i) {
      float const derivative = (x[i] - x0[i]) / sigma_hat;
      out[i] = x[i] + derivative * dt;
    }
    keep(std::move(x0), sample.shape());
    return sched::detail::tensor_like(be, out, sample);
  }

  void reset() { forget(); }
  bool uses_noise() const noexcept { return false; }
};

}  // namespace fd
