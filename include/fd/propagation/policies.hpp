#pragma once
/// @file
/// Feature-propagation and noise-injection policies of the sampler.

#include <type_traits>

namespace fd::prop {

/// The plain sampler: the full UNet at every step.
struct None {};

/// One decoder call per step; the encoder runs only at key steps (reference `register_normal_pipeline`).
struct Sequential {};
/// One batched decoder call per group of steps (reference `register_parallel_pipeline`, spec §3).
struct Parallel {};

/// FasterDiffusion encoder propagation: the encoder runs at key steps, its features are reused by the
/// decoder at the following non-key steps. Mode is Sequential or Parallel.
template <class Mode>
struct EncoderPropagation {
  static_assert(std::is_same_v<Mode, Sequential> || std::is_same_v<Mode, Parallel>,
                "prop::EncoderPropagation<Mode>: Mode must be prop::Sequential or prop::Parallel");
  using mode = Mode;
};

template <class P>
inline constexpr bool is_propagation = std::is_same_v<P, None>;
template <class Mode>
inline constexpr bool is_propagation<EncoderPropagation<Mode>> = true;

template <class P>
inline constexpr bool is_parallel = false;
template <>
inline constexpr bool is_parallel<EncoderPropagation<Parallel>> = true;

}  // namespace fd::prop

namespace fd::inject {

/// No prior noise injection.
struct None {};

/// Prior noise injection (paper §3.3): z_t += alpha * z_T before the scheduler step of every step with
/// timestep t < threshold (the reference: alpha 0.003, t/1000 < 0.5). Both are settable at run time
/// through SamplerOptions; these are the defaults.
struct Prior {
  static constexpr float kAlpha = 0.003f;
  static constexpr int kThreshold = 500;
};

template <class I>
inline constexpr bool is_injection = std::is_same_v<I, None> || std::is_same_v<I, Prior>;

}  // namespace fd::inject
