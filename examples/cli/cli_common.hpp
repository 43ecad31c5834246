#pragma once
// Shared helpers of the fasterdiffusion subcommands: timing, inputs-file access, comparison.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include <fd/fd.hpp>

namespace fdcli {

using Backend = fd::backend::Cpu;
using Tensor = fd::Tensor<Backend>;

inline double now_ms() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double, std::milli>(clock::now().time_since_epoch()).count();
}

struct Timing {
  double median_ms = 0, min_ms = 0;
};

inline Timing summarize(std::vector<double> v) {
  Timing t;
  if (v.empty()) return t;
  std::sort(v.begin(), v.end());
  t.min_ms = v.front();
  std::size_t const n = v.size();
  t.median_ms = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  return t;
}

/// A required input tensor, finite, converted to float32.
inline Tensor require_input(Backend const& be, fd::io::SafeTensorsFile const& in, std::string const& name) {
  if (!in.contains(name)) {
    fd::fail(fd::Errc::kMissingTensor, in.path().string() + ": missing input tensor '" + name + "'");
  }
  in.require_finite(name);
  return in.load(be, name, fd::DType::kF32);
}

/// The values of a small input tensor (timesteps), finite.
inline std::vector<float> input_values(Backend const& be, fd::io::SafeTensorsFile const& in, std::string const& name) {
  return require_input(be, in, name).to_vector_f32(be);
}

/// The noise-injection coefficient of a --noise-injection value ("off" = none).
inline std::optional<float> parse_injection(std::string const& text) {
  if (text == "off") return std::nullopt;
  try {
    std::size_t used = 0;
    float const v = std::stof(text, &used);
    if (used == text.size() && std::isfinite(v)) return v;
  } catch (std::exception const&) {
  }
  fd::fail(fd::Errc::kConfig, "--noise-injection '" + text + "': expected a number or off");
}

}  // namespace fdcli
