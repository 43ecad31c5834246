#pragma once
/// @file
/// UNet2DConditionModel (SD 1.x/2.x) split into the FasterDiffusion encoder (conv_in, down blocks, mid
/// block) and decoder (up blocks, norm, activation, conv_out). forward(x) == decode(encode(x)).
///
/// @code
///   fd::backend::Cpu cpu{{.threads = 8}};
///   auto unet = fd::models::UNet2DCondition<fd::backend::Cpu>::load(cpu, "sd15/unet");
///   float t = 801;
///   auto feats = unet.encode(x, {&t, 1}, ctx);            // EncoderFeatures{temb, skips, mid}
///   auto eps = unet.decode(feats, {801, 781, 761}, ctx);  // one batched call for three timesteps
/// @endcode

#include <concepts>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "fd/backend/region.hpp"
#include "fd/backend/traits.hpp"
#include "fd/io/checkpoint.hpp"
#include "fd/models/model_folder.hpp"
#include "fd/models/unet/encoder_trunk.hpp"
#include "fd/models/unet/unet_blocks.hpp"
#include "fd/models/unet/unet_config.hpp"
#include "fd/nn/load.hpp"

namespace fd::models {

/// What the encoder hands to the decoder: FasterDiffusion caches exactly this at key steps.
template <class B>
struct EncoderFeatures {
  Tensor<B> temb;               ///< [N, T] time embedding the encoder used
  std::vector<Tensor<B>> skips; ///< conv_in output, every down-block layer output and downsampler output
  Tensor<B> mid;                ///< mid-block output [N, C, h, w]
};

/// Residuals a ControlNet adds to the encoder's skips (one per skip, same shapes) and mid output.
template <class B>
struct ControlResiduals {
  std::vector<Tensor<B>> down;
  Tensor<B> mid;
};

/// How the decoder lays out several timesteps over the cached batch.
enum class DecoderLayout {
  /// The cached batch is [uncond(B); cond(B)] (classifier-free guidance). Each half is tiled once per
  /// timestep: output rows [uncond@t0 (B), uncond@t1 (B), ..., cond@t0 (B), cond@t1 (B), ...].
  kGuidanceHalves,
  /// The cached batch is one block of B images: output rows [@t0 (B), @t1 (B), ...].
  kSingle,
};

/// What the sampler drives: an encoder whose features the decoder can reuse for several timesteps
/// (UNet2DCondition, ControlledUNet, or your own).
template <class M, class B>
concept EncoderDecoderModel = requires(M const& m, Tensor<B> const& x, std::span<float const> t, Tensor<B> const& ctx,
                                       EncoderFeatures<B> const& f) {
  { m.encode(x, t, ctx) } -> std::same_as<EncoderFeatures<B>>;
  { m.decode(f, t, ctx, DecoderLayout::kSingle) } -> std::same_as<Tensor<B>>;
};

template <class B>
class UNet2DCondition {
  static_assert(backend::Backend<B>, "UNet2DCondition<B>: B is not an fd backend (see docs/extending.md#backends)");

 public:
  using Config = UNetConfig;

  UNet2DCondition(B const& be, UNetConfig cfg) : be_(be), cfg_(std::move(cfg)) { build(); }

  /// Loads a diffusers `unet/` folder: config.json plus diffusion_pytorch_model.safetensors (or a
  /// sharded set with its index, or the fp16 variant). Every parameter must be present with its
  /// exact shape and no tensor may be left over.
  static UNet2DCondition load(B const& be, std::filesystem::path const& dir, std::string_view variant = "") {
    return load_model_folder<UNet2DCondition>(be, dir, "diffusion_pytorch_model", variant);
  }

  /// Builds the model for `cfg` and loads it from `ckpt` by diffusers names (any checkpoint: a folder's
  /// weights, or a view of a single-file checkpoint, see fd/io/ldm_checkpoint.hpp). Every parameter must
  /// be present with its exact shape, and every tensor of `ckpt` must be consumed (kUnexpectedTensor).
  static UNet2DCondition from_checkpoint(B const& be, UNetConfig cfg, io::Checkpoint& ckpt) {
    UNet2DCondition m(be, std::move(cfg));
    nn::load_parameters(be, m, ckpt, "");
    return m;
  }

