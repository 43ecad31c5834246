#pragma once
/// @file
/// Decoder output -> viewable pixels, as diffusers' VaeImageProcessor does for PIL output:
/// x -> clamp(x / 2 + 0.5, 0, 1) -> round-half-to-even(x * 255), channels last.

#include <cmath>
#include <cstdint>
#include <vector>

#include "fd/core/tensor.hpp"
#include "fd/error.hpp"

namespace fd::image {

/// [N, C, H, W] in [-1, 1] -> [N, C, H, W] in [0, 1]: clamp(x / 2 + 0.5, 0, 1).
template <class B>
Tensor<B> denormalize(B const& be, Tensor<B> const& image) {
  Tensor<B> y = image.clone(be);
  scale_(be, y, 0.5f);
  add_scalar_(be, y, 0.5f);
  clamp_(be, y, 0.0f, 1.0f);
  return y;
}

/// [N, C, H, W] in [-1, 1] -> N*H*W*C bytes, image after image, channels last (RGB for C = 3).
/// Values are rounded half to even, as numpy's round in diffusers' numpy_to_pil.
template <class B>
std::vector<std::uint8_t> to_rgb8(B const& be, Tensor<B> const& image) {
  if (image.rank() != 4) fail(Errc::kShapeMismatch, "to_rgb8: image must be [N, C, H, W], got " + image.shape().str());
  std::vector<float> const v = denormalize(be, image).to_vector_f32(be);
  std::int64_t const n = image.dim(0), c = image.dim(1), hw = image.dim(2) * image.dim(3);
  std::vector<std::uint8_t> out(v.size());
  for (std::int64_t b = 0; b < n; ++b) {
    for (std::int64_t ch = 0; ch < c; ++ch) {
      for (std::int64_t p = 0; p < hw; ++p) {
        float const x = v[static_cast<std::size_t>((b * c + ch) * hw + p)] * 255.0f;
        out[static_cast<std::size_t>((b * hw + p) * c + ch)] = static_cast<std::uint8_t>(std::nearbyint(x));
      }
    }
  }
  return out;
}

/// to_rgb8 as a U8 tensor [N, H, W, C] (what the fixtures call image_uint8).
template <class B>
Tensor<B> to_rgb8_tensor(B const& be, Tensor<B> const& image) {
  std::vector<std::uint8_t> const px = to_rgb8(be, image);
  return Tensor<B>::from_host(be, {image.dim(0), image.dim(2), image.dim(3), image.dim(1)}, px);
}

}  // namespace fd::image
