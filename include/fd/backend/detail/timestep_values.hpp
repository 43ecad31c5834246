#pragma once
/// @file
/// The sinusoidal timestep embedding's values, computed on the host by every backend (a few hundred
/// numbers per call, and one libm keeps them identical across backends).

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "fd/error.hpp"

namespace fd::backend::detail {

/// [N, dim] row-major, as diffusers' Timesteps computes it in float32:
/// freq_i = exp(-ln(max_period) * i / (dim/2 - shift)), arg = t * freq_i rounded to float32,
/// emb = [sin(arg), cos(arg)] (or [cos, sin] with flip_sin_to_cos); odd dim gets a zero column.
inline std::vector<float> timestep_values(std::span<float const> timesteps, int dim, bool flip_sin_to_cos,
                                          float downscale_freq_shift, float max_period) {
  if (dim <= 0) fail(Errc::kInvalidArgument, "timestep_embedding: dim must be positive");
  int const half = dim / 2;
  auto const n = static_cast<std::int64_t>(timesteps.size());
  std::vector<float> out(static_cast<std::size_t>(n * dim), 0.0f);
  std::vector<float> freq(static_cast<std::size_t>(half));
  float const neg_log = -std::log(max_period);
  for (int i = 0; i < half; ++i) {
    float const e = (neg_log * static_cast<float>(i)) / (static_cast<float>(half) - downscale_freq_shift);
    freq[static_cast<std::size_t>(i)] = static_cast<float>(std::exp(static_cast<double>(e)));
  }
  for (std::int64_t b = 0; b < n; ++b) {
    float* row = out.data() + b * dim;
    for (int i = 0; i < half; ++i) {
      float const arg = timesteps[static_cast<std::size_t>(b)] * freq[static_cast<std::size_t>(i)];
      auto const s = static_cast<float>(std::sin(static_cast<double>(arg)));
      auto const c = static_cast<float>(std::cos(static_cast<double>(arg)));
      row[i] = flip_sin_to_cos ? c : s;
      row[half + i] = flip_sin_to_cos ? s : c;
    }
  }
  return out;
}

}  // namespace fd::backend::detail
