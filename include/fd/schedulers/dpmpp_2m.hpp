#pragma once
/// @file
/// Scheduler<sched::DpmSolverPP2M>: DPMSolverMultistepScheduler of diffusers v0.23 (Lu et al. 2022,
/// "DPM-Solver++", algorithm 2). With the defaults (dpmsolver++, solver_order 2, midpoint) this is
/// "DPM++ 2M": the first step is first order (= DDIM), later steps second-order multistep.

#include "fd/schedulers/scheduler.hpp"

namespace fd {

/// DPM-Solver++ multistep, orders 1 and 2, data (dpmsolver++) or noise (dpmsolver) prediction.
/// Stateful: step() calls must come in timestep order.
template <>
class Scheduler<sched::DpmSolverPP2M> : public sched::detail::SchedulerBase {
 public:
  static constexpr bool kStochastic = false;
  static constexpr bool kScalesInput = false;

  /// @throws fd::error kConfig for use_karras_sigmas / use_lu_lambdas true, SDE variants,
  /// solver_order other than 1 or 2.
  explicit Scheduler(SchedulerConfig const& config) : SchedulerBase(config, SchedulerKind::kDpmSolverMultistep) {
    if (config_.use_karras_sigmas) {
      config_.reject("use_karras_sigmas", "= true is not implemented (DPMSolverMultistepScheduler uses the "
                                          "interpolated training sigmas only)");
    }
    if (config_.use_lu_lambdas) config_.reject("use_lu_lambdas", "= true is not implemented");
    if (config_.algorithm_type == DpmAlgorithm::kSdeDpmSolverPP || config_.algorithm_type == DpmAlgorithm::kSdeDpmSolver) {
      config_.reject("algorithm_type", "SDE variants are not implemented (dpmsolver++, dpmsolver)");
    }
    if (config_.solver_order != 1 && config_.solver_order != 2) {
      config_.reject("solver_order", "= " + std::to_string(config_.solver_order) + " is not implemented (1 or 2)");
    }
    // log(alpha_t) - log(sigma_t) of every training step, for lambda_min_clipped.
    lambda_t_.resize(schedule_.alphas_cumprod.size());
    for (std::size_t i = 0; i < lambda_t_.size(); ++i) {
      float const a = std::sqrt(schedule_.alphas_cumprod[i]);
      float const s = std::sqrt(1.0f - schedule_.alphas_cumprod[i]);
      lambda_t_[i] = std::log(a) - std::log(s);
    }
  }

  void set_timesteps(int num_inference_steps) {
    check_steps(num_inference_steps, "DPMSolverMultistepScheduler");
    int const T = config_.num_train_timesteps;
    int const n = num_inference_steps;
    // Timesteps whose lambda is below lambda_min_clipped are cut from the end of the schedule.
    // (lambda decreases with t, so they are a suffix; -inf clips nothing.)
    int clipped = 0;
    auto const lmc = static_cast<float>(config_.lambda_min_clipped);
    for (auto it = lambda_t_.rbegin(); it != lambda_t_.rend() && *it < lmc; ++it) ++clipped;
    int const last = T - clipped;
    if (last <= 0) config_.reject("lambda_min_clipped", "clips every timestep");
    std::vector<int> ts;
    switch (config_.timestep_spacing.value_or(TimestepSpacing::kLinspace)) {
      case TimestepSpacing::kLinspace: {
        auto const lin = sched::detail::np_linspace(0.0, static_cast<double>(last - 1), n + 1);
        for (int i = n; i >= 1; --i) ts.push_back(static_cast<int>(sched::detail::np_round(lin[static_cast<std::size_t>(i)])));
        break;
      }
      case TimestepSpacing::kLeading: {
        int const ratio = last / (n + 1);
        for (int k = n; k >= 1; --k) ts.push_back(k * ratio + config_.steps_offset);
        break;
      }
      case TimestepSpacing::kTrailing: {
        for (double v : sched::detail::np_arange_down(static_cast<double>(last), static_cast<double>(T) / n)) {
          ts.push_back(static_cast<int>(sched::detail::np_round(v)) - 1);
        }
        break;
      }
    }
    auto const train = schedule_.train_sigmas();
    sigmas_.clear();
    for (int t : ts) {
      if (t < 0 || t >= T) {
        fail(Errc::kInvalidArgument, "DPMSolverMultistepScheduler::set_timesteps: timestep " + std::to_string(t) +
                                         " outside the schedule (steps_offset too large?)");
      }
      sigmas_.push_back(train[static_cast<std::size_t>(t)]);
    }
    sigmas_.push_back(std::sqrt((1.0f - schedule_.alphas_cumprod.front()) / schedule_.alphas_cumprod.front()));
    num_inference_steps_ = static_cast<int>(ts.size());
    assign_timesteps(std::move(ts));
    reset();
  }

