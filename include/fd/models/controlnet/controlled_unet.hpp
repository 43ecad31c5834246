#pragma once
/// @file
/// ControlledUNet: a UNet whose encoder is "UNet encoder + ControlNet(s)". Its encode() runs every
/// ControlNet on the encoder's input and adds the (summed) residuals into the skips and mid output it
/// returns, so whatever caches or batches those features — every FasterDiffusion propagation policy —
/// reuses the key step's residuals for the whole group and runs the ControlNets only at key steps.
/// @code
///   fd::models::ControlledUNet<B> model(unet, {{.net = &canny, .image = img, .scale = 1.0f}});
///   auto res = FasterSampler::run(be, model, scheduler, 50, latents, context);   // 9 ControlNet runs
/// @endcode

#include <atomic>
#include <cmath>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "fd/models/controlnet/controlnet.hpp"
#include "fd/models/unet/unet.hpp"

namespace fd::models {

/// One ControlNet with its control image and settings (diffusers' per-ControlNet pipeline arguments).
template <class B>
struct ControlUnit {
  ControlNetModel<B> const* net = nullptr;
  /// [M, C, H, W] at the pixel size of the samples (8 x the latent for SD); M is 1 (one image for the
  /// whole batch), the batch without guidance, or either half of a guidance batch.
  Tensor<B> image{};
  float scale = 1.0f;          ///< controlnet_conditioning_scale
  float guidance_start = 0.0f; ///< control_guidance_start: fraction of the steps before the ControlNet acts
  float guidance_end = 1.0f;   ///< control_guidance_end: fraction of the steps after which it stops
};

template <class B>
class ControlledUNet {
 public:
  /// @param guidance_batch the batch is [uncond; cond] (classifier-free guidance); with guess_mode the
  ///        ControlNets then see the conditional half only and the unconditional half gets no residual.
  ControlledUNet(UNet2DCondition<B> const& unet, std::vector<ControlUnit<B>> controls, bool guess_mode = false,
                 bool guidance_batch = true)
      : unet_(&unet),
        controls_(std::move(controls)),
        guess_mode_(guess_mode),
        guidance_batch_(guidance_batch),
        state_(std::make_shared<State>()) {
    for (std::size_t k = 0; k < controls_.size(); ++k) {
      auto const& c = controls_[k];
      std::string const who = "controlled unet: control " + std::to_string(k);
      if (c.net == nullptr) fail(Errc::kInvalidArgument, who + " has no ControlNet");
      if (!c.image.defined()) fail(Errc::kMissingTensor, who + " has no control image");
      if (!(c.guidance_start >= 0.0f && c.guidance_start < c.guidance_end && c.guidance_end <= 1.0f)) {
        fail(Errc::kInvalidArgument, who + ": control guidance start " + std::to_string(c.guidance_start) +
                                         " and end " + std::to_string(c.guidance_end) + " must satisfy 0 <= start < end <= 1");
      }
      if (!std::isfinite(c.scale)) fail(Errc::kNonFinite, who + ": conditioning scale is not finite");
    }
  }

  UNet2DCondition<B> const& unet() const noexcept { return *unet_; }
  std::vector<ControlUnit<B>> const& controls() const noexcept { return controls_; }

  /// The sampler tells which step the next encode() belongs to (control guidance start/end).
  void begin_step(int step, int steps) const noexcept {
    state_->step = step;
    state_->steps = steps;
  }
  /// ControlNet forward passes so far (each ControlNet counts once per call).
  int controlnet_calls() const noexcept { return state_->calls.load(); }

  EncoderFeatures<B> encode(Tensor<B> const& x, std::span<float const> timesteps, Tensor<B> const& context) const {
    ControlResiduals<B> r = residuals(x, timesteps, context);
    return unet_->encode(x, timesteps, context, r.down.empty() ? nullptr : &r);
  }
  Tensor<B> decode(EncoderFeatures<B> const& f, std::span<float const> timesteps, Tensor<B> const& context,
                   DecoderLayout layout = DecoderLayout::kGuidanceHalves) const {
    return unet_->decode(f, timesteps, context, layout);
  }
  Tensor<B> forward(Tensor<B> const& x, std::span<float const> timesteps, Tensor<B> const& context) const {
    ControlResiduals<B> r = residuals(x, timesteps, context);
    return unet_->forward(x, timesteps, context, r.down.empty() ? nullptr : &r);
  }

