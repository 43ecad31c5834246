#pragma once
/// @file
/// Scheduler<sched::Pndm>: PNDMScheduler of diffusers v0.23 (Liu et al. 2022, "Pseudo Numerical Methods
/// for Diffusion Models on Manifolds"): pseudo Runge-Kutta warm-up (unless skip_prk_steps) followed by
/// pseudo linear multistep (PLMS). Stable Diffusion 1.x ships this scheduler with skip_prk_steps, which
/// makes N inference steps cost N + 1 model calls (the second timestep is visited twice).

#include "fd/schedulers/scheduler.hpp"

namespace fd {

/// PNDM / PLMS. Stateful: step() calls must come in timestep order, once per entry of timesteps().
template <>
class Scheduler<sched::Pndm> : public sched::detail::SchedulerBase {
 public:
  static constexpr bool kStochastic = false;
  static constexpr bool kScalesInput = false;

  /// @throws fd::error kConfig for prediction_type "sample" (diffusers' PNDM has no such mode).
  explicit Scheduler(SchedulerConfig const& config) : SchedulerBase(config, SchedulerKind::kPndm) {
    if (config_.prediction_type == PredictionType::kSample) {
      config_.reject("prediction_type", "= \"sample\" is not supported by PNDMScheduler (epsilon, v_prediction)");
    }
    final_alpha_cumprod_ = config_.set_alpha_to_one.value_or(false) ? 1.0f : schedule_.alphas_cumprod.front();
  }

  /// PRK calls first (12 of them unless skip_prk_steps), then PLMS calls.
  void set_timesteps(int num_inference_steps) {
    check_steps(num_inference_steps, "PNDMScheduler");
    num_inference_steps_ = num_inference_steps;
    int const T = config_.num_train_timesteps;
    int const n = num_inference_steps;
    // The base grid, ascending.
    std::vector<int> grid;
    switch (config_.timestep_spacing.value_or(TimestepSpacing::kLeading)) {
      case TimestepSpacing::kLinspace:
        for (double v : sched::detail::np_linspace(0.0, static_cast<double>(T - 1), n)) {
          grid.push_back(static_cast<int>(sched::detail::np_round(v)));
        }
        break;
      case TimestepSpacing::kLeading:
        for (int k = 0; k < n; ++k) grid.push_back(k * (T / n) + config_.steps_offset);
        break;
      case TimestepSpacing::kTrailing: {
        auto const down = sched::detail::np_arange_down(static_cast<double>(T), static_cast<double>(T) / n);
        for (auto it = down.rbegin(); it != down.rend(); ++it) grid.push_back(static_cast<int>(sched::detail::np_round(*it)) - 1);
        break;
      }
    }
    std::size_t const g = grid.size();
    prk_timesteps_.clear();
    std::vector<int> plms;
    if (config_.skip_prk_steps) {
      // grid[:-1] ++ grid[-2:-1] ++ grid[-1:], reversed: the second-largest timestep comes twice.
      plms.assign(grid.begin(), grid.end() - (g > 0 ? 1 : 0));
      if (g >= 2) plms.push_back(grid[g - 2]);
      if (g >= 1) plms.push_back(grid[g - 1]);
      std::reverse(plms.begin(), plms.end());
    } else {
      // Three Runge-Kutta steps over the four largest grid points, each evaluated at t, t - r/2 (twice)
      // and t - r, where r / 2 = T // N // 2.
      if (g < 4) {
        fail(Errc::kInvalidArgument, "PNDMScheduler::set_timesteps: the Runge-Kutta warm-up needs at least 4 "
                                     "inference steps, got " + std::to_string(n) + " (or set skip_prk_steps)");
      }
      int const half = T / n / 2;
      std::vector<int> pairs;  // (t, t + r/2) for the four largest grid points
      for (std::size_t k = g - 4; k < g; ++k) {
        pairs.push_back(grid[k]);
        pairs.push_back(grid[k] + half);
      }
      pairs.pop_back();
      std::vector<int> rep;
      for (int v : pairs) {
        rep.push_back(v);
        rep.push_back(v);
      }
      prk_timesteps_.assign(rep.begin() + 1, rep.end() - 1);
      std::reverse(prk_timesteps_.begin(), prk_timesteps_.end());
      plms.assign(grid.begin(), grid.end() - 3);
      std::reverse(plms.begin(), plms.end());
    }
    std::vector<int> all = prk_timesteps_;
    all.insert(all.end(), plms.begin(), plms.end());
    assign_timesteps(std::move(all));
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
    begin_step(step_index, true, "PNDMScheduler");
    sched::detail::check_step_shapes("PNDMScheduler::step", model_output, sample);
    auto const x = sched::detail::host_values(be, sample, "PNDMScheduler::step: sample");
    auto const e = sched::detail::host_values(be, model_output, "PNDMScheduler::step: model_output");
    int const t = timesteps_[static_cast<std::size_t>(step_index)];
    auto out = !config_.skip_prk_steps && counter_ < static_cast<int>(prk_timesteps_.size()) ? step_prk(e, t, x)
                                                                                               : step_plms(e, t, x);
    end_step(step_index);
    return sched::detail::tensor_like(be, out, sample);
  }

