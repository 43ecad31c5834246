#pragma once
/// @file
/// Element types and exact conversions between the storage formats of checkpoints (f16, bf16) and f32.

#include <bit>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fd/error.hpp"

namespace fd {

enum class DType : std::uint8_t { kF32, kF16, kBF16, kI64, kI32, kU8, kF64 };

constexpr std::size_t size_of(DType t) noexcept {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kF16: return 2;
    case DType::kBF16: return 2;
    case DType::kI64: return 8;
    case DType::kI32: return 4;
    case DType::kU8: return 1;
    case DType::kF64: return 8;
  }
  return 0;
}

/// The spelling safetensors uses ("F32", "F16", ...).
constexpr std::string_view dtype_name(DType t) noexcept {
  switch (t) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kI64: return "I64";
    case DType::kI32: return "I32";
    case DType::kU8: return "U8";
    case DType::kF64: return "F64";
  }
  return "?";
}

/// Parses a safetensors dtype string; returns false for names fd does not handle.
constexpr bool parse_dtype(std::string_view s, DType& out) noexcept {
  constexpr DType all[] = {DType::kF32, DType::kF16, DType::kBF16, DType::kI64, DType::kI32, DType::kU8, DType::kF64};
  for (DType d : all) {
    if (dtype_name(d) == s) {
      out = d;
      return true;
    }
  }
  return false;
}

constexpr bool is_floating(DType t) noexcept {
  return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16 || t == DType::kF64;
}

template <class T>
struct dtype_of;
template <>
struct dtype_of<float> {
  static constexpr DType value = DType::kF32;
};
template <>
struct dtype_of<double> {
  static constexpr DType value = DType::kF64;
};
template <>
struct dtype_of<std::int64_t> {
  static constexpr DType value = DType::kI64;
};
template <>
struct dtype_of<std::int32_t> {
  static constexpr DType value = DType::kI32;
};
template <>
struct dtype_of<std::uint8_t> {
  static constexpr DType value = DType::kU8;
};

/// IEEE binary16 -> binary32, exact for every input (subnormals, infinities, NaN payload kept).
constexpr float f16_to_f32(std::uint16_t h) noexcept {
  std::uint32_t const sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t mant = h & 0x3ffu;
  std::uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {
      // Subnormal half: normalise into a float exponent.
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400u) == 0);
      bits = sign | static_cast<std::uint32_t>(127 - 15 - e) << 23 | (mant & 0x3ffu) << 13;
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | mant << 13;
  } else {
    bits = sign | (exp + 112) << 23 | mant << 13;
  }
  return std::bit_cast<float>(bits);
}

/// binary32 -> binary16 with round-to-nearest-even (what torch's .half() does).
constexpr std::uint16_t f32_to_f16(float f) noexcept {
  std::uint32_t const x = std::bit_cast<std::uint32_t>(f);
  std::uint32_t const sign = (x >> 16) & 0x8000u;
  std::uint32_t const absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) {  // inf or NaN
    return static_cast<std::uint16_t>(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u));
  }
  if (absx >= 0x477ff000u) {  // rounds to >= 65520: overflow to inf
    return static_cast<std::uint16_t>(sign | 0x7c00u);
  }
  if (absx < 0x38800000u) {  // result is subnormal or zero
    if (absx < 0x33000000u) {
      return static_cast<std::uint16_t>(sign);
    }
    std::uint32_t const e = absx >> 23;
    std::uint32_t const m = (absx & 0x7fffffu) | 0x800000u;
    std::uint32_t const shift = 126 - e;  // 14..24 + 1
    std::uint32_t r = m >> shift;
    std::uint32_t const rem = m & ((1u << shift) - 1u);
    std::uint32_t const half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) {
      ++r;
    }
    return static_cast<std::uint16_t>(sign | r);
  }
  std::uint32_t r = absx - 0x38000000u;  // rebias exponent 127 -> 15
  std::uint32_t const rem = r & 0x1fffu;
  r >>= 13;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) {
    ++r;
  }
  return static_cast<std::uint16_t>(sign | r);
}

constexpr float bf16_to_f32(std::uint16_t b) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

/// binary32 -> bfloat16 with round-to-nearest-even; NaN stays NaN.
constexpr std::uint16_t f32_to_bf16(float f) noexcept {
  std::uint32_t const x = std::bit_cast<std::uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) {
    return static_cast<std::uint16_t>((x >> 16) | 0x40u);
  }
  std::uint32_t const rounding = 0x7fffu + ((x >> 16) & 1u);
  return static_cast<std::uint16_t>((x + rounding) >> 16);
}

/// Converts n elements of any numeric dtype to float32 (integers exactly where representable).
inline void convert_to_f32(DType src_type, void const* src, float* dst, std::size_t n) {
  switch (src_type) {
    case DType::kF32: {
      auto const* s = static_cast<float const*>(src);
      for (std::size_t i = 0; i < n; ++i) dst[i] = s[i];
      return;
    }
    case DType::kF16: {
      auto const* s = static_cast<std::uint16_t const*>(src);
      for (std::size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
      return;
    }
    case DType::kBF16: {
      auto const* s = static_cast<std::uint16_t const*>(src);
      for (std::size_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
      return;
    }
    case DType::kF64: {
      auto const* s = static_cast<double const*>(src);
      for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(s[i]);
      return;
    }
    case DType::kI64: {
      auto const* s = static_cast<std::int64_t const*>(src);
      for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(s[i]);
      return;
    }
    case DType::kI32: {
      auto const* s = static_cast<std::int32_t const*>(src);
      for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(s[i]);
      return;
    }
    case DType::kU8: {
      auto const* s = static_cast<std::uint8_t const*>(src);
      for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(s[i]);
      return;
    }
  }
  fail(Errc::kDTypeMismatch, "convert_to_f32: unknown dtype");
}

/// Converts n float32 values to a floating storage dtype (f32, f16, bf16, f64).
inline void convert_from_f32(float const* src, DType dst_type, void* dst, std::size_t n) {
  switch (dst_type) {
    case DType::kF32: {
      auto* d = static_cast<float*>(dst);
      for (std::size_t i = 0; i < n; ++i) d[i] = src[i];
      return;
    }
    case DType::kF16: {
      auto* d = static_cast<std::uint16_t*>(dst);
      for (std::size_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
      return;
    }
    case DType::kBF16: {
      auto* d = static_cast<std::uint16_t*>(dst);
      for (std::size_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
      return;
    }
    case DType::kF64: {
      auto* d = static_cast<double*>(dst);
      for (std::size_t i = 0; i < n; ++i) d[i] = src[i];
      return;
    }
    default:
      fail(Errc::kDTypeMismatch, "convert_from_f32: target dtype " + std::string(dtype_name(dst_type)) +
                                     " is not a floating type");
  }
}

}  // namespace fd
