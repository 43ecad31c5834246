#pragma once
/// @file
/// Scalar float log and sincos that round exactly like the vectorised ones PyTorch's x86-64 CPU
/// kernel uses in torch.randn (AVX2 `normal_fill`: Cephes-style polynomials as in J. Pommier's
/// sse_mathfun, built with FMA contraction). They exist only so that fd::random reproduces that
/// kernel bit for bit; they are not general-purpose (accuracy ~1 ulp on the ranges used there,
/// log for x in (0, 1], sincos for |x| < 8192).
///
/// Every multiply-add that the reference compiler fuses is written as an explicit std::fma, and no
/// other product feeds an addition, so the result does not depend on -ffp-contract. Without FMA
/// hardware std::fma is a (slower) library call with the same result.

#include <bit>
#include <cmath>
#include <cstdint>

namespace fd::random::detail {

/// Natural log of x in (0, 1]: x = m * 2^e with m in [sqrt(1/2), sqrt(2)), then
/// log(m) = f - f^2/2 + f^3 P(f) (f = m - 1) and e * log(2) split in two parts for accuracy.
inline float torch_logf(float x) noexcept {
  constexpr float kMinNormal = 1.17549435e-38f;  // denormals are clamped to the smallest normal
  x = x > kMinNormal ? x : kMinNormal;
  std::uint32_t const bits = std::bit_cast<std::uint32_t>(x);
  float e = static_cast<float>(static_cast<std::int32_t>(bits >> 23) - 0x7f) + 1.0f;
  float m = std::bit_cast<float>((bits & ~0x7f800000u) | 0x3f000000u);  // mantissa in [0.5, 1)
  bool const below = m < 0.707106781186547524f;
  float const keep = below ? m : 0.0f;  // below: f = 2m - 1 and one less in the exponent
  m = m - 1.0f;
  e = e - (below ? 1.0f : 0.0f);
  float const f = m + keep;
  float const f2 = f * f;
  float p = std::fma(7.0376836292E-2f, f, -1.1514610310E-1f);
  p = std::fma(p, f, 1.1676998740E-1f);
  p = std::fma(p, f, -1.2420140846E-1f);
  p = std::fma(p, f, 1.4249322787E-1f);
  p = std::fma(p, f, -1.6668057665E-1f);
  p = std::fma(p, f, 2.0000714765E-1f);
  p = std::fma(p, f, -2.4999993993E-1f);
  p = std::fma(p, f, 3.3333331174E-1f);
  float const pf = p * f;
  float const e_lo = e * -2.12194440e-4f;  // log(2) = 0.693359375 - 2.12194440e-4
  float y = std::fma(pf, f2, e_lo);
  y = std::fma(-f2, 0.5f, y);
  return std::fma(e, 0.693359375f, f + y);
}

/// sin and cos of x: reduction by multiples of pi/4 (pi/4 in three parts), then the Cephes sine and
/// cosine polynomials on [-pi/4, pi/4], swapped and signed by the octant.
inline void torch_sincosf(float x, float& sin_out, float& cos_out) noexcept {
  bool const negative = std::signbit(x);
  x = std::fabs(x);
  std::int32_t j = static_cast<std::int32_t>(x * 1.27323954473516f);  // 4 / pi, truncated
  j = (j + 1) & ~1;
  float const k = static_cast<float>(j);
  bool const sin_flip = (j & 4) != 0;
  bool const cos_flip = ((~(j - 2)) & 4) != 0;
  bool const sine_poly_is_sin = (j & 2) == 0;
  x = std::fma(k, -0.78515625f, x);
  x = std::fma(k, -2.4187564849853515625e-4f, x);
  x = std::fma(k, -3.77489497744594108e-8f, x);
  float const z = x * x;

  float c = std::fma(2.443315711809948E-005f, z, -1.388731625493765E-003f);
  c = std::fma(c, z, 4.166664568298827E-002f);
  float const cz = c * z;
  c = std::fma(cz, z, -(z * 0.5f)) + 1.0f;  // cos on [-pi/4, pi/4]

  float s = std::fma(-1.9515295891E-4f, z, 8.3321608736E-3f);
  s = std::fma(s, z, -1.6666654611E-1f);
  float const sz = s * z;
  s = std::fma(sz, x, x);  // sin on [-pi/4, pi/4]

  float const sv = sine_poly_is_sin ? s : c;
  float const cv = sine_poly_is_sin ? c : s;
  sin_out = (negative != sin_flip) ? -sv : sv;
  cos_out = cos_flip ? -cv : cv;
}

}  // namespace fd::random::detail
