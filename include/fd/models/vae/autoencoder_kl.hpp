#pragma once
/// @file
/// AutoencoderKL decoder (the Stable Diffusion VAE): scaled latents -> image in [-1, 1] (not clamped).
///
/// @code
///   fd::backend::Cpu cpu{{.threads = 8}};
///   auto vae = fd::models::AutoencoderKL<fd::backend::Cpu>::load(cpu, "sd15/vae");
///   auto image = vae.decode(latents);                     // [N, 3, 8h, 8w]
///   auto big = vae.decode_tiled(latents128, {});          // 1024x1024 with bounded memory
/// @endcode

#include <cmath>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fd/backend/traits.hpp"
#include "fd/io/checkpoint.hpp"
#include "fd/models/model_folder.hpp"
#include "fd/models/vae/decode_tap.hpp"
#include "fd/models/vae/tiling.hpp"
#include "fd/models/vae/vae_config.hpp"
#include "fd/nn/layers.hpp"
#include "fd/nn/resnet.hpp"

namespace fd::models {

namespace vae {

inline constexpr float kNormEps = 1e-6f;  // diffusers' Encoder/Decoder hard-code it

/// Mid-block self-attention (diffusers Attention with GroupNorm, residual_connection, bias, one head of
/// dim C as the VAE builds it). q, k, v share one [3C, C] weight so they are one GEMM.
template <class B>
struct MidAttention {
  int channels = 0;
  nn::GroupNorm<B> group_norm;
  Tensor<B> qkv_weight, qkv_bias;  // [3C, C], [3C]
  nn::Linear<B> to_q, to_k, to_v, to_out;

  MidAttention() = default;
  MidAttention(B const& be, int c, int groups) : channels(c) {
    group_norm = nn::GroupNorm<B>(be, groups, c, kNormEps);
    qkv_weight = nn::parameter(be, {3 * c, c});
    qkv_bias = nn::parameter(be, {3 * c});
    to_q = nn::Linear<B>::view_of(qkv_weight.slice(0, 0, c), qkv_bias.slice(0, 0, c));
    to_k = nn::Linear<B>::view_of(qkv_weight.slice(0, c, 2 * c), qkv_bias.slice(0, c, 2 * c));
    to_v = nn::Linear<B>::view_of(qkv_weight.slice(0, 2 * c, 3 * c), qkv_bias.slice(0, 2 * c, 3 * c));
    to_out = nn::Linear<B>(be, c, c);
  }

  template <class V>
  void visit(V&& v, std::string const& p) {
    group_norm.visit(v, p + "group_norm.");
    to_q.visit(v, p + "to_q.");
    to_k.visit(v, p + "to_k.");
    to_v.visit(v, p + "to_v.");
    to_out.visit(v, p + "to_out.0.");
  }

  Tensor<B> operator()(B const& be, Tensor<B> const& x) const {
    Tensor<B> h = group_norm(be, x);                                               // [N, C, H, W]
    Tensor<B> qkv = channels_to_tokens(be, h, qkv_weight, qkv_bias);               // [N, HW, 3C]
    std::int64_t const c = channels;
    Tensor<B> o = attention(be, qkv.slice(2, 0, c), qkv.slice(2, c, 2 * c), qkv.slice(2, 2 * c, 3 * c), 1,
                            1.0f / std::sqrt(static_cast<float>(c)));              // [N, HW, C]
    return tokens_to_channels(be, o, to_out.weight, to_out.bias, x);              // out proj + residual
  }
};

/// UpDecoderBlock2D: layers_per_block + 1 resnets, then (except the last block) nearest 2x + conv.
template <class B>
struct UpDecoderBlock {
  std::vector<nn::ResnetBlock2D<B>> resnets;
  std::optional<nn::Upsample2D<B>> upsampler;

  template <class V>
  void visit(V&& v, std::string const& p) {
    for (std::size_t i = 0; i < resnets.size(); ++i) resnets[i].visit(v, p + "resnets." + std::to_string(i) + ".");
    if (upsampler) upsampler->visit(v, p + "upsamplers.0.");
  }

  Tensor<B> operator()(B const& be, Tensor<B> x) const {
    for (auto const& r : resnets) x = r(be, x);
    if (upsampler) x = (*upsampler)(be, x);
    return x;
  }
};

}  // namespace vae

template <class B>
class AutoencoderKL {
  static_assert(backend::Backend<B>, "AutoencoderKL<B>: B is not an fd backend (see docs/extending.md#backends)");

 public:
  using Config = AutoencoderKLConfig;

