#pragma once
/// @file
/// fd::AnyScheduler: one of the six schedulers, chosen at run time from a config's `_class_name`.

#include <concepts>
#include <type_traits>
#include <variant>

#include "fd/schedulers/ddim.hpp"
#include "fd/schedulers/ddpm.hpp"
#include "fd/schedulers/dpmpp_2m.hpp"
#include "fd/schedulers/euler.hpp"
#include "fd/schedulers/euler_ancestral.hpp"
#include "fd/schedulers/pndm.hpp"
#include "fd/schedulers/scheduler.hpp"

namespace fd {

/// Runtime-polymorphic scheduler with the members of Scheduler<Tag>; kStochastic/kScalesInput become
/// stochastic()/scales_input().
/// @code
///   fd::AnyScheduler s(fd::SchedulerConfig::from_file(dir / "scheduler/scheduler_config.json"));
///   s.set_timesteps(50);
///   auto x = x_T;  // times s.init_noise_sigma()
///   for (int i = 0; i < int(s.timesteps().size()); ++i) {
///     auto eps = unet(s.scale_model_input(be, x, i), s.timesteps_f32()[i]);
///     x = s.step(be, eps, i, x, &noise);
///   }
/// @endcode
class AnyScheduler {
 public:
  using Variant = std::variant<Scheduler<sched::Ddim>, Scheduler<sched::Pndm>, Scheduler<sched::DpmSolverPP2M>,
                               Scheduler<sched::Ddpm>, Scheduler<sched::Euler>, Scheduler<sched::EulerAncestral>>;

  /// The scheduler config.kind names (from `_class_name`). @throws fd::error kConfig as the
  /// specialization's constructor does.
  explicit AnyScheduler(SchedulerConfig const& config) : v_(make(config)) {}

  /// Reads a `scheduler_config.json`; `as` converts it to another class (diffusers' from_config).
  static AnyScheduler from_file(std::filesystem::path const& path, std::optional<SchedulerKind> as = std::nullopt) {
    return AnyScheduler(SchedulerConfig::from_file(path, as));
  }

  SchedulerKind kind() const noexcept { return kind_of(v_.index()); }
  std::string_view class_name() const noexcept { return scheduler_class_name(kind()); }

  void set_timesteps(int num_inference_steps) {
    std::visit([&](auto& s) { s.set_timesteps(num_inference_steps); }, v_);
  }
  /// A custom descending timestep list (DDPM only, e.g. DeepFloyd IF's fast27); kUnsupported otherwise.
  void set_timesteps(std::vector<int> const& custom) {
    if (auto* d = std::get_if<Scheduler<sched::Ddpm>>(&v_)) {
      d->set_timesteps(custom);
    } else {
      fail(Errc::kUnsupported, std::string(class_name()) + " takes num_inference_steps, not a custom timestep list");
    }
  }
  std::vector<int> const& timesteps() const {
    return std::visit([](auto const& s) -> std::vector<int> const& { return s.timesteps(); }, v_);
  }
  std::vector<float> const& timesteps_f32() const {
    return std::visit([](auto const& s) -> std::vector<float> const& { return s.timesteps_f32(); }, v_);
  }
  int num_inference_steps() const {
    return std::visit([](auto const& s) { return s.num_inference_steps(); }, v_);
  }
  float init_noise_sigma() const {
    return std::visit([](auto const& s) { return s.init_noise_sigma(); }, v_);
  }

  template <class B>
  Tensor<B> scale_model_input(B const& be, Tensor<B> const& x, int step_index) const {
    return std::visit([&](auto const& s) { return s.scale_model_input(be, x, step_index); }, v_);
  }

  template <class B>
  Tensor<B> step(B const& be, Tensor<B> const& model_output, int step_index, Tensor<B> const& sample,
                 NoiseSource* noise = nullptr) {
    return std::visit([&](auto& s) { return s.step(be, model_output, step_index, sample, noise); }, v_);
  }

  void reset() {
    std::visit([](auto& s) { s.reset(); }, v_);
  }

