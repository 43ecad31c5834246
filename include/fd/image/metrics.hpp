#pragma once
/// @file
/// Image comparison: PSNR between two 8-bit images, the number FasterDiffusion results are reported with.

#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>

#include "fd/error.hpp"

namespace fd::image {

/// Peak signal-to-noise ratio in dB between two 8-bit images of the same size (peak 255);
/// +infinity for identical images.
inline double psnr(std::span<std::uint8_t const> a, std::span<std::uint8_t const> b) {
  if (a.size() != b.size() || a.empty()) {
    fail(Errc::kShapeMismatch, "psnr: images of " + std::to_string(a.size()) + " and " + std::to_string(b.size()) +
                                   " values cannot be compared");
  }
  double se = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    double const d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    se += d * d;
  }
  if (se == 0) return std::numeric_limits<double>::infinity();
  double const mse = se / static_cast<double>(a.size());
  return 10.0 * std::log10(255.0 * 255.0 / mse);
}

}  // namespace fd::image
