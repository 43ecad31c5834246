// CPU ops of the image decoders: relu_, tanh_clamp_, clamp_, composite_tile_.

#include <cmath>

#include <catch2/catch.hpp>

#include "fd/fd.hpp"

namespace {
using Cpu = fd::backend::Cpu;
using T = fd::Tensor<Cpu>;
}  // namespace

TEST_CASE("relu_, tanh_clamp_ and clamp_ act elementwise in place", "[ops][vae]") {
  Cpu be{{.threads = 2}};
  std::vector<float> const v{-5.0f, -0.5f, 0.0f, 0.25f, 2.0f, 40.0f};
  T x = T::from_host(be, {2, 3}, v);
  relu_(be, x);
  CHECK(x.to_vector_f32(be) == std::vector<float>{0.0f, 0.0f, 0.0f, 0.25f, 2.0f, 40.0f});

  T y = T::from_host(be, {6}, v);
  tanh_clamp_(be, y, 3.0f);
  auto const out = y.to_vector_f32(be);
  for (std::size_t i = 0; i < v.size(); ++i) CHECK(out[i] == Approx(std::tanh(v[i] / 3.0f) * 3.0f).epsilon(1e-6));
  CHECK(out[5] <= 3.0f);  // tanh saturates to 1 in float32 here
  T bad = T::from_host(be, {6}, v);
  CHECK_THROWS_AS(tanh_clamp_(be, bad, 0.0f), fd::error);

  T z = T::from_host(be, {6}, v);
  clamp_(be, z, 0.0f, 1.0f);
  CHECK(z.to_vector_f32(be) == std::vector<float>{0.0f, 0.0f, 0.0f, 0.25f, 1.0f, 1.0f});
}

TEST_CASE("composite_tile_ cross-fades linearly over the ramps and copies elsewhere", "[ops][vae]") {
  Cpu be{{.threads = 2}};
  // dst 1x1x4x6 all 10; tile 1x1x3x4 all 20 at (1, 2) with ramp_top 2, ramp_left 1.
  T dst = T::from_host(be, {1, 1, 4, 6}, std::vector<float>(24, 10.0f));
  T tile = T::from_host(be, {1, 1, 3, 4}, std::vector<float>(12, 20.0f));
  composite_tile_(be, dst, tile, 1, 2, 2, 1);
  auto const d = dst.to_vector_f32(be);
  auto at = [&](int y, int x) { return d[static_cast<std::size_t>(y * 6 + x)]; };
  CHECK(at(0, 3) == 10.0f);  // outside the tile
  CHECK(at(1, 1) == 10.0f);
  // row 0 of the tile: ry = 1/3; column 0 of the tile: rx = 1/2.
  CHECK(at(1, 2) == Approx(10.0f + 10.0f * (1.0f / 3.0f) * 0.5f));
  CHECK(at(1, 3) == Approx(10.0f + 10.0f / 3.0f));
  CHECK(at(2, 3) == Approx(10.0f + 10.0f * 2.0f / 3.0f));
  CHECK(at(3, 2) == Approx(15.0f));  // past the top ramp, in the left ramp
  CHECK(at(3, 5) == 20.0f);          // past both ramps: the tile itself
  CHECK(at(3, 1) == 10.0f);

  // Ramps of zero paste the tile exactly.
  T dst2 = T::zeros(be, {2, 3, 5, 5});
  std::vector<float> vals(2 * 3 * 2 * 2);
  for (std::size_t i = 0; i < vals.size(); ++i) vals[i] = static_cast<float>(i) * 0.37f;
  composite_tile_(be, dst2, T::from_host(be, {2, 3, 2, 2}, vals), 3, 1, 0, 0);
  CHECK(dst2.slice(2, 3, 5).slice(3, 1, 3).contiguous(be).to_vector_f32(be) == vals);

  // Two overlapping tiles: the overlap is a partition of unity (constant tiles give a linear ramp).
  T row = T::zeros(be, {1, 1, 1, 10});
  composite_tile_(be, row, T::from_host(be, {1, 1, 1, 6}, std::vector<float>(6, 0.0f)), 0, 0, 0, 0);
  composite_tile_(be, row, T::from_host(be, {1, 1, 1, 6}, std::vector<float>(6, 1.0f)), 0, 4, 0, 2);
  auto const r = row.to_vector_f32(be);
  CHECK(r[3] == 0.0f);
  CHECK(r[4] == Approx(1.0f / 3.0f));
  CHECK(r[5] == Approx(2.0f / 3.0f));
  CHECK(r[6] == 1.0f);

  CHECK_THROWS_AS(composite_tile_(be, dst, tile, 2, 3, 0, 0), fd::error);  // does not fit
  CHECK_THROWS_AS(composite_tile_(be, dst, tile, 0, 0, 4, 0), fd::error);  // ramp longer than the tile
}
