#pragma once
/// @file
/// Scheduler<sched::EulerAncestral>: EulerAncestralDiscreteScheduler of diffusers v0.23 (k-diffusion's
/// sample_euler_ancestral, eta = 1): an Euler step down to sigma_down, then fresh noise of std sigma_up.

#include "fd/schedulers/euler.hpp"

namespace fd {

/// Euler ancestral. Every step (the last one included, where sigma_up = 0) draws one sample-sized noise
/// tensor from the NoiseSource after the deterministic update. Timesteps, sigmas, init_noise_sigma and
/// scale_model_input are those of Scheduler<sched::Euler>.
template <>
class Scheduler<sched::EulerAncestral> : public sched::detail::EulerBase {
 public:
  static constexpr bool kStochastic = true;
  static constexpr bool kScalesInput = true;

  /// @throws fd::error kConfig for prediction_type "sample" (not implemented in diffusers either),
  /// use_karras_sigmas true or interpolation_type log_linear.
  explicit Scheduler(SchedulerConfig const& config) : EulerBase(config, SchedulerKind::kEulerAncestralDiscrete) {
    if (config_.prediction_type == PredictionType::kSample) {
      config_.reject("prediction_type", "= \"sample\" is not supported by EulerAncestralDiscreteScheduler "
                                        "(epsilon, v_prediction)");
    }
  }

  void set_timesteps(int num_inference_steps) {
    make_timesteps(num_inference_steps);
    reset();
  }

  /// @pre noise != nullptr.
  template <class B>
  Tensor<B> step(B const& be, Tensor<B> const& model_output, int step_index, Tensor<B> const& sample,
                 NoiseSource* noise = nullptr) {
    check_index(step_index, "step");
    sched::detail::check_step_shapes("EulerAncestralDiscreteScheduler::step", model_output, sample);
    auto const x = sched::detail::host_values(be, sample, "EulerAncestralDiscreteScheduler::step: sample");
    auto const e = sched::detail::host_values(be, model_output, "EulerAncestralDiscreteScheduler::step: model_output");
    std::size_t const n = x.size();
    float const sigma = sigmas_[static_cast<std::size_t>(step_index)];
    std::vector<float> x0(n);
    if (config_.prediction_type == PredictionType::kEpsilon) {
      for (std::size_t i = 0; i < n; ++i) x0[i] = x[i] - sigma * e[i];
    } else {
      float const c_out = -sigma / std::sqrt(sigma * sigma + 1.0f);
      float const c_skip_div = sigma * sigma + 1.0f;
      for (std::size_t i = 0; i < n; ++i) x0[i] = e[i] * c_out + x[i] / c_skip_div;
    }
    auto const [up, down] = sigma_up_down(step_index);
    float const dt = down - sigma;
    std::vector<float> out(n);
    for (std::size_t i = 0; i < n; ++i) {
      float const derivative = (x[i] - x0[i]) / sigma;
      out[i] = x[i] + derivative * dt;
    }
    auto const z = sched::detail::draw_noise(noise, n, "EulerAncestralDiscreteScheduler");
    for (std::size_t i = 0; i < n; ++i) out[i] = out[i] + z[i] * up;
    keep(std::move(x0), sample.shape());
    return sched::detail::tensor_like(be, out, sample);
  }

  void reset() { forget(); }
  bool uses_noise() const noexcept { return true; }

  /// (sigma_up, sigma_down) of a step, float32: the noise std added and the sigma the Euler step targets.
  std::pair<float, float> sigma_up_down(int step_index) const {
    check_index(step_index, "sigma_up_down");
    float const from = sigmas_[static_cast<std::size_t>(step_index)];
    float const to = sigmas_[static_cast<std::size_t>(step_index) + 1];
    float const to2 = to * to;
    float const from2 = from * from;
    float const up = std::sqrt(to2 * (from2 - to2) / from2);
    float const down = std::sqrt(to2 - up * up);
    return {up, down};
  }
};

}  // namespace fd
