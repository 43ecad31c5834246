#pragma once
/// @file
/// The encoder half of an SD UNet: conv_in, the time embedding MLP, the down blocks and the mid block.
/// UNet2DCondition runs it as FasterDiffusion's encoder; a ControlNet is a second copy of it with its own
/// weights (diffusers builds ControlNetModel from the same blocks).

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "fd/models/unet/unet_blocks.hpp"
#include "fd/models/unet/unet_config.hpp"
#include "fd/nn/layers.hpp"

namespace fd::models {

template <class B>
struct EncoderTrunk {
  nn::Conv2d<B> conv_in;
  nn::Linear<B> time_linear_1, time_linear_2;
  std::vector<DownBlock<B>> down;
  std::optional<MidBlock<B>> mid;

  EncoderTrunk() = default;

  EncoderTrunk(B const& be, UNetConfig const& c) {
    std::size_t const nb = c.down_blocks.size();
    int const temb = c.temb_dim();
    conv_in = nn::Conv2d<B>(be, c.in_channels, c.block_out_channels[0], c.conv_in_kernel, 1, (c.conv_in_kernel - 1) / 2);
    time_linear_1 = nn::Linear<B>(be, c.block_out_channels[0], temb);
    time_linear_2 = nn::Linear<B>(be, temb, temb);
    int out = c.block_out_channels[0];
    for (std::size_t i = 0; i < nb; ++i) {
      int const in = out;
      out = c.block_out_channels[i];
      down.emplace_back(be, in, out, c.layers_per_block[i], c.down_blocks[i] == DownBlockType::kCrossAttnDown,
                        i + 1 < nb, c.downsample_padding, block_options(c, i));
    }
    if (c.has_mid_block) {
      BlockOptions mo = block_options(c, nb - 1);
      mo.resnet.output_scale_factor = c.mid_block_scale_factor;
      mid.emplace(be, c.block_out_channels.back(), mo);
    }
  }

  /// The options of the blocks at level i (down block i, its mirrored up block, the mid block).
  static BlockOptions block_options(UNetConfig const& c, std::size_t i) {
    nn::ResnetOptions const ro{.groups = c.norm_num_groups,
                               .eps = c.norm_eps,
                               .output_scale_factor = 1.0f,
                               .time_conditioning = c.resnet_scale_shift ? nn::TimeConditioning::kScaleShift
                                                                         : nn::TimeConditioning::kAdd};
    return BlockOptions{.resnet = ro,
                        .temb_dim = c.temb_dim(),
                        .heads = c.num_heads[i],
                        .context_dim = c.cross_attention_dim[i],
                        .transformer_layers = c.transformer_layers_per_block[i],
                        .use_linear_projection = c.use_linear_projection,
                        .only_cross_attention = c.only_cross_attention[i]};
  }

  /// Channels of every skip tensor, in order: conv_in's output, each layer output and each downsampler
  /// output (what a ControlNet's zero convolutions map).
  static std::vector<int> skip_channels(UNetConfig const& c) {
    std::vector<int> ch{c.block_out_channels[0]};
    for (std::size_t i = 0; i < c.down_blocks.size(); ++i) {
      for (int l = 0; l < c.layers_per_block[i]; ++l) ch.push_back(c.block_out_channels[i]);
      if (i + 1 < c.down_blocks.size()) ch.push_back(c.block_out_channels[i]);
    }
    return ch;
  }

  template <class V>
  void visit(V&& v, std::string const& p) {
    conv_in.visit(v, p + "conv_in.");
    time_linear_1.visit(v, p + "time_embedding.linear_1.");
    time_linear_2.visit(v, p + "time_embedding.linear_2.");
    for (std::size_t i = 0; i < down.size(); ++i) down[i].visit(v, p + "down_blocks." + std::to_string(i) + ".");
    if (mid) mid->visit(v, p + "mid_block.");
  }

  /// The time embedding [N, T] for N timesteps: linear_2(silu(linear_1(sinusoid(t)))).
  Tensor<B> embed(B const& be, UNetConfig const& c, std::span<float const> timesteps) const {
    Tensor<B> proj = timestep_embedding(be, timesteps, c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift);
    Tensor<B> h = time_linear_1(be, proj);  // [N, T]
    silu_(be, h);
    return time_linear_2(be, h);  // [N, T]
  }

  /// The down blocks from h (conv_in's output, already in skips): appends every skip, returns the last.
  Tensor<B> run_down(B const& be, Tensor<B> h, Tensor<B> const& act, Tensor<B> const& ctx,
                     std::vector<Tensor<B>>& skips) const {
    for (auto const& blk : down) h = blk(be, h, act, ctx, skips);
    return h;
  }

  /// The mid block (identity when the config has none).
  Tensor<B> run_mid(B const& be, Tensor<B> const& h, Tensor<B> const& act, Tensor<B> const& ctx) const {
    return mid ? (*mid)(be, h, act, ctx) : h;
  }
};

}  // namespace fd::models
