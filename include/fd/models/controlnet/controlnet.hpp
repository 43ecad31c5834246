#pragma once
/// @file
/// ControlNetModel (diffusers 0.23): a copy of the UNet encoder with its own weights, fed the latents
/// plus an embedding of a control image, whose skip tensors and mid output pass through 1x1 "zero"
/// convolutions to become residuals the UNet adds to its own (models::ControlResiduals).
/// @code
///   auto cn = fd::models::ControlNetModel<B>::load(be, "sd-controlnet-canny");
///   auto res = cn.forward(x, {&t, 1}, context, image, /*conditioning_scale=*/1.0f);
///   auto eps = unet.forward(x, {&t, 1}, context, &res);
/// @endcode

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fd/io/checkpoint.hpp"
#include "fd/models/controlnet/controlnet_config.hpp"
#include "fd/models/model_folder.hpp"
#include "fd/models/unet/encoder_trunk.hpp"
#include "fd/models/unet/unet.hpp"
#include "fd/nn/load.hpp"

namespace fd::models {

template <class B>
class ControlNetModel {
  static_assert(backend::Backend<B>, "ControlNetModel<B>: B is not an fd backend (see docs/extending.md#backends)");

 public:
  using Config = ControlNetConfig;

  ControlNetModel(B const& be, ControlNetConfig cfg) : be_(be), cfg_(std::move(cfg)) { build(); }

  /// A diffusers ControlNet folder: config.json + diffusion_pytorch_model.safetensors (sharded and
  /// fp16 variants too). Every parameter must be present with its exact shape.
  static ControlNetModel load(B const& be, std::filesystem::path const& dir, std::string_view variant = "") {
    return load_model_folder<ControlNetModel>(be, dir, "diffusion_pytorch_model", variant);
  }

  static ControlNetModel from_checkpoint(B const& be, ControlNetConfig cfg, io::Checkpoint& ckpt) {
    ControlNetModel m(be, std::move(cfg));
    nn::load_parameters(be, m, ckpt, "");
    return m;
  }

  ControlNetConfig const& config() const noexcept { return cfg_; }

  template <class V>
  void visit(V&& v, std::string const& p = "") {
    trunk_.visit(v, p);
    cond_conv_in_.visit(v, p + "controlnet_cond_embedding.conv_in.");
    for (std::size_t i = 0; i < cond_blocks_.size(); ++i) {
      cond_blocks_[i].visit(v, p + "controlnet_cond_embedding.blocks." + std::to_string(i) + ".");
    }
    cond_conv_out_.visit(v, p + "controlnet_cond_embedding.conv_out.");
    for (std::size_t i = 0; i < zero_down_.size(); ++i) {
      zero_down_[i].visit(v, p + "controlnet_down_blocks." + std::to_string(i) + ".");
    }
    zero_mid_.visit(v, p + "controlnet_mid_block.");
  }

  /// The control image's embedding [N, C0, H/f, W/f] (f = 2^(stages-1), 8 for SD): conv_in, silu, then
  /// per stage a 3x3 conv and a stride-2 3x3 conv, each with silu; conv_out.
  /// @pre cond [N, conditioning_channels, H, W], RGB order (the config's "bgr" flips it here).
  Tensor<B> embed_condition(Tensor<B> const& cond) const {
    if (cond.rank() != 4 || cond.dim(1) != cfg_.conditioning_channels) {
      fail(Errc::kShapeMismatch, "controlnet: controlnet_cond must be [N, " + std::to_string(cfg_.conditioning_channels) +
                                     ", H, W], got " + cond.shape().str());
    }
    Tensor<B> h = cond_conv_in_(be_, cfg_.bgr ? reversed_channels(cond) : cond);
    silu_(be_, h);
    for (auto const& c : cond_blocks_) {
      h = c(be_, h);
      silu_(be_, h);
    }
    return cond_conv_out_(be_, h);
  }

