#pragma once
// Comparison helpers for parity tests: errors relative to the reference tensor's largest magnitude,
// the criterion the golden fixtures' README states.

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "fd/backend/cpu/backend.hpp"
#include "fd/core/tensor.hpp"

namespace fdtest {

/// max|a - b| / max|b|; +inf when shapes differ or a holds NaN.
inline double rel_to_max(fd::backend::Cpu const& be, fd::Tensor<fd::backend::Cpu> const& a,
                         fd::Tensor<fd::backend::Cpu> const& b) {
  if (!(a.shape() == b.shape())) return INFINITY;
  auto const x = a.to_vector_f32(be);
  auto const y = b.to_vector_f32(be);
  double m = 0, d = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) return INFINITY;
    m = std::max(m, std::fabs(static_cast<double>(y[i])));
    d = std::max(d, std::fabs(static_cast<double>(x[i]) - y[i]));
  }
  return m > 0 ? d / m : d;
}

/// The golden fixtures: $FD_FIXTURES_DIR when set (a test binary carried to another machine), else
/// the folder configured at build time.
inline std::string fixtures_dir() {
  char const* env = std::getenv("FD_FIXTURES_DIR");
  return env && *env ? env : FD_FIXTURES_DIR;
}

}  // namespace fdtest
