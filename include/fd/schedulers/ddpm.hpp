#pragma once
/// @file
/// Scheduler<sched::Ddpm>: DDPMScheduler of diffusers v0.23 (Ho et al. 2020, "Denoising Diffusion
/// Probabilistic Models", eq. 6-7, on a respaced timestep grid), including the learned_range variance
/// of Nichol & Dhariwal 2021 (eq. 15) and the dynamic thresholding DeepFloyd IF uses.

#include "fd/schedulers/scheduler.hpp"

namespace fd {

/// DDPM ancestral sampling. Stateless apart from the random draws: each step with t > 0 draws one
/// sample-sized noise tensor from the NoiseSource; the step to t = 0 draws nothing.
/// @code
///   fd::Scheduler<fd::sched::Ddpm> ddpm(fd::SchedulerConfig::deepfloyd_if());
///   ddpm.set_timesteps(100);                                   // 990, 980, ..., 0
///   x = ddpm.step(be, unet_out /* [N, 6, H, W] */, i, x /* [N, 3, H, W] */, &noise);
/// @endcode
template <>
class Scheduler<sched::Ddpm> : public sched::detail::SchedulerBase, public sched::detail::PredOriginal {
 public:
  static constexpr bool kStochastic = true;
  static constexpr bool kScalesInput = false;

  /// @throws fd::error kConfig for variance_type fixed_large_log (NaN in diffusers 0.23).
  explicit Scheduler(SchedulerConfig const& config) : SchedulerBase(config, SchedulerKind::kDdpm) {
    variance_type_ = config_.variance_type.value_or(VarianceType::kFixedSmall);
    if (variance_type_ == VarianceType::kFixedLargeLog) {
      config_.reject("variance_type", "= \"fixed_large_log\" is not supported (diffusers 0.23 takes the square "
                                      "root of a log variance there, which is NaN)");
    }
  }

  void set_timesteps(int num_inference_steps) {
    check_steps(num_inference_steps, "DDPMScheduler");
    num_inference_steps_ = num_inference_steps;
    custom_ = false;
    assign_timesteps(sched::detail::spaced_timesteps(config_.timestep_spacing.value_or(TimestepSpacing::kLeading),
                                                     config_.num_train_timesteps, num_inference_steps,
                                                     config_.steps_offset));
    reset();
  }

  /// A custom, strictly descending timestep list (DeepFloyd IF's fast27/smart27/...): each step goes
  /// to the next entry, the last one to t = -1 (alpha-bar 1).
  void set_timesteps(std::vector<int> const& custom) {
    if (custom.empty()) fail(Errc::kInvalidArgument, "DDPMScheduler::set_timesteps: empty custom timestep list");
    for (std::size_t i = 1; i < custom.size(); ++i) {
      if (custom[i] >= custom[i - 1]) {
        fail(Errc::kInvalidArgument, "DDPMScheduler::set_timesteps: custom timesteps must be strictly descending "
                                     "(entry " + std::to_string(i) + ")");
      }
    }
    if (custom.front() >= config_.num_train_timesteps || custom.back() < 0) {
      fail(Errc::kInvalidArgument, "DDPMScheduler::set_timesteps: custom timesteps must lie in [0, " +
                                       std::to_string(config_.num_train_timesteps) + ")");
    }
    num_inference_steps_ = static_cast<int>(custom.size());
    custom_ = true;
    assign_timesteps(custom);
    reset();
  }

  float init_noise_sigma() const noexcept { return 1.0f; }

  /// Identity (as in diffusers).
  template <class B>
  Tensor<B> scale_model_input(B const&, Tensor<B> const& x, int) const {
    return x;
  }

  /// `model_output` is [N, C, ...] or, for learned variances, [N, 2C, ...] (eps then variance values).
  /// `noise` is required whenever timesteps()[step_index] > 0.
  template <class B>
  Tensor<B> step(B const& be, Tensor<B> const& model_output, int step_index, Tensor<B> const& sample,
                 NoiseSource* noise = nullptr) {
    begin_step(step_index, false, "DDPMScheduler");
    bool const learned = variance_type_ == VarianceType::kLearned || variance_type_ == VarianceType::kLearnedRange;
    sched::detail::check_step_shapes("DDPMScheduler::step", model_output, sample, learned);
    auto const x = sched::detail::host_values(be, sample, "DDPMScheduler::step: sample");
    auto e = sched::detail::host_values(be, model_output, "DDPMScheduler::step: model_output");
    std::vector<float> v;
    if (!(model_output.shape() == sample.shape())) {
      auto parts = sched::detail::split_channels(e, sample.shape());
      e = std::move(parts.first);
      v = std::move(parts.second);
    }
    auto out = step_host(x, e, v, step_index, sample.shape(), noise);
    end_step(step_index);
    return sched::detail::tensor_like(be, out, sample);
  }

  void reset() {
    forget();
    reset_order();
    thresholds_.clear();
  }

  bool uses_noise() const noexcept { return true; }