  /// Forgets the model-output history and the remembered sample.
  void reset() {
    ets_.clear();
    counter_ = 0;
    cur_sample_.clear();
    cur_model_output_.clear();
    last_update_ = {0, 0};
    reset_order();
  }

  bool uses_noise() const noexcept { return false; }
  float final_alpha_cumprod() const noexcept { return final_alpha_cumprod_; }
  /// (t, t') of the last update: the step went from alphas_cumprod[t] to alphas_cumprod[t'] (t' < 0:
  /// final_alpha_cumprod). For the second PLMS call this is the first interval again.
  std::pair<int, int> last_update() const noexcept { return last_update_; }

 private:
  std::vector<float> step_prk(std::vector<float> const& e, int t_in, std::vector<float> const& x) {
    int const r = config_.num_train_timesteps / num_inference_steps_;
    int const diff = counter_ % 2 ? 0 : r / 2;
    int const prev_t = t_in - diff;
    int const t = prk_timesteps_[static_cast<std::size_t>(counter_ / 4 * 4)];
    std::size_t const n = e.size();
    if (cur_model_output_.empty()) cur_model_output_.assign(n, 0.0f);
    std::vector<float> combined;
    // Runge-Kutta weights 1/6, 1/3, 1/3, 1/6, applied as float32 scalars.
    float const sixth = static_cast<float>(1.0 / 6.0);
    float const third = static_cast<float>(1.0 / 3.0);
    switch (counter_ % 4) {
      case 0:
        for (std::size_t i = 0; i < n; ++i) cur_model_output_[i] = cur_model_output_[i] + sixth * e[i];
        ets_.push_back(e);
        cur_sample_ = x;
        combined = e;
        break;
      case 1:
      case 2:
        for (std::size_t i = 0; i < n; ++i) cur_model_output_[i] = cur_model_output_[i] + third * e[i];
        combined = e;
        break;
      default:
        combined.resize(n);
        for (std::size_t i = 0; i < n; ++i) combined[i] = cur_model_output_[i] + sixth * e[i];
        cur_model_output_.assign(n, 0.0f);
        break;
    }
    std::vector<float> const& from = cur_sample_.empty() ? x : cur_sample_;
    auto out = prev_sample(from, t, prev_t, combined);
    ++counter_;
    return out;
  }

