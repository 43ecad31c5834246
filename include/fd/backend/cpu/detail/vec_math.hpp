#pragma once
/// @file
/// Branch-free float math that GCC and Clang vectorise at -O3 (no -ffast-math or libmvec needed), so
/// softmax, SiLU and GELU run on the vector units whatever flags the including program uses.

#include <bit>
#include <cmath>
#include <cstdint>

namespace fd::backend::cpu::detail {

/// e^x for float32, within 2 ulp of the correctly rounded value over [-87, 88]; saturates outside
/// (to about 1.2e-38 below and 2.4e38 above, never 0 or infinity).
inline float exp_f32(float x) noexcept {
  // The upper clamp is 127.5 * ln 2, not ln(FLT_MAX): above it n rounds to 128 and the exponent
  // bits built below would encode infinity instead of saturating.
  x = x < -87.33654f ? -87.33654f : x;
  x = x > 88.3762626647949f ? 88.3762626647949f : x;
  // Round x*log2(e) to an integer n with the 1.5*2^23 trick (exact for |n| < 2^22).
  float const magic = 12582912.0f;
  float const t = x * 1.44269504088896341f + magic;
  float const n = t - magic;
  // r = x - n*ln2 in two pieces so r stays exact for every n in range.
  float r = x - n * 0.693145751953125f;
  r = r - n * 1.428606765330187045e-06f;
  // Minimax polynomial for e^r on [-ln2/2, ln2/2] (Cephes expf coefficients).
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  std::int32_t const ni = std::bit_cast<std::int32_t>(t) - std::bit_cast<std::int32_t>(magic);
  return p * std::bit_cast<float>((ni + 127) << 23);
}

/// x * sigmoid(x)
inline float silu_f32(float x) noexcept { return x / (1.0f + exp_f32(-x)); }

/// erfc(x) from the Chebyshev fit of Numerical Recipes' erfcc (1.2e-7 relative in exact arithmetic).
/// Evaluated in float: about 3e-7 absolute near 0 and 6e-8 * x^2 relative in the tail (x*x is rounded
/// before the exponential); underflows to ~1e-39 past x = 9.3. GELU built on it stays within
/// 2e-7 * max(1, |x|).
inline float erfc_f32(float x) noexcept {
  float const z = x < 0.0f ? -x : x;
  float const t = 1.0f / (1.0f + 0.5f * z);
  float p = 0.17087277f;
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  float const r = t * exp_f32(-z * z + p);
  return x < 0.0f ? 2.0f - r : r;
}

/// GELU with the exact erf form (torch.nn.GELU(approximate="none")): x * Phi(x) = 0.5 x erfc(-x/sqrt 2).
inline float gelu_f32(float x) noexcept { return 0.5f * x * erfc_f32(-x * 0.70710678118654752f); }

}  // namespace fd::backend::cpu::detail
