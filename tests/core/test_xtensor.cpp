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
  CHECK(back == a);

  // Views and expressions evaluate on the way in; non-contiguous tensors gather on the way out.
  auto v = fd::from_xtensor(be, xt::view(a, 1, xt::all(), xt::range(1, 3)) * 2.0f);
  CHECK(v.shape() == fd::Shape{3, 2});
  CHECK(fd::to_xtensor(be, v)(2, 1) == 2.0f * a(1, 2, 2));
  auto sliced = fd::to_xtensor(be, t.slice(2, 1, 2));
  CHECK(sliced.shape()[2] == 1);
  CHECK(sliced(1, 2, 0) == a(1, 2, 1));

  // Storage dtypes convert on the way in and back.
  auto h = fd::from_xtensor(be, a, fd::DType::kF16);
  CHECK(h.dtype() == fd::DType::kF16);
  CHECK(fd::to_xtensor<double>(be, h)(1, 2, 3) == 23.0);
}
