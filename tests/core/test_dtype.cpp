#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <limits>

#include "fd/core/dtype.hpp"

TEST_CASE("f16 decoding is exact for every bit pattern", "[core][dtype]") {
  // Every half value converts to a float that converts back to the same half (except NaN payload bits
  // beyond what half can hold), and a few reference values hold exactly.
  for (std::uint32_t h = 0; h < 0x10000u; ++h) {
    float const f = fd::f16_to_f32(static_cast<std::uint16_t>(h));
    if (std::isnan(f)) {
      CHECK(((h >> 10) & 0x1f) == 0x1f);
      continue;
    }
    REQUIRE(fd::f32_to_f16(f) == h);
  }
  CHECK(fd::f16_to_f32(0x3c00) == 1.0f);
  CHECK(fd::f16_to_f32(0xc000) == -2.0f);
  CHECK(fd::f16_to_f32(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(fd::f16_to_f32(0x03ff) == std::ldexp(1023.0f, -24));
  CHECK(fd::f16_to_f32(0x7bff) == 65504.0f);
  CHECK(std::isinf(fd::f16_to_f32(0x7c00)));
}

TEST_CASE("f32 to f16 rounds to nearest even and saturates to infinity", "[core][dtype]") {
  CHECK(fd::f32_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);           // tie -> even
  CHECK(fd::f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);       // tie -> even (up)
  CHECK(fd::f32_to_f16(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)) == 0x3c01);
  CHECK(fd::f32_to_f16(65520.0f) == 0x7c00);
  CHECK(fd::f32_to_f16(65519.0f) == 0x7bff);
  CHECK(fd::f32_to_f16(std::ldexp(1.0f, -25)) == 0x0000);                  // tie at half the min subnormal -> 0
  CHECK(fd::f32_to_f16(std::ldexp(1.5f, -25)) == 0x0001);
  CHECK(fd::f32_to_f16(-0.0f) == 0x8000);
  CHECK(((fd::f32_to_f16(std::numeric_limits<float>::quiet_NaN()) & 0x7c00) == 0x7c00));
}

TEST_CASE("bf16 conversions", "[core][dtype]") {
  CHECK(fd::bf16_to_f32(0x3f80) == 1.0f);
  CHECK(fd::f32_to_bf16(1.0f) == 0x3f80);
  CHECK(fd::f32_to_bf16(std::bit_cast<float>(0x3f808000u)) == 0x3f80);  // tie -> even
  CHECK(fd::f32_to_bf16(std::bit_cast<float>(0x3f818000u)) == 0x3f82);  // tie -> even (up)
  CHECK(fd::f32_to_bf16(std::bit_cast<float>(0x3f808001u)) == 0x3f81);
  CHECK(std::isnan(fd::bf16_to_f32(fd::f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST_CASE("dtype names round-trip", "[core][dtype]") {
  for (fd::DType d : {fd::DType::kF32, fd::DType::kF16, fd::DType::kBF16, fd::DType::kI64, fd::DType::kI32,
                      fd::DType::kU8, fd::DType::kF64}) {
    fd::DType back{};
    REQUIRE(fd::parse_dtype(fd::dtype_name(d), back));
    CHECK(back == d);
  }
  fd::DType x{};
  CHECK_FALSE(fd::parse_dtype("F8_E4M3", x));
  CHECK(fd::size_of(fd::DType::kBF16) == 2);
}
