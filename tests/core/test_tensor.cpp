#include <catch2/catch.hpp>

#include <numeric>
#include <vector>

#include "fd/backend/cpu/backend.hpp"
#include "fd/core/tensor.hpp"

using B = fd::backend::Cpu;
using T = fd::Tensor<B>;

namespace {
T iota(B const& be, fd::Shape s) {
  std::vector<float> v(static_cast<std::size_t>(s.numel()));
  std::iota(v.begin(), v.end(), 0.0f);
  return T::from_host(be, s, v);
}
}  // namespace

TEST_CASE("shape and contiguous strides", "[core][shape]") {
  for (auto const& s : {fd::Shape{}, fd::Shape{5}, fd::Shape{2, 3}, fd::Shape{2, 1, 4, 3}, fd::Shape{0, 3}}) {
    fd::Shape const st = fd::contiguous_strides(s);
    if (s.rank() > 0) CHECK(st[s.rank() - 1] == 1);
    for (int i = 0; i + 1 < s.rank(); ++i) CHECK(st[i] == st[i + 1] * s[i + 1]);
  }
  CHECK(fd::Shape{2, 3, 4}.numel() == 24);
  CHECK(fd::Shape{}.numel() == 1);
  CHECK(fd::Shape{2, 3}.str() == "[2, 3]");
  CHECK_THROWS_AS(fd::Shape{2}.at(3), fd::error);
}

TEST_CASE("views share storage and satisfy their contracts", "[core][tensor]") {
  B be{{.threads = 1}};
  T x = iota(be, {2, 3, 4});
  REQUIRE(x.is_contiguous());

  T r = x.reshape({6, -1});
  CHECK(r.shape() == fd::Shape{6, 4});
  CHECK(r.shares_storage_with(x));
  CHECK_THROWS_AS(x.reshape({5, 5}), fd::error);

  T s = x.slice(1, 1, 3);  // [2, 2, 4]
  CHECK(s.shape() == fd::Shape{2, 2, 4});
  CHECK_FALSE(s.is_contiguous());
  CHECK(s.shares_storage_with(x));
  auto sv = s.to_vector_f32(be);
  CHECK(sv[0] == 4.0f);   // x[0,1,0]
  CHECK(sv[8] == 16.0f);  // x[1,1,0]
  CHECK_THROWS_AS(s.reshape({16}), fd::error);
  CHECK_THROWS_AS(x.slice(1, 2, 5), fd::error);

  T c = s.contiguous(be);
  CHECK(c.is_contiguous());
  CHECK_FALSE(c.shares_storage_with(x));
  CHECK(c.to_vector_f32(be) == sv);

  T p = x.permute({2, 0, 1});  // [4, 2, 3]
  CHECK(p.shape() == fd::Shape{4, 2, 3});
  auto pv = p.to_vector_f32(be);
  CHECK(pv[1 * 6 + 1 * 3 + 2] == 1 * 12 + 2 * 4 + 1);  // p[1,1,2] = x[1,2,1]

  T sel = x.select(0, 1);
  CHECK(sel.shape() == fd::Shape{3, 4});
  CHECK(sel.to_vector_f32(be)[0] == 12.0f);

  T u = x.unsqueeze(1);
  CHECK(u.shape() == fd::Shape{2, 1, 3, 4});
  CHECK(u.is_contiguous());
}

TEST_CASE("dtype conversion and typed access", "[core][tensor]") {
  B be{{.threads = 1}};
  T x = T::from_host(be, {3}, std::vector<float>{1.0f, -2.5f, 65504.0f});
  T h = x.to(be, fd::DType::kF16);
  CHECK(h.dtype() == fd::DType::kF16);
  CHECK(h.nbytes() == 6);
  CHECK(h.to_vector_f32(be) == x.to_vector_f32(be));
  CHECK_THROWS_AS(h.data<float>(), fd::error);
  T z = T::zeros(be, {2, 2});
  for (float v : z.to_vector_f32(be)) CHECK(v == 0.0f);
  CHECK_THROWS_AS(T::from_host(be, {4}, std::vector<float>{1, 2}), fd::error);
}

TEST_CASE("cpu backend pools buffers and honours the thread count", "[core][backend]") {
  B be{{.threads = 3}};
  CHECK(be.threads() == 3);
  std::byte* first = nullptr;
  {
    auto a = be.allocate(1000);
    first = a.get();
  }
  auto b = be.allocate(1000);
  CHECK(b.get() == first);  // recycled
  CHECK(reinterpret_cast<std::uintptr_t>(b.get()) % 64 == 0);
  CHECK_THROWS_AS(be.set_threads(-1), fd::error);
}
