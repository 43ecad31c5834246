#pragma once
/// @file
/// Scheduler<sched::Ddim>: DDIMScheduler of diffusers v0.23 (Song et al. 2021, "Denoising Diffusion
/// Implicit Models", eq. 12 and 16). Stateless: any step may be taken in any order.

#include "fd/schedulers/scheduler.hpp"

namespace fd {

/// DDIM. eta = 0 (the pipeline default) is deterministic; eta > 0 adds eta * sigma_t * z with z from
/// the NoiseSource at every step.
/// @code
///   fd::Scheduler<fd::sched::Ddim> ddim(fd::SchedulerConfig::sd15(fd::SchedulerKind::kDdim));
///   ddim.set_timesteps(50);                       // 981, 961, ..., 1
///   x = ddim.step(be, eps, i, x);
/// @endcode
template <>
class Scheduler<sched::Ddim> : public sched::detail::SchedulerBase, public sched::detail::PredOriginal {
 public:
  static constexpr bool kStochastic = true;  ///< only when eta > 0, see uses_noise()
  static constexpr bool kScalesInput = false;

  /// @throws fd::error kConfig for settings this implementation does not reproduce.
  explicit Scheduler(SchedulerConfig const& config) : SchedulerBase(config, SchedulerKind::kDdim) {
    final_alpha_cumprod_ = config_.set_alpha_to_one.value_or(true) ? 1.0f : schedule_.alphas_cumprod.front();
  }

  void set_timesteps(int num_inference_steps) {
    check_steps(num_inference_steps, "DDIMScheduler");
    num_inference_steps_ = num_inference_steps;
    assign_timesteps(sched::detail::spaced_timesteps(config_.timestep_spacing.value_or(TimestepSpacing::kLeading),
                                                     config_.num_train_timesteps, num_inference_steps,
                                                     config_.steps_offset));
    reset();
  }

  float init_noise_sigma() const noexcept { return 1.0f; }

  /// Identity (as in diffusers).
  template <class B>
  Tensor<B> scale_model_input(B const&, Tensor<B> const& x, int) const {
    return x;
  }

  /// The sample at the next (smaller) timestep. `noise` is required when eta > 0.
  template <class B>
  Tensor<B> step(B const& be, Tensor<B> const& model_output, int step_index, Tensor<B> const& sample,
                 NoiseSource* noise = nullptr) {
    begin_step(step_index, false, "DDIMScheduler");
    sched::detail::check_step_shapes("DDIMScheduler::step", model_output, sample);
    auto const x = sched::detail::host_values(be, sample, "DDIMScheduler::step: sample");
    auto const e = sched::detail::host_values(be, model_output, "DDIMScheduler::step: model_output");
    auto out = step_host(x, e, step_index, sample.shape(), noise);
    end_step(step_index);
    return sched::detail::tensor_like(be, out, sample);
  }

  /// Forgets the last x0 (DDIM has no other history).
  void reset() {
    forget();
    reset_order();
  }

  /// eta of DDIM's eq. 16 (0 = deterministic, 1 = DDPM-like). @pre eta >= 0.
  void set_eta(float eta) {
    if (!(eta >= 0.0f)) fail(Errc::kInvalidArgument, "DDIMScheduler: eta must be >= 0, got " + std::to_string(eta));
    eta_ = eta;
  }
  float eta() const noexcept { return eta_; }
  bool uses_noise() const noexcept { return eta_ > 0.0f; }

  /// The timestep the step at `step_index` goes to (negative: final_alpha_cumprod is used).
  int prev_timestep(int step_index) const {
    return timesteps_.at(static_cast<std::size_t>(step_index)) - config_.num_train_timesteps / num_inference_steps_;
  }
  float final_alpha_cumprod() const noexcept { return final_alpha_cumprod_; }

  /// eta * sqrt(variance) of a step (float32, as diffusers' std_dev_t).
  float std_dev(int step_index) const {
    int const t = timesteps_.at(static_cast<std::size_t>(step_index));
    int const p = prev_timestep(step_index);
    float const a_t = schedule_.alpha_cumprod(t);
    float const a_p = p >= 0 ? schedule_.alpha_cumprod(p) : final_alpha_cumprod_;
    float const variance = ((1.0f - a_p) / (1.0f - a_t)) * (1.0f - a_t / a_p);
    return eta_ * std::sqrt(variance);
  }

 private:
  std::vector<float> step_host(std::vector<float> const& x, std::vector<float> const& e, int step_index,
                               Shape const& shape, NoiseSource* noise) {
    int const t = timesteps_[static_cast<std::size_t>(step_index)];
    int const p = prev_timestep(step_index);
    float const a_t = schedule_.alpha_cumprod(t);
    float const a_p = p >= 0 ? schedule_.alpha_cumprod(p) : final_alpha_cumprod_;
    float const b_t = 1.0f - a_t;
    float const sqrt_a = std::sqrt(a_t);
    float const sqrt_b = std::sqrt(b_t);
    std::size_t const n = x.size();

    std::vector<float> x0(n), eps(n);
    switch (config_.prediction_type) {
      case PredictionType::kEpsilon:
        for (std::size_t i = 0; i < n; ++i) x0[i] = (x[i] - sqrt_b * e[i]) / sqrt_a;
        eps = e;
        break;
      case PredictionType::kSample:
        x0 = e;
        for (std::size_t i = 0; i < n; ++i) eps[i] = (x[i] - sqrt_a * x0[i]) / sqrt_b;
        break;
      case PredictionType::kVPrediction:
        for (std::size_t i = 0; i < n; ++i) {
          x0[i] = sqrt_a * x[i] - sqrt_b * e[i];
          eps[i] = sqrt_a * e[i] + sqrt_b * x[i];
        }
        break;
    }
    if (config_.thresholding) {
      sched::detail::dynamic_threshold(x0, shape[0], config_.dynamic_thresholding_ratio, config_.sample_max_value);
    } else if (config_.clip_sample.value_or(true)) {
      float const r = config_.clip_sample_range;
      for (float& v : x0) v = std::min(std::max(v, -r), r);
    }

    float const std_dev_t = std_dev(step_index);
    float const dir_coeff = std::sqrt(1.0f - a_p - std_dev_t * std_dev_t);
    float const x0_coeff = std::sqrt(a_p);
    std::vector<float> out(n);
    for (std::size_t i = 0; i < n; ++i) out[i] = x0_coeff * x0[i] + dir_coeff * eps[i];
    if (eta_ > 0.0f) {
      auto const z = sched::detail::draw_noise(noise, n, "DDIMScheduler");
      for (std::size_t i = 0; i < n; ++i) out[i] = out[i] + std_dev_t * z[i];
    }
    keep(std::move(x0), shape);
    return out;
  }

  float final_alpha_cumprod_ = 1.0f;
  float eta_ = 0.0f;
};

}  // namespace fd