  float init_noise_sigma() const noexcept { return 1.0f; }

  /// Identity (as in diffusers).
  template <class B>
  Tensor<B> scale_model_input(B const&, Tensor<B> const& x, int) const {
    return x;
  }

  /// @pre calls in order: step_index = previous + 1 (the first call after reset() may start anywhere).
  template <class B>
  Tensor<B> step(B const& be, Tensor<B> const& model_output, int step_index, Tensor<B> const& sample,
                 NoiseSource* = nullptr) {
    begin_step(step_index, true, "DPMSolverMultistepScheduler");
    bool const learned = config_.variance_type == VarianceType::kLearned ||
                         config_.variance_type == VarianceType::kLearnedRange;
    sched::detail::check_step_shapes("DPMSolverMultistepScheduler::step", model_output, sample, learned);
    auto const x = sched::detail::host_values(be, sample, "DPMSolverMultistepScheduler::step: sample");
    auto e = sched::detail::host_values(be, model_output, "DPMSolverMultistepScheduler::step: model_output");
    if (!(model_output.shape() == sample.shape())) e = sched::detail::split_channels(e, sample.shape()).first;
    auto out = step_host(e, step_index, x, sample.shape());
    end_step(step_index);
    return sched::detail::tensor_like(be, out, sample);
  }

  /// Forgets the converted outputs of earlier steps.
  void reset() {
    history_.clear();
    lower_order_nums_ = 0;
    reset_order();
  }

  bool uses_noise() const noexcept { return false; }
  /// sigma of every timestep, then the sigma the last step goes to (that of timestep 0, not 0).
  std::vector<float> const& sigmas() const noexcept { return sigmas_; }

 private:
  struct AlphaSigma {
    float alpha, sigma, lambda;
  };
  // alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma * alpha_t, lambda = log alpha_t - log sigma_t.
  static AlphaSigma alpha_sigma(float s) {
    float const a = 1.0f / std::sqrt(s * s + 1.0f);
    float const st = s * a;
    return {a, st, std::log(a) - std::log(st)};
  }