  /// The timestep the step at `step_index` goes to (-1 after a custom list's last entry).
  int prev_timestep(int step_index) const {
    if (custom_) {
      auto const next = static_cast<std::size_t>(step_index) + 1;
      return next < timesteps_.size() ? timesteps_[next] : -1;
    }
    return timesteps_.at(static_cast<std::size_t>(step_index)) - config_.num_train_timesteps / num_inference_steps_;
  }

  /// Per-sample dynamic thresholds of the last step (empty without thresholding).
  std::vector<float> const& last_thresholds() const noexcept { return thresholds_; }

 private:
  std::vector<float> step_host(std::vector<float> const& x, std::vector<float> const& e, std::vector<float> const& v,
                               int step_index, Shape const& shape, NoiseSource* noise) {
    int const t = timesteps_[static_cast<std::size_t>(step_index)];
    int const p = prev_timestep(step_index);
    float const a_t = schedule_.alpha_cumprod(t);
    float const a_p = p >= 0 ? schedule_.alpha_cumprod(p) : 1.0f;
    float const b_t = 1.0f - a_t;
    float const b_p = 1.0f - a_p;
    float const cur_alpha = a_t / a_p;
    float const cur_beta = 1.0f - cur_alpha;
    std::size_t const n = x.size();

    std::vector<float> x0(n);
    switch (config_.prediction_type) {
      case PredictionType::kEpsilon: {
        float const sb = std::sqrt(b_t);
        float const sa = std::sqrt(a_t);
        for (std::size_t i = 0; i < n; ++i) x0[i] = (x[i] - sb * e[i]) / sa;
        break;
      }
      case PredictionType::kSample: x0 = e; break;
      case PredictionType::kVPrediction: {
        float const sa = std::sqrt(a_t);
        float const sb = std::sqrt(b_t);
        for (std::size_t i = 0; i < n; ++i) x0[i] = sa * x[i] - sb * e[i];
        break;
      }
    }
    thresholds_.clear();
    if (config_.thresholding) {
      thresholds_ = sched::detail::dynamic_threshold(x0, shape[0], config_.dynamic_thresholding_ratio,
                                                     config_.sample_max_value);
    } else if (config_.clip_sample.value_or(true)) {
      float const r = config_.clip_sample_range;
      for (float& val : x0) val = std::min(std::max(val, -r), r);
    }

    // Posterior mean (Ho et al. eq. 7) between the two visited timesteps.
    float const x0_coeff = (std::sqrt(a_p) * cur_beta) / b_t;
    float const x_coeff = std::sqrt(cur_alpha) * b_p / b_t;
    std::vector<float> out(n);
    for (std::size_t i = 0; i < n; ++i) out[i] = x0_coeff * x0[i] + x_coeff * x[i];

    if (t > 0) {
      auto const z = sched::detail::draw_noise(noise, n, "DDPMScheduler");
      // Posterior variance, clamped away from 0 for the log.
      float const var = std::max((b_p / b_t) * cur_beta, 1e-20f);
      switch (variance_type_) {
        case VarianceType::kFixedSmall: {
          float const sd = std::sqrt(var);
          for (std::size_t i = 0; i < n; ++i) out[i] = out[i] + sd * z[i];
          break;
        }
        case VarianceType::kFixedSmallLog: {
          float const sd = std::exp(0.5f * std::log(var));
          for (std::size_t i = 0; i < n; ++i) out[i] = out[i] + sd * z[i];
          break;
        }
        case VarianceType::kFixedLarge: {
          float const sd = std::sqrt(cur_beta);
          for (std::size_t i = 0; i < n; ++i) out[i] = out[i] + sd * z[i];
          break;
        }
        case VarianceType::kLearned:
        case VarianceType::kLearnedRange: {
          if (v.empty()) {
            fail(Errc::kShapeMismatch, "DDPMScheduler::step: variance_type learned* needs model_output with twice "
                                       "the sample's channels, got " + std::to_string(e.size()) + " values");
          }
          if (variance_type_ == VarianceType::kLearned) {
            for (std::size_t i = 0; i < n; ++i) out[i] = out[i] + std::sqrt(v[i]) * z[i];
          } else {
            // Interpolate log variance between the posterior (min) and the respaced beta (max).
            float const min_log = std::log(var);
            float const max_log = std::log(cur_beta);
            for (std::size_t i = 0; i < n; ++i) {
              float const frac = (v[i] + 1.0f) / 2.0f;
              float const log_var = frac * max_log + (1.0f - frac) * min_log;
              out[i] = out[i] + std::exp(0.5f * log_var) * z[i];
            }
          }
          break;
        }
        case VarianceType::kFixedLargeLog: break;  // rejected at construction
      }
    }
    keep(std::move(x0), shape);
    return out;
  }

  VarianceType variance_type_ = VarianceType::kFixedSmall;
  bool custom_ = false;
  std::vector<float> thresholds_;
};

}  // namespace fd
