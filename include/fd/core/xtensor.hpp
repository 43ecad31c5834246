#pragma once
/// @file
/// Conversion between fd tensors and xtensor containers at the API edge (inputs in, results out).
/// Conversions copy: an xarray owns its memory and fd tensors live in backend memory.
///
/// @code
///   xt::xarray<float> noise = xt::random::randn<float>({1, 4, 64, 64});
///   auto x = fd::from_xtensor(cpu, noise);          // Tensor<Cpu>, F32, [1, 4, 64, 64]
///   xt::xarray<float> y = fd::to_xtensor<float>(cpu, unet.forward(x, t, ctx));
/// @endcode

#include <cstdint>
#include <vector>

#include <xtensor/xarray.hpp>

#include "fd/backend/traits.hpp"
#include "fd/core/tensor.hpp"

namespace fd {

/// A tensor with the shape and values of `a` (row-major), in dtype `dtype` (floating dtypes convert
/// through float32).
/// @post result.shape() == a.shape(), result.is_contiguous().
template <class B, class E>
Tensor<B> from_xtensor(B const& be, E const& expr, DType dtype = DType::kF32) {
  static_assert(backend::Backend<B>, "from_xtensor: B is not an fd backend (see docs/extending.md#backends)");
  xt::xarray<float, xt::layout_type::row_major> const a = expr;  // evaluates expressions and views
  Shape s;
  for (auto d : a.shape()) s.push_back(static_cast<std::int64_t>(d));
  Tensor<B> t = Tensor<B>::from_host(be, s, a.data());
  return dtype == DType::kF32 ? t : t.to(be, dtype);
}

/// An xarray<T> (row-major) with the shape and values of `t` (any floating or integer dtype).
template <class T = float, class B>
xt::xarray<T, xt::layout_type::row_major> to_xtensor(B const& be, Tensor<B> const& t) {
  static_assert(backend::Backend<B>, "to_xtensor: B is not an fd backend (see docs/extending.md#backends)");
  std::vector<std::size_t> shape;
  for (int i = 0; i < t.rank(); ++i) shape.push_back(static_cast<std::size_t>(t.dim(i)));
  xt::xarray<T, xt::layout_type::row_major> out(shape);
  std::vector<float> const v = t.to_vector_f32(be);
  std::copy(v.begin(), v.end(), out.begin());
  return out;
}

}  // namespace fd