  std::vector<float> step_host(std::vector<float> const& e, int i, std::vector<float> const& x, Shape const& shape) {
    int const N = static_cast<int>(timesteps_.size());
    bool const lower_final = i == N - 1 && (config_.euler_at_final || (config_.lower_order_final && N < 15));
    std::size_t const n = x.size();
    AlphaSigma const s0 = alpha_sigma(sigmas_[static_cast<std::size_t>(i)]);
    bool const data_pred = config_.algorithm_type == DpmAlgorithm::kDpmSolverPP;

    // Convert the model output to what the solver integrates: x0 (dpmsolver++) or epsilon (dpmsolver).
    std::vector<float> m(n);
    if (data_pred) {
      switch (config_.prediction_type) {
        case PredictionType::kEpsilon:
          for (std::size_t k = 0; k < n; ++k) m[k] = (x[k] - s0.sigma * e[k]) / s0.alpha;
          break;
        case PredictionType::kSample: m = e; break;
        case PredictionType::kVPrediction:
          for (std::size_t k = 0; k < n; ++k) m[k] = s0.alpha * x[k] - s0.sigma * e[k];
          break;
      }
      if (config_.thresholding) {
        sched::detail::dynamic_threshold(m, shape[0], config_.dynamic_thresholding_ratio, config_.sample_max_value);
      }
    } else {
      switch (config_.prediction_type) {
        case PredictionType::kEpsilon: m = e; break;
        case PredictionType::kSample:
          for (std::size_t k = 0; k < n; ++k) m[k] = (x[k] - s0.alpha * e[k]) / s0.sigma;
          break;
        case PredictionType::kVPrediction:
          for (std::size_t k = 0; k < n; ++k) m[k] = s0.alpha * e[k] + s0.sigma * x[k];
          break;
      }
      if (config_.thresholding) {
        std::vector<float> x0(n);
        for (std::size_t k = 0; k < n; ++k) x0[k] = (x[k] - s0.sigma * m[k]) / s0.alpha;
        sched::detail::dynamic_threshold(x0, shape[0], config_.dynamic_thresholding_ratio, config_.sample_max_value);
        for (std::size_t k = 0; k < n; ++k) m[k] = (x[k] - s0.alpha * x0[k]) / s0.sigma;
      }
    }
    history_.push_back(std::move(m));
    if (static_cast<int>(history_.size()) > config_.solver_order) history_.erase(history_.begin());

    AlphaSigma const t = alpha_sigma(sigmas_[static_cast<std::size_t>(i + 1)]);
    float const h = t.lambda - s0.lambda;
    auto const& m0 = history_.back();
    std::vector<float> out(n);
    if (config_.solver_order == 1 || lower_order_nums_ < 1 || lower_final) {
      if (data_pred) {
        float const c_x = t.sigma / s0.sigma;
        float const c_m = t.alpha * (std::exp(-h) - 1.0f);
        for (std::size_t k = 0; k < n; ++k) out[k] = c_x * x[k] - c_m * m0[k];
      } else {
        float const c_x = t.alpha / s0.alpha;
        float const c_m = t.sigma * (std::exp(h) - 1.0f);
        for (std::size_t k = 0; k < n; ++k) out[k] = c_x * x[k] - c_m * m0[k];
      }
    } else {
      auto const& m1 = history_[history_.size() - 2];
      AlphaSigma const s1 = alpha_sigma(sigmas_[static_cast<std::size_t>(i - 1)]);
      float const h0 = s0.lambda - s1.lambda;
      float const r0 = h0 / h;
      float const inv_r0 = 1.0f / r0;
      std::vector<float> d1(n);
      for (std::size_t k = 0; k < n; ++k) d1[k] = inv_r0 * (m0[k] - m1[k]);
      bool const midpoint = config_.solver_type == DpmSolverType::kMidpoint;
      if (data_pred) {
        float const c_x = t.sigma / s0.sigma;
        float const c_0 = t.alpha * (std::exp(-h) - 1.0f);
        if (midpoint) {
          float const c_1 = 0.5f * c_0;
          for (std::size_t k = 0; k < n; ++k) out[k] = c_x * x[k] - c_0 * m0[k] - c_1 * d1[k];
        } else {
          float const c_1 = t.alpha * ((std::exp(-h) - 1.0f) / h + 1.0f);
          for (std::size_t k = 0; k < n; ++k) out[k] = c_x * x[k] - c_0 * m0[k] + c_1 * d1[k];
        }
      } else {
        float const c_x = t.alpha / s0.alpha;
        float const c_0 = t.sigma * (std::exp(h) - 1.0f);
        if (midpoint) {
          float const c_1 = 0.5f * c_0;
          for (std::size_t k = 0; k < n; ++k) out[k] = c_x * x[k] - c_0 * m0[k] - c_1 * d1[k];
        } else {
          float const c_1 = t.sigma * ((std::exp(h) - 1.0f) / h - 1.0f);
          for (std::size_t k = 0; k < n; ++k) out[k] = c_x * x[k] - c_0 * m0[k] - c_1 * d1[k];
        }
      }
    }
    if (lower_order_nums_ < config_.solver_order) ++lower_order_nums_;
    return out;
  }

  std::vector<float> lambda_t_;
  std::vector<float> sigmas_;
  std::vector<std::vector<float>> history_;  ///< converted outputs, oldest first (at most solver_order)
  int lower_order_nums_ = 0;
};

}  // namespace fd
