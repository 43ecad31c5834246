#include <catch2/catch.hpp>

#include <xtensor/xbuilder.hpp>
#include <xtensor/xview.hpp>

#include "fd/backend/cpu/backend.hpp"
#include "fd/core/xtensor.hpp"

using B = fd::backend::Cpu;

TEST_CASE("xtensor round trip keeps shape and values", "[core][xtensor]") {
  B be{{.threads = 1}};
  xt::xarray<float> a = xt::arange<float>(24.0f);
  a.reshape({2, 3, 4});
  auto t = fd::from_xtensor(be, a);
  CHECK(t.shape() == fd::Shape{2, 3, 4});
  CHECK(t.dtype() == fd::DType::kF32);
  auto back = fd::to_xtensor(be, t);
  bool const same = back == a;  // xtensor's operators would capture Catch's decomposer
  CHECK(same);

  // Views and expressions evaluate on the way in; non-contiguous tensors gather on the way out.
  auto v = fd::from_xtensor(be, xt::view(a, 1, xt::all(), xt::range(1, 3)) * 2.0f);
  CHECK(v.shape() == fd::Shape{3, 2});
  float const got = fd::to_xtensor(be, v)(2, 1);
  CHECK(got == 2.0f * a(1, 2, 2));
  auto sliced = fd::to_xtensor(be, t.slice(2, 1, 2));
  CHECK(sliced.shape()[2] == 1);
  float const s120 = sliced(1, 2, 0);
  CHECK(s120 == a(1, 2, 1));

  // Storage dtypes convert on the way in and back.
  auto h = fd::from_xtensor(be, a, fd::DType::kF16);
  CHECK(h.dtype() == fd::DType::kF16);
  double const h123 = fd::to_xtensor<double>(be, h)(1, 2, 3);
  CHECK(h123 == 23.0);
}