  UNetConfig const& config() const noexcept { return cfg_; }
  B const& backend() const noexcept { return be_; }

  template <class V>
  void visit(V&& v, std::string const& p = "") {
    trunk_.visit(v, p);
    for (std::size_t i = 0; i < up_.size(); ++i) up_[i].visit(v, p + "up_blocks." + std::to_string(i) + ".");
    conv_norm_out_.visit(v, p + "conv_norm_out.");
    conv_out_.visit(v, p + "conv_out.");
  }

  /// The time embedding [N, T] for N timesteps: linear_2(silu(linear_1(sinusoid(t)))).
  Tensor<B> embed_timesteps(std::span<float const> timesteps) const { return trunk_.embed(be_, cfg_, timesteps); }

  /// The encoder: conv_in, down blocks, (+ ControlNet residuals), mid block.
  /// @param timesteps one value for the whole batch, or one per sample.
  /// @pre x [N, in_channels, H, W]; context [N, L, cross_attention_dim]; every value finite.
  EncoderFeatures<B> encode(Tensor<B> const& x, std::span<float const> timesteps, Tensor<B> const& context,
                            ControlResiduals<B> const* control = nullptr) const {
    if constexpr (backend::Regions<B>::enabled) {
      // One recorded region per shape: inputs [x, context, control down..., control mid].
      std::size_t const nd = control ? control->down.size() : 0;
      std::vector<Tensor<B>> in{x, context};
      if (control) {
        in.insert(in.end(), control->down.begin(), control->down.end());
        in.push_back(control->mid);
      }
      auto out = regions_.run(region_name("encode", timesteps.size(), control ? 1 + static_cast<int>(nd) : 0), in,
                              [&](std::vector<Tensor<B>> const& t) {
                                ControlResiduals<B> cr;
                                if (control) {
                                  cr.down.assign(t.begin() + 2, t.begin() + 2 + static_cast<std::ptrdiff_t>(nd));
                                  cr.mid = t[2 + nd];
                                }
                                EncoderFeatures<B> f = encode_direct(t[0], timesteps, t[1], control ? &cr : nullptr);
                                std::vector<Tensor<B>> flat{f.temb, f.mid};
                                flat.insert(flat.end(), f.skips.begin(), f.skips.end());
                                return flat;
                              });
      EncoderFeatures<B> f;
      f.temb = out[0];
      f.mid = out[1];
      f.skips.assign(out.begin() + 2, out.end());
      return f;
    } else {
      return encode_direct(x, timesteps, context, control);
    }
  }

  /// encode() without a backend region (what a region records).
  EncoderFeatures<B> encode_direct(Tensor<B> const& x, std::span<float const> timesteps, Tensor<B> const& context,
                                   ControlResiduals<B> const* control = nullptr) const {
    check_sample(x);
    std::int64_t const n = x.dim(0);
    check_context(context, n);
    EncoderFeatures<B> f;
    f.temb = embed_timesteps(broadcast_timesteps(timesteps, n, "timestep"));  // [N, T]
    Tensor<B> act = silu(be_, f.temb);                                         // [N, T]
    Tensor<B> h = x;
    if (cfg_.center_input_sample) {
      h = x.clone(be_);
      scale_(be_, h, 2.0f);
      add_scalar_(be_, h, -1.0f);
    }
    h = trunk_.conv_in(be_, h);  // [N, C0, H, W]
    f.skips.push_back(h);
    h = trunk_.run_down(be_, h, act, context, f.skips);
    if (control != nullptr) apply_control_down(f.skips, *control);
    h = trunk_.run_mid(be_, h, act, context);  // [N, Clast, h, w]
    if (control != nullptr && control->mid.defined()) {
      h = h.shares_storage_with(f.skips.back()) ? h.clone(be_) : h;
      add_(be_, h, control->mid);
    }
    f.mid = h;
    return f;
  }

