#pragma once
/// @file
/// The down, mid and up blocks of an SD UNet (CrossAttnDownBlock2D / DownBlock2D,
/// UNetMidBlock2DCrossAttn, CrossAttnUpBlock2D / UpBlock2D).

#include <optional>
#include <string>
#include <vector>

#include "fd/nn/attention.hpp"
#include "fd/nn/resnet.hpp"

namespace fd::models {

struct BlockOptions {
  nn::ResnetOptions resnet;
  int temb_dim = 0;
  int heads = 8;
  int context_dim = 768;
  int transformer_layers = 1;
  bool use_linear_projection = false;
  bool only_cross_attention = false;
};

/// `layers` x (resnet [+ transformer]), then an optional stride-2 downsampler. Every layer output and
/// the downsampler output become skip tensors.
template <class B>
struct DownBlock {
  std::vector<nn::ResnetBlock2D<B>> resnets;
  std::vector<nn::Transformer2D<B>> attentions;  // empty for DownBlock2D
  std::optional<nn::Downsample2D<B>> downsampler;

  DownBlock(B const& be, int in, int out, int layers, bool cross_attn, bool add_downsample, int downsample_padding,
            BlockOptions const& o) {
    for (int i = 0; i < layers; ++i) {
      resnets.emplace_back(be, i == 0 ? in : out, out, o.temb_dim, o.resnet);
      if (cross_attn) {
        attentions.emplace_back(be, out, o.heads, o.context_dim, o.resnet.groups, o.transformer_layers,
                                o.use_linear_projection, o.only_cross_attention);
      }
    }
    if (add_downsample) downsampler.emplace(be, out, downsample_padding);
  }

  template <class V>
  void visit(V&& v, std::string const& p) {
    for (std::size_t i = 0; i < resnets.size(); ++i) {
      resnets[i].visit(v, p + "resnets." + std::to_string(i) + ".");
      if (!attentions.empty()) attentions[i].visit(v, p + "attentions." + std::to_string(i) + ".");
    }
    if (downsampler) downsampler->visit(v, p + "downsamplers.0.");
  }

  Tensor<B> operator()(B const& be, Tensor<B> h, Tensor<B> const& act_temb, Tensor<B> const& ctx,
                       std::vector<Tensor<B>>& skips) const {
    for (std::size_t i = 0; i < resnets.size(); ++i) {
      h = resnets[i](be, h, act_temb);                       // [N, out, H, W]
      if (!attentions.empty()) h = attentions[i](be, h, ctx);  // [N, out, H, W]
      skips.push_back(h);
    }
    if (downsampler) {
      h = (*downsampler)(be, h);  // [N, out, ceil(H/2), ceil(W/2)]
      skips.push_back(h);
    }
    return h;
  }
};

/// resnet -> (transformer -> resnet) x transformer count.
template <class B>
struct MidBlock {
  std::vector<nn::ResnetBlock2D<B>> resnets;
  std::vector<nn::Transformer2D<B>> attentions;

  MidBlock(B const& be, int channels, BlockOptions const& o) {
    resnets.emplace_back(be, channels, channels, o.temb_dim, o.resnet);
    attentions.emplace_back(be, channels, o.heads, o.context_dim, o.resnet.groups, o.transformer_layers,
                            o.use_linear_projection, false);
    resnets.emplace_back(be, channels, channels, o.temb_dim, o.resnet);
  }

  template <class V>
  void visit(V&& v, std::string const& p) {
    for (std::size_t i = 0; i < attentions.size(); ++i) attentions[i].visit(v, p + "attentions." + std::to_string(i) + ".");
    for (std::size_t i = 0; i < resnets.size(); ++i) resnets[i].visit(v, p + "resnets." + std::to_string(i) + ".");
  }

  Tensor<B> operator()(B const& be, Tensor<B> h, Tensor<B> const& act_temb, Tensor<B> const& ctx) const {
    h = resnets[0](be, h, act_temb);
    for (std::size_t i = 0; i < attentions.size(); ++i) {
      h = attentions[i](be, h, ctx);
      h = resnets[i + 1](be, h, act_temb);
    }
    return h;  // [N, C, H, W]
  }
};

/// `layers` x (concat skip -> resnet [+ transformer]), then an optional upsampler.
template <class B>
struct UpBlock {
  std::vector<nn::ResnetBlock2D<B>> resnets;
  std::vector<nn::Transformer2D<B>> attentions;
  std::optional<nn::Upsample2D<B>> upsampler;

  /// @param skip_channels channels of the skips this block consumes, in consumption order.
  UpBlock(B const& be, int prev_out, int out, std::vector<int> const& skip_channels, bool cross_attn, bool add_upsample,
          BlockOptions const& o) {
    for (std::size_t i = 0; i < skip_channels.size(); ++i) {
      int const in = (i == 0 ? prev_out : out) + skip_channels[i];
      resnets.emplace_back(be, in, out, o.temb_dim, o.resnet);
      if (cross_attn) {
        attentions.emplace_back(be, out, o.heads, o.context_dim, o.resnet.groups, o.transformer_layers,
                                o.use_linear_projection, o.only_cross_attention);
      }
    }
    if (add_upsample) upsampler.emplace(be, out);
  }

  template <class V>
  void visit(V&& v, std::string const& p) {
    for (std::size_t i = 0; i < resnets.size(); ++i) {
      resnets[i].visit(v, p + "resnets." + std::to_string(i) + ".");
      if (!attentions.empty()) attentions[i].visit(v, p + "attentions." + std::to_string(i) + ".");
    }
    if (upsampler) upsampler->visit(v, p + "upsamplers.0.");
  }

  /// Consumes skips from the back of [first, last). out_h/out_w: explicit upsample size (0 = 2x).
  Tensor<B> operator()(B const& be, Tensor<B> h, Tensor<B> const& act_temb, Tensor<B> const& ctx,
                       std::vector<Tensor<B>> const& skips, std::size_t& remaining, std::int64_t out_h,
                       std::int64_t out_w) const {
    for (std::size_t i = 0; i < resnets.size(); ++i) {
      Tensor<B> const& skip = skips[--remaining];
      h = concat_channels(be, h, skip);                      // [N, C + Cskip, H, W]
      h = resnets[i](be, h, act_temb);                       // [N, out, H, W]
      if (!attentions.empty()) h = attentions[i](be, h, ctx);
    }
    if (upsampler) h = (*upsampler)(be, h, out_h, out_w);  // [N, out, 2H, 2W] (or the skip's size)
    return h;
  }
};

}  // namespace fd::models
