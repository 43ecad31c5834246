#pragma once
/// @file
/// Random parameter initialisation, for benchmarks and tests at real shapes without real weights.

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "fd/backend/traits.hpp"
#include "fd/core/tensor.hpp"

namespace fd::nn {

namespace detail {

// Counter-based: value i of stream s depends only on (s, i), so filling is parallel and reproducible.
inline std::uint64_t splitmix64(std::uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/// Approximately standard normal (Irwin-Hall sum of four 16-bit uniforms, unit variance).
inline float approx_normal(std::uint64_t stream, std::uint64_t i) noexcept {
  std::uint64_t const h = splitmix64(stream * 0x632be59bd9b4e019ull + i);
  float sum = 0.0f;
  for (int k = 0; k < 4; ++k) sum += static_cast<float>((h >> (16 * k)) & 0xffffu) * (1.0f / 65536.0f);
  return (sum - 2.0f) * 1.7320508f;
}

}  // namespace detail

/// Fills every parameter `module.visit` reports: matrices and kernels N(0, 1/fan_in), normalisation
/// weights 1 + 0.1 N(0,1), other vectors 0.05 N(0,1) (the rules of the golden fixtures, so
/// activations keep a realistic scale through deep stacks). Approximately normal, reproducible per seed.
template <class B, class Module>
void init_random(B const& be, Module& module, std::uint64_t seed = 0) {
  std::uint64_t stream = seed * 1000003ull;
  module.visit(
      [&](std::string const& name, Tensor<B>& t) {
        std::int64_t const n = t.numel();
        std::uint64_t const s = ++stream;
        bool const matrix = t.rank() >= 2;
        float const scale = matrix ? 1.0f / std::sqrt(static_cast<float>(n / t.dim(0))) : 1.0f;
        bool const norm_weight = !matrix && name.find("norm") != std::string::npos && name.ends_with("weight");
        auto value = [&](std::int64_t i) {
          float const z = detail::approx_normal(s, static_cast<std::uint64_t>(i));
          return matrix ? z * scale : (norm_weight ? 1.0f + 0.1f * z : 0.05f * z);
        };
        if constexpr (backend::HostBackend<B>) {
          if (t.is_contiguous() && t.dtype() == DType::kF32) {
            float* d = t.template data<float>();
#pragma omp parallel for schedule(static)
            for (std::int64_t i = 0; i < n; ++i) d[i] = value(i);
            return;
          }
        }
        std::vector<float> v(static_cast<std::size_t>(n));
#pragma omp parallel for schedule(static)
        for (std::int64_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = value(i);
        Tensor<B>::from_host(be, t.shape(), v).to(be, t.dtype()).copy_to(be, t);
      },
      std::string());
}

}  // namespace fd::nn