  /// The decoder on cached features for one or several timesteps (FasterDiffusion's parallel
  /// decoding): with n timesteps the features and context are tiled per `layout` and the result has
  /// n times the cached batch, each row decoded with its own timestep's embedding.
  /// @pre context has the cached batch size.
  Tensor<B> decode(EncoderFeatures<B> const& f, std::span<float const> timesteps, Tensor<B> const& context,
                   DecoderLayout layout = DecoderLayout::kGuidanceHalves) const {
    if constexpr (backend::Regions<B>::enabled) {
      std::vector<Tensor<B>> in{context, f.mid};
      in.insert(in.end(), f.skips.begin(), f.skips.end());
      auto out = regions_.run(region_name(layout == DecoderLayout::kSingle ? "decode1" : "decode2", timesteps.size(), 0),
                              in, [&](std::vector<Tensor<B>> const& t) {
                                EncoderFeatures<B> g;
                                g.mid = t[1];
                                g.skips.assign(t.begin() + 2, t.end());
                                return std::vector<Tensor<B>>{decode_direct(g, timesteps, t[0], layout)};
                              });
      return out[0];
    } else {
      return decode_direct(f, timesteps, context, layout);
    }
  }

  /// decode() without a backend region (what a region records).
  Tensor<B> decode_direct(EncoderFeatures<B> const& f, std::span<float const> timesteps, Tensor<B> const& context,
                          DecoderLayout layout = DecoderLayout::kGuidanceHalves) const {
    if (timesteps.empty()) fail(Errc::kInvalidArgument, "unet decode: no timesteps");
    if (f.skips.size() != static_cast<std::size_t>(cfg_.num_skips()) || !f.mid.defined()) {
      fail(Errc::kInvalidArgument, "unet decode: features hold " + std::to_string(f.skips.size()) +
                                       " skips, this UNet needs " + std::to_string(cfg_.num_skips()));
    }
    std::int64_t const n = f.mid.dim(0);
    check_context(context, n);
    int const steps = static_cast<int>(timesteps.size());
    int const halves = layout == DecoderLayout::kGuidanceHalves && steps > 1 ? 2 : 1;
    if (n % halves != 0) {
      fail(Errc::kShapeMismatch, "unet decode: guidance layout needs an even cached batch, got " + std::to_string(n));
    }
    // Row r of the tiled batch: half r / (steps*b), slot (r % (steps*b)) / b.
    std::int64_t const b = n / halves;
    std::vector<float> row_t(static_cast<std::size_t>(n * steps));
    for (std::int64_t r = 0; r < n * steps; ++r) {
      row_t[static_cast<std::size_t>(r)] = timesteps[static_cast<std::size_t>((r % (steps * b)) / b)];
    }
    Tensor<B> act = embed_timesteps(row_t);  // [n*steps, T]
    silu_(be_, act);
    std::vector<Tensor<B>> skips;
    skips.reserve(f.skips.size());
    for (auto const& s : f.skips) skips.push_back(tile_halves(be_, s, halves, steps));
    Tensor<B> ctx = tile_halves(be_, context, halves, steps);  // [n*steps, L, D]
    Tensor<B> h = tile_halves(be_, f.mid, halves, steps);      // [n*steps, C, h, w]
    return run_up(h, act, ctx, skips);                         // [n*steps, out_channels, H, W]
  }

  /// decode(encode(x, t, ctx), t, ctx): the plain UNet forward.
  Tensor<B> forward(Tensor<B> const& x, std::span<float const> timesteps, Tensor<B> const& context,
                    ControlResiduals<B> const* control = nullptr) const {
    EncoderFeatures<B> f = encode(x, timesteps, context, control);
    std::int64_t const n = x.dim(0);
    std::vector<float> per_sample = broadcast_timesteps(timesteps, n, "timestep");
    return decode_rows(f, per_sample, context);
  }