  /// The residuals for the UNet: down residual i from skip tensor i, the mid residual from the mid
  /// output, all times conditioning_scale, or in guess mode times guess_scales (0.1 ... 1.0, a
  /// logarithmic ramp from the first residual to the mid one) times conditioning_scale.
  /// @pre x [N, in_channels, h, w]; context [N, L, D]; cond [N, C, h*f, w*f] with f the embedding's
  ///      downscale (8 for SD), values as the pipeline prepares them (RGB in [0, 1] for SD ControlNets).
  ControlResiduals<B> forward(Tensor<B> const& x, std::span<float const> timesteps, Tensor<B> const& context,
                              Tensor<B> const& cond, float conditioning_scale = 1.0f, bool guess_mode = false) const {
    UNetConfig const& c = cfg_.trunk;
    if (x.rank() != 4 || x.dim(1) != c.in_channels) {
      fail(Errc::kShapeMismatch, "controlnet: sample must be [N, " + std::to_string(c.in_channels) + ", H, W], got " +
                                     x.shape().str());
    }
    std::int64_t const n = x.dim(0);
    if (context.rank() != 3 || context.dim(0) != n || context.dim(2) != c.cross_attention_dim[0]) {
      fail(Errc::kShapeMismatch, "controlnet: encoder_hidden_states must be [" + std::to_string(n) + ", L, " +
                                     std::to_string(c.cross_attention_dim[0]) + "], got " + context.shape().str());
    }
    std::int64_t const f = std::int64_t{1} << (cfg_.conditioning_embedding_out_channels.size() - 1);
    if (cond.rank() != 4 || cond.dim(0) != n || cond.dim(2) != x.dim(2) * f || cond.dim(3) != x.dim(3) * f) {
      fail(Errc::kShapeMismatch, "controlnet: controlnet_cond must be [" + std::to_string(n) + ", " +
                                     std::to_string(cfg_.conditioning_channels) + ", " + std::to_string(x.dim(2) * f) +
                                     ", " + std::to_string(x.dim(3) * f) + "] (" + std::to_string(f) +
                                     " x the latent " + x.shape().str() + "), got " + cond.shape().str());
    }
    std::vector<float> t(timesteps.begin(), timesteps.end());
    if (t.size() == 1) t.assign(static_cast<std::size_t>(n), t[0]);
    if (static_cast<std::int64_t>(t.size()) != n) {
      fail(Errc::kShapeMismatch, "controlnet: " + std::to_string(timesteps.size()) + " timesteps for a batch of " +
                                     std::to_string(n));
    }
    Tensor<B> act = trunk_.embed(be_, c, t);  // [N, T]
    silu_(be_, act);
    // conv_in(sample) + cond_embedding(cond), the sum folded into the convolution's epilogue.
    Tensor<B> h = trunk_.conv_in(be_, x, backend::Conv2dEpilogue<B>{.residual = embed_condition(cond)});
    std::vector<Tensor<B>> skips{h};
    h = trunk_.run_down(be_, h, act, context, skips);
    h = trunk_.run_mid(be_, h, act, context);

    std::vector<float> const scales = guess_mode ? guess_scales(static_cast<int>(skips.size()) + 1, conditioning_scale)
                                                 : std::vector<float>(skips.size() + 1, conditioning_scale);
    ControlResiduals<B> r;
    r.down.reserve(skips.size());
    for (std::size_t i = 0; i < skips.size(); ++i) r.down.push_back(finish(zero_down_[i](be_, skips[i]), scales[i]));
    r.mid = finish(zero_mid_(be_, h), scales.back());
    return r;
  }

  /// diffusers' guess-mode factors: torch.logspace(-1, 0, n) (float32) times conditioning_scale.
  static std::vector<float> guess_scales(int n, float conditioning_scale) {
    std::vector<float> s(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      double const e = n == 1 ? -1.0 : -1.0 + static_cast<double>(i) / static_cast<double>(n - 1);
      s[static_cast<std::size_t>(i)] = static_cast<float>(std::pow(10.0, e)) * conditioning_scale;
    }
    return s;
  }

 private:
  Tensor<B> finish(Tensor<B> t, float scale) const {
    if (cfg_.global_pool_conditions) t = spatial_mean(t);
    if (scale != 1.0f) scale_(be_, t, scale);
    return t;
  }

  // Shuffle ControlNets: mean over H, W (keepdim) on the host — they are rare and the tensors small.
  Tensor<B> spatial_mean(Tensor<B> const& t) const {
    std::vector<float> v = t.to_vector_f32(be_);
    std::int64_t const planes = t.dim(0) * t.dim(1), hw = t.dim(2) * t.dim(3);
    std::vector<float> m(static_cast<std::size_t>(planes));
    for (std::int64_t p = 0; p < planes; ++p) {
      double acc = 0;
      for (std::int64_t i = 0; i < hw; ++i) acc += v[static_cast<std::size_t>(p * hw + i)];
      m[static_cast<std::size_t>(p)] = static_cast<float>(acc / static_cast<double>(hw));
    }
    return Tensor<B>::from_host(be_, {t.dim(0), t.dim(1), 1, 1}, m).to(be_, t.dtype());
  }

  Tensor<B> reversed_channels(Tensor<B> const& cond) const {
    Tensor<B> out = cond.select(1, cond.dim(1) - 1).unsqueeze(1).contiguous(be_);
    for (std::int64_t ch = cond.dim(1) - 2; ch >= 0; --ch) {
      out = concat_channels(be_, out, cond.select(1, ch).unsqueeze(1).contiguous(be_));
    }
    return out;
  }

  void build() {
    UNetConfig const& c = cfg_.trunk;
    trunk_ = EncoderTrunk<B>(be_, c);
    auto const& oc = cfg_.conditioning_embedding_out_channels;
    cond_conv_in_ = nn::Conv2d<B>(be_, cfg_.conditioning_channels, oc[0], 3, 1, 1);
    for (std::size_t i = 0; i + 1 < oc.size(); ++i) {
      cond_blocks_.emplace_back(be_, oc[i], oc[i], 3, 1, 1);
      cond_blocks_.emplace_back(be_, oc[i], oc[i + 1], 3, 2, 1);
    }
    cond_conv_out_ = nn::Conv2d<B>(be_, oc.back(), c.block_out_channels[0], 3, 1, 1);
    for (int ch : EncoderTrunk<B>::skip_channels(c)) zero_down_.emplace_back(be_, ch, ch, 1);
    zero_mid_ = nn::Conv2d<B>(be_, c.block_out_channels.back(), c.block_out_channels.back(), 1);
  }

  B be_;
  ControlNetConfig cfg_;
  EncoderTrunk<B> trunk_;
  nn::Conv2d<B> cond_conv_in_;
  std::vector<nn::Conv2d<B>> cond_blocks_;
  nn::Conv2d<B> cond_conv_out_;
  std::vector<nn::Conv2d<B>> zero_down_;
  nn::Conv2d<B> zero_mid_;
};

}  // namespace fd::models