  AutoencoderKL(B const& be, Config cfg) : be_(be), cfg_(std::move(cfg)) { build(); }

  /// Loads a diffusers `vae/` folder: config.json plus diffusion_pytorch_model[.variant].safetensors.
  static AutoencoderKL load(B const& be, std::filesystem::path const& dir, std::string_view variant = "") {
    return load_model_folder<AutoencoderKL>(be, dir, "diffusion_pytorch_model", variant);
  }

  /// Builds the decoder and loads `decoder.*` and `post_quant_conv.*` by diffusers name. `encoder.*` and
  /// `quant_conv.*` are ignored (text-to-image never encodes). The mid-block attention also loads from
  /// the original LDM names `query`/`key`/`value`/`proj_attn`, whose weights may be stored as 1x1 convs
  /// [C, C, 1, 1]. Anything missing, misshaped or left over is an fd::error naming the file and tensor.
  static AutoencoderKL from_checkpoint(B const& be, Config cfg, io::Checkpoint& ckpt) {
    AutoencoderKL m(be, std::move(cfg));
    m.visit([&](std::string const& name, Tensor<B>& dst) { load_tensor(be, ckpt, name, dst); });
    for (auto const& n : ckpt.names()) {
      if (n.starts_with("encoder.") || n.starts_with("quant_conv.")) ckpt.ignore(n);
    }
    ckpt.require_all_used("AutoencoderKL decoder");
    return m;
  }

  Config const& config() const noexcept { return cfg_; }
  B const& backend() const noexcept { return be_; }
  int scale_factor() const { return cfg_.scale_factor(); }
  int latent_channels() const { return cfg_.latent_channels; }
  float scaling_factor() const { return cfg_.scaling_factor; }

  template <class V>
  void visit(V&& v, std::string const& p = "") {
    post_quant_conv_.visit(v, p + "post_quant_conv.");
    std::string const d = p + "decoder.";
    conv_in_.visit(v, d + "conv_in.");
    mid_resnet0_.visit(v, d + "mid_block.resnets.0.");
    if (mid_attn_) mid_attn_->visit(v, d + "mid_block.attentions.0.");
    mid_resnet1_.visit(v, d + "mid_block.resnets.1.");
    for (std::size_t i = 0; i < up_.size(); ++i) up_[i].visit(v, d + "up_blocks." + std::to_string(i) + ".");
    conv_norm_out_.visit(v, d + "conv_norm_out.");
    conv_out_.visit(v, d + "conv_out.");
  }

  /// Scaled latents [N, latent_channels, h, w] (as the sampler produces them) -> image
  /// [N, out_channels, h*f, w*f], f = scale_factor(), roughly in [-1, 1], not clamped.
  /// `tap` (optional) sees z, post_quant_conv, dec.conv_in, dec.mid, dec.up.<i>, dec.conv_norm_out.
  Tensor<B> decode(Tensor<B> const& latents, DecodeTap<B> const& tap = {}) const {
    check_latents(latents);
    Tensor<B> z = latents.clone(be_);
    scale_(be_, z, 1.0f / cfg_.scaling_factor);  // within 1 ulp of the pipeline's division
    if (tap) tap("z", z);
    Tensor<B> x = post_quant_conv_(be_, z);
    if (tap) tap("post_quant_conv", x);
    x = conv_in_(be_, x);
    if (tap) tap("dec.conv_in", x);
    x = mid_resnet0_(be_, x);
    if (mid_attn_) x = (*mid_attn_)(be_, x);
    x = mid_resnet1_(be_, x);
    if (tap) tap("dec.mid", x);
    for (std::size_t i = 0; i < up_.size(); ++i) {
      x = up_[i](be_, x);
      if (tap) tap("dec.up." + std::to_string(i), x);
    }
    if (tap) {
      x = conv_norm_out_(be_, x);
      tap("dec.conv_norm_out", x);
      silu_(be_, x);
    } else {
      x = conv_norm_out_(be_, x, backend::Activation::kSilu);
    }
    return conv_out_(be_, x);
  }

  /// decode() tile by tile (see tiling.hpp): the same image up to the per-tile GroupNorm statistics,
  /// with memory bounded by one tile. Identical to decode() when one tile covers the latents.
  Tensor<B> decode_tiled(Tensor<B> const& latents, TileOptions const& opt = {}) const {
    check_latents(latents);
    return decode_tiles(be_, latents, opt, scale_factor(), [this](Tensor<B> const& t) { return decode(t); });
  }