  /// Decoder with one timestep per cached row (no tiling). Used by forward with per-sample timesteps.
  Tensor<B> decode_rows(EncoderFeatures<B> const& f, std::span<float const> per_row, Tensor<B> const& context) const {
    if constexpr (backend::Regions<B>::enabled) {
      std::vector<Tensor<B>> in{context, f.mid};
      in.insert(in.end(), f.skips.begin(), f.skips.end());
      auto out = regions_.run(region_name("decode_rows", per_row.size(), 0), in, [&](std::vector<Tensor<B>> const& t) {
        EncoderFeatures<B> g;
        g.mid = t[1];
        g.skips.assign(t.begin() + 2, t.end());
        return std::vector<Tensor<B>>{decode_rows_direct(g, per_row, t[0])};
      });
      return out[0];
    } else {
      return decode_rows_direct(f, per_row, context);
    }
  }

  /// decode_rows() without a backend region.
  Tensor<B> decode_rows_direct(EncoderFeatures<B> const& f, std::span<float const> per_row,
                               Tensor<B> const& context) const {
    std::int64_t const n = f.mid.dim(0);
    check_context(context, n);
    if (static_cast<std::int64_t>(per_row.size()) != n) {
      fail(Errc::kShapeMismatch, "unet decode: " + std::to_string(per_row.size()) + " timesteps for " +
                                     std::to_string(n) + " rows");
    }
    Tensor<B> act = embed_timesteps(per_row);  // [N, T]
    silu_(be_, act);
    return run_up(f.mid, act, context, f.skips);
  }

  /// A view of the encoder half with a call operator, for code that passes the halves around.
  class Encoder {
   public:
    explicit Encoder(UNet2DCondition const& m) : m_(&m) {}
    EncoderFeatures<B> operator()(Tensor<B> const& x, std::span<float const> t, Tensor<B> const& ctx,
                                  ControlResiduals<B> const* control = nullptr) const {
      return m_->encode(x, t, ctx, control);
    }

   private:
    UNet2DCondition const* m_;
  };
  /// The decoder half: features + one or several timesteps -> noise predictions.
  class Decoder {
   public:
    explicit Decoder(UNet2DCondition const& m) : m_(&m) {}
    Tensor<B> operator()(EncoderFeatures<B> const& f, std::span<float const> t, Tensor<B> const& ctx,
                         DecoderLayout layout = DecoderLayout::kGuidanceHalves) const {
      return m_->decode(f, t, ctx, layout);
    }
    Tensor<B> operator()(EncoderFeatures<B> const& f, std::initializer_list<float> t, Tensor<B> const& ctx,
                         DecoderLayout layout = DecoderLayout::kGuidanceHalves) const {
      return m_->decode(f, std::span<float const>(t.begin(), t.size()), ctx, layout);
    }

   private:
    UNet2DCondition const* m_;
  };
  Encoder encoder() const { return Encoder(*this); }
  Decoder decoder() const { return Decoder(*this); }

 private:
  // Regions are keyed by this model (its weights are baked into a recorded region), the call and the
  // timestep count; the backend adds the input shapes.
  std::string region_name(char const* call, std::size_t timesteps, int control) const {
    return "unet@" + std::to_string(reinterpret_cast<std::uintptr_t>(this)) + "/" + call + "/t" +
           std::to_string(timesteps) + "/cn" + std::to_string(control);
  }

  Tensor<B> run_up(Tensor<B> h, Tensor<B> const& act, Tensor<B> const& ctx, std::vector<Tensor<B>> const& skips) const {
    std::size_t remaining = skips.size();
    bool const sized = forward_upsample_size(skips.front());
    for (std::size_t i = 0; i < up_.size(); ++i) {
      std::int64_t oh = 0, ow = 0;
      if (sized && i + 1 < up_.size()) {
        // Inputs that are not multiples of 2^upsamplers: the next block's skip fixes the size.
        Tensor<B> const& next = skips[remaining - up_[i].resnets.size() - 1];
        oh = next.dim(2);
        ow = next.dim(3);
      }
      h = up_[i](be_, h, act, ctx, skips, remaining, oh, ow);  // [N, C_i, H_i, W_i]
    }
    h = conv_norm_out_(be_, h, backend::Activation::kSilu);    // [N, C0, H, W]
    return conv_out_(be_, h);                                  // [N, out_channels, H, W]
  }

