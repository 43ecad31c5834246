#pragma once
/// @file
/// fd::image::resize_lanczos: PIL's Image.resize(size, Image.LANCZOS) on 8-bit RGB, to the byte:
/// separable passes (horizontal first, into 8 bits, then vertical), a Lanczos-3 kernel widened by the
/// downscale factor, each output's weights normalised to sum 1 and then rounded to 22-bit fixed point,
/// accumulation in integers from half a unit, results clipped to 0..255. diffusers' control-image
/// processor resizes this way, so the same input gives the same conditioning bytes.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "fd/error.hpp"
#include "fd/io/jpeg.hpp"

namespace fd::image {

namespace detail {

constexpr int kPrecisionBits = 32 - 8 - 2;

inline double sinc(double x) {
  if (x == 0.0) return 1.0;
  x *= 3.14159265358979323846;
  return std::sin(x) / x;
}

inline double lanczos3(double x) { return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3.0) : 0.0; }

// Per output position: first input index, count, and fixed-point weights (ksize per position).
struct Coeffs {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<std::int32_t> k;
};

inline Coeffs lanczos_coeffs(int in_size, int out_size) {
  double const scale = static_cast<double>(in_size) / out_size;
  double const filterscale = std::max(scale, 1.0);
  double const support = 3.0 * filterscale;
  Coeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.first.resize(static_cast<std::size_t>(out_size));
  c.count.resize(static_cast<std::size_t>(out_size));
  c.k.assign(static_cast<std::size_t>(out_size) * static_cast<std::size_t>(c.ksize), 0);
  std::vector<double> w(static_cast<std::size_t>(c.ksize));
  for (int xx = 0; xx < out_size; ++xx) {
    double const center = (xx + 0.5) * scale;
    double const ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    xmin = std::max(xmin, 0);
    int xmax = static_cast<int>(center + support + 0.5);
    xmax = std::min(xmax, in_size) - xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      w[static_cast<std::size_t>(x)] = lanczos3((x + xmin - center + 0.5) * ss);
      ww += w[static_cast<std::size_t>(x)];
    }
    for (int x = 0; x < xmax; ++x) {
      double const v = ww != 0.0 ? w[static_cast<std::size_t>(x)] / ww : w[static_cast<std::size_t>(x)];
      double const scaled = v * static_cast<double>(1 << kPrecisionBits);
      c.k[static_cast<std::size_t>(xx) * static_cast<std::size_t>(c.ksize) + static_cast<std::size_t>(x)] =
          static_cast<std::int32_t>(v < 0 ? -0.5 + scaled : 0.5 + scaled);
    }
    c.first[static_cast<std::size_t>(xx)] = xmin;
    c.count[static_cast<std::size_t>(xx)] = xmax;
  }
  return c;
}

inline std::uint8_t clip8(std::int32_t v) {
  std::int32_t const s = v >> kPrecisionBits;  // arithmetic shift: floor, as PIL's lookup table
  return static_cast<std::uint8_t>(std::clamp(s, 0, 255));
}

}  // namespace detail

/// PIL's resize((width, height), LANCZOS) of an 8-bit RGB image.
inline io::Rgb8 resize_lanczos(io::Rgb8 const& in, int width, int height) {
  if (width <= 0 || height <= 0) fail(Errc::kInvalidArgument, "resize: target size must be positive");
  if (in.width <= 0 || in.height <= 0 ||
      in.rgb.size() != static_cast<std::size_t>(in.width) * static_cast<std::size_t>(in.height) * 3) {
    fail(Errc::kInvalidArgument, "resize: the source image is empty or its pixel buffer has the wrong size");
  }
  if (width == in.width && height == in.height) return in;
  using detail::Coeffs;
  Coeffs const v = detail::lanczos_coeffs(in.height, height);
  // Source rows the vertical pass reads (PIL resamples only those horizontally).
  int const y_first = v.first.front();
  int const y_last = v.first.back() + v.count.back();
  io::Rgb8 tmp = in;
  int row0 = 0;
  if (width != in.width) {
    Coeffs const h = detail::lanczos_coeffs(in.width, width);
    int const rows = y_last - y_first;
    tmp = io::Rgb8{width, rows, std::vector<std::uint8_t>(static_cast<std::size_t>(width) * rows * 3)};
    for (int y = 0; y < rows; ++y) {
      std::uint8_t const* src = in.rgb.data() + static_cast<std::size_t>(y + y_first) * in.width * 3;
      std::uint8_t* dst = tmp.rgb.data() + static_cast<std::size_t>(y) * width * 3;
      for (int xx = 0; xx < width; ++xx) {
        std::int32_t const* k = h.k.data() + static_cast<std::size_t>(xx) * h.ksize;
        int const xmin = h.first[static_cast<std::size_t>(xx)], n = h.count[static_cast<std::size_t>(xx)];
        for (int c = 0; c < 3; ++c) {
          std::int32_t ss = 1 << (detail::kPrecisionBits - 1);
          for (int x = 0; x < n; ++x) ss += static_cast<std::int32_t>(src[(x + xmin) * 3 + c]) * k[x];
          dst[xx * 3 + c] = detail::clip8(ss);
        }
      }
    }
    row0 = y_first;
  }
  if (height == in.height) return tmp;
  io::Rgb8 out{width, height, std::vector<std::uint8_t>(static_cast<std::size_t>(width) * height * 3)};
  for (int yy = 0; yy < height; ++yy) {
    std::int32_t const* k = v.k.data() + static_cast<std::size_t>(yy) * v.ksize;
    int const ymin = v.first[static_cast<std::size_t>(yy)] - row0, n = v.count[static_cast<std::size_t>(yy)];
    for (int xx = 0; xx < width * 3; ++xx) {
      std::int32_t ss = 1 << (detail::kPrecisionBits - 1);
      for (int y = 0; y < n; ++y) {
        ss += static_cast<std::int32_t>(tmp.rgb[static_cast<std::size_t>(y + ymin) * width * 3 + xx]) * k[y];
      }
      out.rgb[static_cast<std::size_t>(yy) * width * 3 + xx] = detail::clip8(ss);
    }
  }
  return out;
}

/// diffusers' control image for a request of height x width: the image resized (LANCZOS) when its size
/// differs, then [3, height, width] floats in [0, 1] (bytes / 255, RGB order, not normalised to [-1, 1]).
inline std::vector<float> prepare_control_image(io::Rgb8 const& image, int width, int height) {
  io::Rgb8 const r = resize_lanczos(image, width, height);
  std::size_t const plane = static_cast<std::size_t>(width) * static_cast<std::size_t>(height);
  std::vector<float> out(plane * 3);
  for (std::size_t i = 0; i < plane; ++i) {
    for (std::size_t c = 0; c < 3; ++c) out[c * plane + i] = static_cast<float>(r.rgb[i * 3 + c]) / 255.0f;
  }
  return out;
}

/// diffusers' default output size for a control image: its size rounded down to a multiple of `factor`
/// (the VAE's scale factor).
inline std::pair<int, int> default_size_for(io::Rgb8 const& image, int factor) {
  return {image.width / factor * factor, image.height / factor * factor};
}

}  // namespace fd::image