 private:
  void build() {
    auto const& ch = cfg_.block_out_channels;
    int const n = static_cast<int>(ch.size());
    int const g = cfg_.norm_num_groups;
    nn::ResnetOptions const ro{.groups = g, .eps = vae::kNormEps};
    post_quant_conv_ = nn::Conv2d<B>(be_, cfg_.latent_channels, cfg_.latent_channels, 1);
    int c = ch[static_cast<std::size_t>(n - 1)];
    conv_in_ = nn::Conv2d<B>(be_, cfg_.latent_channels, c, 3, 1, 1);
    mid_resnet0_ = nn::ResnetBlock2D<B>(be_, c, c, 0, ro);
    if (cfg_.mid_block_add_attention) mid_attn_.emplace(be_, c, g);
    mid_resnet1_ = nn::ResnetBlock2D<B>(be_, c, c, 0, ro);
    for (int i = 0; i < n; ++i) {
      int const out = ch[static_cast<std::size_t>(n - 1 - i)];
      vae::UpDecoderBlock<B> blk;
      for (int r = 0; r <= cfg_.layers_per_block; ++r) {
        blk.resnets.emplace_back(be_, r == 0 ? c : out, out, 0, ro);
      }
      if (i + 1 < n) blk.upsampler.emplace(be_, out);
      up_.push_back(std::move(blk));
      c = out;
    }
    conv_norm_out_ = nn::GroupNorm<B>(be_, g, c, vae::kNormEps);
    conv_out_ = nn::Conv2d<B>(be_, c, cfg_.out_channels, 3, 1, 1);
  }

  void check_latents(Tensor<B> const& latents) const {
    if (latents.rank() != 4 || latents.dim(1) != cfg_.latent_channels) {
      fail(Errc::kShapeMismatch, "AutoencoderKL: latents must be [N, " + std::to_string(cfg_.latent_channels) +
                                     ", h, w], got " + latents.shape().str());
    }
  }

  /// The name under which the original LDM VAE stores a mid-block attention tensor, or "".
  static std::string legacy_name(std::string const& name) {
    static constexpr std::string_view kAttn = "mid_block.attentions.0.";
    auto const at = name.find(kAttn);
    if (at == std::string::npos) return "";
    std::string const head = name.substr(0, at + kAttn.size()), tail = name.substr(at + kAttn.size());
    static constexpr std::pair<std::string_view, std::string_view> kMap[] = {
        {"to_q.", "query."}, {"to_k.", "key."}, {"to_v.", "value."}, {"to_out.0.", "proj_attn."}};
    for (auto const& [now, old] : kMap) {
      if (tail.starts_with(now)) return head + std::string(old) + tail.substr(now.size());
    }
    return "";
  }

  static void load_tensor(B const& be, io::Checkpoint& ckpt, std::string const& name, Tensor<B>& dst) {
    std::string stored = name;
    if (!ckpt.contains(stored)) {
      std::string const old = legacy_name(name);
      if (old.empty() || !ckpt.contains(old)) {
        fail(Errc::kMissingTensor, ckpt.path().string() + ": missing tensor '" + name + "' (expected shape " +
                                       dst.shape().str() + ")" + (old.empty() ? "" : " (nor its legacy name '" + old + "')"));
      }
      stored = old;
    }
    auto const& info = ckpt.info(stored);
    if (!is_floating(info.dtype)) {
      fail(Errc::kDTypeMismatch, ckpt.file_of(stored).string() + ": tensor '" + stored + "' is " +
                                     std::string(dtype_name(info.dtype)) + "; weights must be F32, F16 or BF16");
    }
    // LDM stores the attention projections as 1x1 convolutions: [C, C, 1, 1] is the same matrix.
    bool const conv_matrix = dst.rank() == 2 && info.shape.rank() == 4 && info.shape[0] == dst.dim(0) &&
                             info.shape[1] == dst.dim(1) && info.shape[2] == 1 && info.shape[3] == 1;
    Tensor<B> src = conv_matrix ? ckpt.load(be, stored, info.shape, dst.dtype()).reshape(dst.shape())
                                : ckpt.load(be, stored, dst.shape(), dst.dtype());
    src.copy_to(be, dst);
  }

  B be_;
  Config cfg_;
  nn::Conv2d<B> post_quant_conv_, conv_in_, conv_out_;
  nn::ResnetBlock2D<B> mid_resnet0_, mid_resnet1_;
  std::optional<vae::MidAttention<B>> mid_attn_;
  std::vector<vae::UpDecoderBlock<B>> up_;
  nn::GroupNorm<B> conv_norm_out_;
};

}  // namespace fd::models
