#pragma once
/// @file
/// Tiled decoding: latents are cut into overlapping tiles, each tile is decoded on its own (memory
/// bounded by one tile), and the decoded tiles are cross-faded linearly over their overlaps, in the
/// spirit of diffusers' AutoencoderKL.tiled_decode. Tiles are spread evenly so the last one ends at
/// the edge (no sliver tiles), and every overlap is at least `overlap_latent` (and at most one more).

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "fd/core/tensor.hpp"
#include "fd/error.hpp"

namespace fd::models {

/// How decode_tiled cuts the latents.
struct TileOptions {
  int tile_latent = 64;     ///< tile edge in latent pixels (64 = 512 image pixels for SD)
  int overlap_latent = 16;  ///< minimum overlap of neighbouring tiles, cross-faded (diffusers: 0.25 * 64)
};

/// One axis of a tiling: tile starts, in latent pixels, and the common tile length.
struct TileAxis {
  std::vector<std::int64_t> starts;
  std::int64_t length = 0;
};

/// Evenly spread starts covering [0, extent) with the fewest tiles of at most `tile` that overlap by
/// at least `overlap`, each as short as that allows. An extent that fits in one tile gives one tile of
/// the whole extent.
inline TileAxis plan_tile_axis(std::int64_t extent, TileOptions const& opt) {
  if (opt.tile_latent <= 0 || opt.overlap_latent < 0 || opt.overlap_latent >= opt.tile_latent) {
    fail(Errc::kInvalidArgument, "tiled decode: need 0 <= overlap (" + std::to_string(opt.overlap_latent) +
                                     ") < tile (" + std::to_string(opt.tile_latent) + ")");
  }
  TileAxis a;
  std::int64_t const t = opt.tile_latent, o = opt.overlap_latent;
  if (extent <= t) {
    a.starts = {0};
    a.length = extent;
    return a;
  }
  std::int64_t const n = (extent - o + (t - o) - 1) / (t - o);  // fewest tiles: ceil((extent - o) / (t - o)) >= 2
  // Then the shortest tiles that still overlap by o: n * length >= extent + (n - 1) * o, length <= t.
  // (Full-size tiles would overlap by more than asked: 3 tiles of 64 over 128 latents overlap by 32.)
  a.length = (extent + (n - 1) * o + n - 1) / n;
  std::int64_t const span = extent - a.length;
  for (std::int64_t k = 0; k < n; ++k) a.starts.push_back((k * span + (n - 1) / 2) / (n - 1));
  return a;
}

/// Decodes latents[N, C, h, w] tile by tile with `decode_tile` (latent tile -> image tile scaled by
/// `scale`) and composites the results into one [N, C_out, h*scale, w*scale] image.
template <class B, class DecodeTile>
Tensor<B> decode_tiles(B const& be, Tensor<B> const& latents, TileOptions const& opt, int scale, DecodeTile&& decode_tile) {
  if (latents.rank() != 4) {
    fail(Errc::kShapeMismatch, "tiled decode: latents must be [N, C, h, w], got " + latents.shape().str());
  }
  TileAxis const ys = plan_tile_axis(latents.dim(2), opt);
  TileAxis const xs = plan_tile_axis(latents.dim(3), opt);
  Tensor<B> out;
  for (std::size_t i = 0; i < ys.starts.size(); ++i) {
    std::int64_t const y0 = ys.starts[i];
    // The ramp spans the whole overlap with the tile above (or to the left): tiles are written in
    // raster order and each one fades in over what is already there.
    std::int64_t const ramp_top = i == 0 ? 0 : (ys.starts[i - 1] + ys.length - y0) * scale;
    for (std::size_t j = 0; j < xs.starts.size(); ++j) {
      std::int64_t const x0 = xs.starts[j];
      std::int64_t const ramp_left = j == 0 ? 0 : (xs.starts[j - 1] + xs.length - x0) * scale;
      Tensor<B> tile = latents.slice(2, y0, y0 + ys.length).slice(3, x0, x0 + xs.length).contiguous(be);
      Tensor<B> img = decode_tile(tile);  // [N, C_out, length*scale, length*scale]
      if (!out.defined()) {
        out = Tensor<B>::zeros(be, {img.dim(0), img.dim(1), latents.dim(2) * scale, latents.dim(3) * scale});
      }
      composite_tile_(be, out, img, y0 * scale, x0 * scale, ramp_top, ramp_left);
    }
  }
  return out;
}

}  // namespace fd::models