  std::vector<float> step_plms(std::vector<float> const& e, int t_in, std::vector<float> const& x_in) {
    int const r = config_.num_train_timesteps / num_inference_steps_;
    int t = t_in;
    int prev_t = t - r;
    if (counter_ != 1) {
      if (ets_.size() > 3) ets_.erase(ets_.begin(), ets_.end() - 3);
      ets_.push_back(e);
    } else {
      // The second call redoes the first interval from the remembered sample.
      prev_t = t;
      t = t + r;
    }
    std::size_t const n = e.size();
    std::vector<float> combined(n);
    std::vector<float> const* x = &x_in;
    std::vector<float> remembered;
    std::size_t const h = ets_.size();
    if (h == 1 && counter_ == 0) {
      combined = e;
      cur_sample_ = x_in;
    } else if (h == 1 && counter_ == 1) {
      auto const& e0 = ets_[0];
      for (std::size_t i = 0; i < n; ++i) combined[i] = (e[i] + e0[i]) / 2.0f;
      remembered = std::move(cur_sample_);
      cur_sample_.clear();
      x = &remembered;
    } else if (h == 2) {
      auto const& e1 = ets_[h - 1];
      auto const& e2 = ets_[h - 2];
      for (std::size_t i = 0; i < n; ++i) combined[i] = (3.0f * e1[i] - e2[i]) / 2.0f;
    } else if (h == 3) {
      auto const& e1 = ets_[h - 1];
      auto const& e2 = ets_[h - 2];
      auto const& e3 = ets_[h - 3];
      for (std::size_t i = 0; i < n; ++i) combined[i] = (23.0f * e1[i] - 16.0f * e2[i] + 5.0f * e3[i]) / 12.0f;
    } else {
      auto const& e1 = ets_[h - 1];
      auto const& e2 = ets_[h - 2];
      auto const& e3 = ets_[h - 3];
      auto const& e4 = ets_[h - 4];
      float const w = static_cast<float>(1.0 / 24.0);
      for (std::size_t i = 0; i < n; ++i) {
        combined[i] = w * (55.0f * e1[i] - 59.0f * e2[i] + 37.0f * e3[i] - 9.0f * e4[i]);
      }
    }
    if (x->empty()) {
      fail(Errc::kInvalidArgument, "PNDMScheduler::step: the second PLMS call needs the first one's sample (reset?)");
    }
    auto out = prev_sample(*x, t, prev_t, combined);
    ++counter_;
    return out;
  }

  // x_{t'} from x_t and the combined noise estimate (PNDM paper, eq. 11 in alpha-bar form).
  std::vector<float> prev_sample(std::vector<float> const& x, int t, int prev_t, std::vector<float> const& e_in) {
    last_update_ = {t, prev_t};
    float const a_t = schedule_.alpha_cumprod(t);
    float const a_p = prev_t >= 0 ? schedule_.alpha_cumprod(prev_t) : final_alpha_cumprod_;
    float const b_t = 1.0f - a_t;
    float const b_p = 1.0f - a_p;
    std::size_t const n = x.size();
    std::vector<float> e = e_in;
    if (config_.prediction_type == PredictionType::kVPrediction) {
      float const sa = std::sqrt(a_t);
      float const sb = std::sqrt(b_t);
      for (std::size_t i = 0; i < n; ++i) e[i] = sa * e_in[i] + sb * x[i];
    }
    float const sample_coeff = std::sqrt(a_p / a_t);
    float const denom = a_t * std::sqrt(b_p) + std::sqrt(a_t * b_t * a_p);
    float const diff = a_p - a_t;
    std::vector<float> out(n);
    for (std::size_t i = 0; i < n; ++i) out[i] = sample_coeff * x[i] - (diff * e[i]) / denom;
    return out;
  }

  float final_alpha_cumprod_ = 0.0f;
  std::vector<int> prk_timesteps_;
  std::vector<std::vector<float>> ets_;
  int counter_ = 0;
  std::vector<float> cur_sample_;
  std::vector<float> cur_model_output_;
  std::pair<int, int> last_update_{0, 0};
};

}  // namespace fd