  void build() {
    auto const& c = cfg_;
    std::size_t const nb = c.down_blocks.size();
    trunk_ = EncoderTrunk<B>(be_, c);
    auto opts = [&](std::size_t i) { return EncoderTrunk<B>::block_options(c, i); };
    int prev = c.block_out_channels.back();
    for (std::size_t i = 0; i < nb; ++i) {
      std::size_t const ri = nb - 1 - i;  // the mirrored down block
      int const o = c.block_out_channels[ri];
      int const skip_in = c.block_out_channels[ri == 0 ? 0 : ri - 1];
      int const layers = c.layers_per_block[ri] + 1;
      std::vector<int> skip_ch(static_cast<std::size_t>(layers), o);
      skip_ch.back() = skip_in;
      up_.emplace_back(be_, prev, o, skip_ch, c.up_blocks[i] == UpBlockType::kCrossAttnUp, i + 1 < nb, opts(ri));
      prev = o;
    }
    conv_norm_out_ = nn::GroupNorm<B>(be_, c.norm_num_groups, c.block_out_channels[0], c.norm_eps);
    conv_out_ = nn::Conv2d<B>(be_, c.block_out_channels[0], c.out_channels, c.conv_out_kernel, 1, (c.conv_out_kernel - 1) / 2);
  }

  std::vector<float> broadcast_timesteps(std::span<float const> t, std::int64_t n, char const* what) const {
    if (t.size() == 1) return std::vector<float>(static_cast<std::size_t>(n), t[0]);
    if (static_cast<std::int64_t>(t.size()) != n) {
      fail(Errc::kShapeMismatch, std::string("unet: ") + what + " has " + std::to_string(t.size()) +
                                     " values for a batch of " + std::to_string(n) + " (give 1 or one per sample)");
    }
    return {t.begin(), t.end()};
  }

  void check_sample(Tensor<B> const& x) const {
    if (x.rank() != 4 || x.dim(1) != cfg_.in_channels) {
      fail(Errc::kShapeMismatch, "unet: sample must be [N, " + std::to_string(cfg_.in_channels) + ", H, W], got " +
                                     x.shape().str());
    }
  }
  void check_context(Tensor<B> const& ctx, std::int64_t n) const {
    int const d = cfg_.cross_attention_dim[0];
    if (ctx.rank() != 3 || ctx.dim(0) != n || ctx.dim(2) != d) {
      fail(Errc::kShapeMismatch, "unet: encoder_hidden_states must be [" + std::to_string(n) + ", L, " +
                                     std::to_string(d) + "], got " + ctx.shape().str());
    }
  }

  bool forward_upsample_size(Tensor<B> const& sample_level) const {
    std::int64_t const factor = std::int64_t{1} << (up_.size() - 1);
    return sample_level.dim(2) % factor != 0 || sample_level.dim(3) % factor != 0;
  }

  void apply_control_down(std::vector<Tensor<B>>& skips, ControlResiduals<B> const& c) const {
    if (c.down.empty()) return;
    if (c.down.size() != skips.size()) {
      fail(Errc::kShapeMismatch, "unet: " + std::to_string(c.down.size()) + " ControlNet down residuals for " +
                                     std::to_string(skips.size()) + " skips");
    }
    for (std::size_t i = 0; i < skips.size(); ++i) {
      // The skip tensors alias the activations that flowed on through the down path; add into copies.
      Tensor<B> s = skips[i].clone(be_);
      add_(be_, s, c.down[i]);
      skips[i] = s;
    }
  }

  B be_;
  backend::Regions<B> regions_{be_};
  UNetConfig cfg_;
  EncoderTrunk<B> trunk_;
  std::vector<UpBlock<B>> up_;
  nn::GroupNorm<B> conv_norm_out_;
  nn::Conv2d<B> conv_out_;
};

}  // namespace fd::models
