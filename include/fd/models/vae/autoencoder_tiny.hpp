#pragma once
/// @file
/// AutoencoderTiny decoder (TAESD): latents as the sampler produces them -> image in [-1, 1]-ish.
/// About 18x cheaper than the SD VAE; no normalisation layers, so tiles decode independently.

#include <filesystem>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "fd/backend/traits.hpp"
#include "fd/io/checkpoint.hpp"
#include "fd/models/model_folder.hpp"
#include "fd/models/vae/decode_tap.hpp"
#include "fd/models/vae/tiling.hpp"
#include "fd/models/vae/vae_config.hpp"
#include "fd/nn/layers.hpp"
#include "fd/nn/load.hpp"

namespace fd::models {

namespace vae {

/// AutoencoderTinyBlock with equal widths: relu(conv.4(relu(conv.2(relu(conv.0(x))))) + x).
template <class B>
struct TinyBlock {
  nn::Conv2d<B> conv0, conv2, conv4;

  TinyBlock() = default;
  TinyBlock(B const& be, int c) : conv0(be, c, c, 3, 1, 1), conv2(be, c, c, 3, 1, 1), conv4(be, c, c, 3, 1, 1) {}

  template <class V>
  void visit(V&& v, std::string const& p) {
    conv0.visit(v, p + "conv.0.");
    conv2.visit(v, p + "conv.2.");
    conv4.visit(v, p + "conv.4.");
  }

  Tensor<B> operator()(B const& be, Tensor<B> const& x) const {
    Tensor<B> h = conv0(be, x);
    relu_(be, h);
    h = conv2(be, h);
    relu_(be, h);
    h = conv4(be, h, {.residual = x});
    relu_(be, h);
    return h;
  }
};

}  // namespace vae

template <class B>
class AutoencoderTiny {
  static_assert(backend::Backend<B>, "AutoencoderTiny<B>: B is not an fd backend (see docs/extending.md#backends)");

 public:
  using Config = AutoencoderTinyConfig;

  AutoencoderTiny(B const& be, Config cfg) : be_(be), cfg_(std::move(cfg)) { build(); }

  /// Loads a diffusers-format TAESD folder (config.json + diffusion_pytorch_model[.variant].safetensors).
  static AutoencoderTiny load(B const& be, std::filesystem::path const& dir, std::string_view variant = "") {
    return load_model_folder<AutoencoderTiny>(be, dir, "diffusion_pytorch_model", variant);
  }

  /// Loads `decoder.layers.<i>.*` by diffusers name; `encoder.*` is ignored.
  static AutoencoderTiny from_checkpoint(B const& be, Config cfg, io::Checkpoint& ckpt) {
    AutoencoderTiny m(be, std::move(cfg));
    for (auto const& n : ckpt.names("encoder.")) ckpt.ignore(n);
    nn::load_parameters(be, m, ckpt, "", false);
    ckpt.require_all_used("AutoencoderTiny decoder");
    return m;
  }

  Config const& config() const noexcept { return cfg_; }
  B const& backend() const noexcept { return be_; }
  int scale_factor() const { return cfg_.scale_factor(); }
  int latent_channels() const { return cfg_.latent_channels; }
  float scaling_factor() const { return cfg_.scaling_factor; }

  template <class V>
  void visit(V&& v, std::string const& p = "") {
    for (auto& l : layers_) {
      std::string const name = p + "decoder.layers." + std::to_string(l.index) + ".";
      std::visit([&](auto& m) {
        if constexpr (!std::is_same_v<std::decay_t<decltype(m)>, Op>) m.visit(v, name);
      }, l.module);
    }
  }

  /// Latents [N, latent_channels, h, w] as the sampler produces them (divided by scaling_factor, 1.0
  /// for TAESD: not by the SD VAE's 0.18215) -> image [N, out_channels, h*f, w*f].
  /// `tap` sees dec.clamped and dec.layers.<i> for each conv and block (a conv before its ReLU).
  Tensor<B> decode(Tensor<B> const& latents, DecodeTap<B> const& tap = {}) const {
    check_latents(latents);
    Tensor<B> x = latents.clone(be_);
    if (cfg_.scaling_factor != 1.0f) scale_(be_, x, 1.0f / cfg_.scaling_factor);
    tanh_clamp_(be_, x, 3.0f);  // DecoderTiny hard-codes tanh(z / 3) * 3
    if (tap) tap("dec.clamped", x);
    for (auto const& l : layers_) {
      std::visit([&](auto const& m) {
        using M = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<M, Op>) {
          if (m == Op::kRelu) {
            relu_(be_, x);
          } else {
            x = upsample_nearest(be_, x, x.dim(2) * cfg_.upsampling_scaling_factor, x.dim(3) * cfg_.upsampling_scaling_factor);
          }
        } else {
          x = m(be_, x);
          if (tap) tap("dec.layers." + std::to_string(l.index), x);
        }
      }, l.module);
    }
    scale_(be_, x, 2.0f);
    add_scalar_(be_, x, -1.0f);
    return x;
  }

  /// decode() tile by tile. With no normalisation inside, tiles differ from the full decode only near
  /// their edges (zero padding), which the cross-fade mostly hides; one covering tile is exact.
  Tensor<B> decode_tiled(Tensor<B> const& latents, TileOptions const& opt = {}) const {
    check_latents(latents);
    return decode_tiles(be_, latents, opt, scale_factor(), [this](Tensor<B> const& t) { return decode(t); });
  }

 private:
  enum class Op { kRelu, kUpsample };
  struct Layer {
    int index = 0;  // position in diffusers' nn.Sequential = checkpoint key index
    std::variant<nn::Conv2d<B>, vae::TinyBlock<B>, Op> module;
  };

  void build() {
    auto const& ch = cfg_.decoder_block_out_channels;
    auto add = [this](auto m) { layers_.push_back(Layer{static_cast<int>(layers_.size()), std::move(m)}); };
    add(nn::Conv2d<B>(be_, cfg_.latent_channels, ch[0], 3, 1, 1));
    add(Op::kRelu);
    std::size_t const n = cfg_.num_decoder_blocks.size();
    for (std::size_t i = 0; i < n; ++i) {
      bool const last = i + 1 == n;
      int const c = ch[i];
      for (int b = 0; b < cfg_.num_decoder_blocks[i]; ++b) add(vae::TinyBlock<B>(be_, c));
      if (!last) add(Op::kUpsample);
      add(nn::Conv2d<B>(be_, c, last ? cfg_.out_channels : c, 3, 1, 1, /*with_bias=*/last));
    }
  }

  void check_latents(Tensor<B> const& latents) const {
    if (latents.rank() != 4 || latents.dim(1) != cfg_.latent_channels) {
      fail(Errc::kShapeMismatch, "AutoencoderTiny: latents must be [N, " + std::to_string(cfg_.latent_channels) +
                                     ", h, w], got " + latents.shape().str());
    }
  }

  B be_;
  Config cfg_;
  std::vector<Layer> layers_;
};

}  // namespace fd::models