  /// kStochastic of the held scheduler: its steps may draw noise.
  bool stochastic() const {
    return std::visit([](auto const& s) { return std::remove_cvref_t<decltype(s)>::kStochastic; }, v_);
  }
  /// kScalesInput of the held scheduler: scale_model_input is not the identity.
  bool scales_input() const {
    return std::visit([](auto const& s) { return std::remove_cvref_t<decltype(s)>::kScalesInput; }, v_);
  }
  /// Whether steps with this configuration consume noise (DDIM: eta > 0).
  bool uses_noise() const {
    return std::visit([](auto const& s) { return s.uses_noise(); }, v_);
  }

  /// DDIM's eta. Other schedulers accept only 0 (kInvalidArgument otherwise).
  void set_eta(float eta) {
    if (auto* d = std::get_if<Scheduler<sched::Ddim>>(&v_)) {
      d->set_eta(eta);
    } else if (eta != 0.0f) {
      fail(Errc::kInvalidArgument, "eta = " + std::to_string(eta) + " applies to DDIMScheduler only, this is " +
                                       std::string(class_name()));
    }
  }
  float eta() const {
    auto const* d = std::get_if<Scheduler<sched::Ddim>>(&v_);
    return d != nullptr ? d->eta() : 0.0f;
  }

  /// Whether pred_original_sample() is available (DDIM, DDPM, Euler, Euler ancestral).
  bool has_pred_original_sample() const {
    return std::visit([](auto const& s) { return std::derived_from<std::remove_cvref_t<decltype(s)>,
                                                                   sched::detail::PredOriginal>; },
                      v_);
  }
  /// x0 predicted by the last step; kUnsupported for PNDM and DPM-Solver.
  template <class B>
  Tensor<B> pred_original_sample(B const& be) const {
    return std::visit(
        [&](auto const& s) -> Tensor<B> {
          if constexpr (std::derived_from<std::remove_cvref_t<decltype(s)>, sched::detail::PredOriginal>) {
            return s.pred_original_sample(be);
          } else {
            fail(Errc::kUnsupported, std::string(class_name()) + " does not expose pred_original_sample");
          }
        },
        v_);
  }

  SchedulerConfig const& config() const {
    return std::visit([](auto const& s) -> SchedulerConfig const& { return s.config(); }, v_);
  }
  sched::detail::NoiseSchedule const& schedule() const {
    return std::visit([](auto const& s) -> sched::detail::NoiseSchedule const& { return s.schedule(); }, v_);
  }

  Variant& variant() noexcept { return v_; }
  Variant const& variant() const noexcept { return v_; }

 private:
  static SchedulerKind kind_of(std::size_t index) noexcept {
    constexpr SchedulerKind kinds[] = {SchedulerKind::kDdim, SchedulerKind::kPndm, SchedulerKind::kDpmSolverMultistep,
                                       SchedulerKind::kDdpm, SchedulerKind::kEulerDiscrete,
                                       SchedulerKind::kEulerAncestralDiscrete};
    return kinds[index];
  }

  static Variant make(SchedulerConfig const& c) {
    switch (c.kind) {
      case SchedulerKind::kDdim: return Variant(std::in_place_type<Scheduler<sched::Ddim>>, c);
      case SchedulerKind::kPndm: return Variant(std::in_place_type<Scheduler<sched::Pndm>>, c);
      case SchedulerKind::kDpmSolverMultistep: return Variant(std::in_place_type<Scheduler<sched::DpmSolverPP2M>>, c);
      case SchedulerKind::kDdpm: return Variant(std::in_place_type<Scheduler<sched::Ddpm>>, c);
      case SchedulerKind::kEulerDiscrete: return Variant(std::in_place_type<Scheduler<sched::Euler>>, c);
      case SchedulerKind::kEulerAncestralDiscrete:
        return Variant(std::in_place_type<Scheduler<sched::EulerAncestral>>, c);
    }
    c.reject("_class_name", "names no known scheduler");
  }

  Variant v_;
};

}  // namespace fd