  /// The summed residuals of every ControlNet active at the current step (empty when none is).
  ControlResiduals<B> residuals(Tensor<B> const& x, std::span<float const> timesteps, Tensor<B> const& context) const {
    B const& be = unet_->backend();
    ControlResiduals<B> sum;
    std::int64_t const n = x.dim(0);
    bool const cond_only = guess_mode_ && guidance_batch_;
    if (cond_only && n % 2 != 0) {
      fail(Errc::kShapeMismatch, "controlled unet: a guidance batch must be even, got " + x.shape().str());
    }
    std::int64_t const rows = cond_only ? n / 2 : n;
    Tensor<B> const xc = cond_only ? x.slice(0, n / 2, n).contiguous(be) : x;
    Tensor<B> const cc = cond_only ? context.slice(0, n / 2, n).contiguous(be) : context;
    std::vector<float> tc(timesteps.begin(), timesteps.end());
    if (cond_only && tc.size() == static_cast<std::size_t>(n)) tc.erase(tc.begin(), tc.begin() + n / 2);
    for (auto const& c : controls_) {
      if (!active(c)) continue;
      ControlResiduals<B> r = c.net->forward(xc, tc, cc, batch_image(be, c.image, rows), c.scale, guess_mode_);
      state_->calls.fetch_add(1);
      if (sum.down.empty()) {
        sum = std::move(r);
        continue;
      }
      for (std::size_t i = 0; i < sum.down.size(); ++i) add_(be, sum.down[i], r.down[i]);
      add_(be, sum.mid, r.mid);
    }
    if (cond_only && !sum.down.empty()) {
      for (auto& d : sum.down) d = zero_first_half(be, d);
      sum.mid = zero_first_half(be, sum.mid);
    }
    return sum;
  }

 private:
  struct State {
    int step = 0, steps = 0;
    std::atomic<int> calls{0};
  };

  // diffusers' controlnet_keep: a ControlNet acts at step i of N unless i/N < start or (i+1)/N > end.
  bool active(ControlUnit<B> const& c) const {
    if (state_->steps <= 0) return true;
    double const a = static_cast<double>(state_->step) / state_->steps;
    double const b = static_cast<double>(state_->step + 1) / state_->steps;
    return !(a < c.guidance_start || b > c.guidance_end);
  }

  // The control image for `rows` samples: as given, or its batch tiled (one image for all, or one per
  // image repeated for each guidance half).
  static Tensor<B> batch_image(B const& be, Tensor<B> const& image, std::int64_t rows) {
    std::int64_t const m = image.dim(0);
    if (m == rows) return image;
    if (m == 0 || rows % m != 0) {
      fail(Errc::kShapeMismatch, "controlled unet: a control image batch of " + std::to_string(m) +
                                     " does not tile the model batch of " + std::to_string(rows));
    }
    return tile_halves(be, image.contiguous(be), 1, static_cast<int>(rows / m));
  }

  // [zeros; r] for guess mode under guidance: the unconditional half gets no control.
  static Tensor<B> zero_first_half(B const& be, Tensor<B> const& r) {
    Shape s = r.shape();
    std::int64_t const h = s[0];
    s[0] = 2 * h;
    Tensor<B> out = Tensor<B>::zeros(be, s, r.dtype());
    Tensor<B> second = out.slice(0, h, 2 * h);
    r.copy_to(be, second);
    return out;
  }

  UNet2DCondition<B> const* unet_;
  std::vector<ControlUnit<B>> controls_;
  bool guess_mode_ = false, guidance_batch_ = true;
  std::shared_ptr<State> state_;
};

}  // namespace fd::models
