#pragma once
/// @file
/// ResnetBlock2D (diffusers, "default" and "scale_shift" time conditioning) and the 2x resamplers.

#include <cmath>
#include <optional>
#include <string>

#include "fd/nn/layers.hpp"

namespace fd::nn {

enum class TimeConditioning {
  kAdd,         ///< "default": h = conv1(...) + proj(act(temb))
  kScaleShift,  ///< "scale_shift": h = norm2(h) * (1 + scale) + shift
};

struct ResnetOptions {
  int groups = 32;
  float eps = 1e-5f;
  float output_scale_factor = 1.0f;
  TimeConditioning time_conditioning = TimeConditioning::kAdd;
};

/// x -> (shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x))) + temb_proj)))) / output_scale_factor.
/// The time projection is folded into conv1's bias and the shortcut into conv2's output (one pass each).
template <class B>
struct ResnetBlock2D {
  ResnetOptions opt;
  GroupNorm<B> norm1, norm2;
  Conv2d<B> conv1, conv2;
  Linear<B> time_emb_proj;
  std::optional<Conv2d<B>> conv_shortcut;
  int out_channels = 0;

  ResnetBlock2D() = default;
  ResnetBlock2D(B const& be, int in, int out, int temb_channels, ResnetOptions o) : opt(o), out_channels(out) {
    norm1 = GroupNorm<B>(be, o.groups, in, o.eps);
    conv1 = Conv2d<B>(be, in, out, 3, 1, 1);
    int const proj_out = o.time_conditioning == TimeConditioning::kScaleShift ? 2 * out : out;
    if (temb_channels > 0) time_emb_proj = Linear<B>(be, temb_channels, proj_out);  // 0: no time input (VAE)
    norm2 = GroupNorm<B>(be, o.groups, out, o.eps);
    conv2 = Conv2d<B>(be, out, out, 3, 1, 1);
    if (in != out) conv_shortcut.emplace(be, in, out, 1, 1, 0);
  }

  template <class V>
  void visit(V&& v, std::string const& p) {
    norm1.visit(v, p + "norm1.");
    conv1.visit(v, p + "conv1.");
    if (time_emb_proj.weight.defined()) time_emb_proj.visit(v, p + "time_emb_proj.");
    norm2.visit(v, p + "norm2.");
    conv2.visit(v, p + "conv2.");
    if (conv_shortcut) conv_shortcut->visit(v, p + "conv_shortcut.");
  }

  /// @param act_temb the time embedding after the block's activation, [N, T] (shared by all blocks
  ///        of a UNet call, so computed once by the caller).
  Tensor<B> operator()(B const& be, Tensor<B> const& x, Tensor<B> const& act_temb) const {
    using backend::Activation;
    Tensor<B> h = norm1(be, x, Activation::kSilu);                                   // [N, Cin, H, W]
    Tensor<B> proj = time_emb_proj(be, act_temb);                                     // [N, Cout] or [N, 2Cout]
    Tensor<B> shortcut = conv_shortcut ? (*conv_shortcut)(be, x) : x;                 // [N, Cout, H, W]
    if (opt.time_conditioning == TimeConditioning::kAdd) {
      add_rows_(be, proj, conv1.bias);                                                // [N, Cout]
      h = conv1(be, h, {.sample_bias = proj});                                        // [N, Cout, H, W]
      h = norm2(be, h, Activation::kSilu);
    } else {
      h = conv1(be, h);
      h = norm2(be, h);
      modulate_silu_(be, h, proj);                                                    // h*(1+scale)+shift, silu
    }
    Tensor<B> out = conv2(be, h, {.residual = shortcut});                             // [N, Cout, H, W]
    if (opt.output_scale_factor != 1.0f) scale_(be, out, 1.0f / opt.output_scale_factor);
    return out;
  }

  /// A block built with temb_channels = 0 (VAE): no time conditioning.
  Tensor<B> operator()(B const& be, Tensor<B> const& x) const {
    using backend::Activation;
    Tensor<B> h = conv1(be, norm1(be, x, Activation::kSilu));                         // [N, Cout, H, W]
    h = norm2(be, h, Activation::kSilu);
    Tensor<B> out = conv2(be, h, {.residual = conv_shortcut ? (*conv_shortcut)(be, x) : x});
    if (opt.output_scale_factor != 1.0f) scale_(be, out, 1.0f / opt.output_scale_factor);
    return out;
  }
};

/// Conv 3x3 with stride 2 (diffusers Downsample2D with use_conv=True). Parameters under "conv.".
template <class B>
struct Downsample2D {
  Conv2d<B> conv;
  Downsample2D() = default;
  Downsample2D(B const& be, int channels, int padding) : conv(be, channels, channels, 3, 2, padding) {}
  template <class V>
  void visit(V&& v, std::string const& p) {
    conv.visit(v, p + "conv.");
  }
  Tensor<B> operator()(B const& be, Tensor<B> const& x) const { return conv(be, x); }  // [N, C, ceil(H/2), ceil(W/2)]
};

/// Nearest 2x (or to an explicit size) then conv 3x3 (diffusers Upsample2D with use_conv=True).
template <class B>
struct Upsample2D {
  Conv2d<B> conv;
  Upsample2D() = default;
  Upsample2D(B const& be, int channels) : conv(be, channels, channels, 3, 1, 1) {}
  template <class V>
  void visit(V&& v, std::string const& p) {
    conv.visit(v, p + "conv.");
  }
  /// out_h/out_w <= 0 means exactly twice the input size.
  Tensor<B> operator()(B const& be, Tensor<B> const& x, std::int64_t out_h = 0, std::int64_t out_w = 0) const {
    if (out_h <= 0) {
      out_h = 2 * x.dim(2);
      out_w = 2 * x.dim(3);
    }
    return conv(be, upsample_nearest(be, x, out_h, out_w));  // [N, C, out_h, out_w]
  }
};

}  // namespace fd::nn
