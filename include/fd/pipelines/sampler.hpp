#pragma once
/// @file
/// The denoising loop, composed at compile time from a scheduler, a key-step policy, a
/// feature-propagation policy and a noise-injection policy (FasterDiffusion, spec §3-§4):
///
/// @code
///   using Faster = fd::Sampler<fd::keys::Paper50, fd::prop::EncoderPropagation<fd::prop::Parallel>,
///                              fd::inject::Prior>;
///   auto result = Faster::run(cpu, unet, scheduler, 50, x_T, text_embeddings, {.guidance = 7.5f});
/// @endcode
///
/// Guidance: with guidance > 1 the context is [uncond(B); cond(B)] and every UNet batch is the CFG
/// batch [z; z]; otherwise the context is [B, L, D] and the UNet runs on z alone.

#include <chrono>
#include <cmath>
#include <functional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "fd/models/unet/unet.hpp"
#include "fd/propagation/key_steps.hpp"
#include "fd/propagation/policies.hpp"

namespace fd {

/// Where a stochastic scheduler draws its noise; owned by the caller (defined with the schedulers).
struct NoiseSource;

/// Run-time settings of a sampler.
struct SamplerOptions {
  float guidance = 7.5f;          ///< classifier-free guidance scale; <= 1 disables guidance
  float guidance_rescale = 0.0f;  ///< diffusers' guidance_rescale (phi), 0 = off
  float inject_alpha = 0.003f;    ///< prior noise injection coefficient (inject::Prior only)
  int inject_threshold = 500;     ///< inject at steps with timestep < this (inject::Prior only)
  /// Largest decoder batch, in rows (parallel propagation): a group that would exceed it is decoded
  /// in several sub-batches. 0 = no limit.
  int max_decoder_rows = 0;
  bool keep_trajectory = true;  ///< keep the latents after every call in SampleResult::latents
  NoiseSource* noise = nullptr;  ///< noise for stochastic schedulers (DDIM eta > 0, DDPM, Euler-a)
};

/// What a step callback sees. Returning false from the callback stops sampling after this step.
struct StepInfo {
  int index = 0;     ///< model-call index
  int total = 0;     ///< number of model calls
  int timestep = 0;
  bool key = true;   ///< whether the encoder ran for this step (always true without propagation)
};
using StepCallback = std::function<bool(StepInfo const&)>;

struct SamplerStats {
  int encoder_runs = 0;               ///< UNet encoder executions
  int decoder_calls = 0;              ///< decoder executions (a batched group counts once)
  int decoded_steps = 0;              ///< steps whose noise prediction came from the decoder
  int injected_steps = 0;             ///< steps that received prior noise injection
  std::vector<int> decoder_batches;   ///< rows of each decoder call
  int decoder_splits = 0;             ///< parallel decoder batches halved after running out of memory
  int controlnet_runs = 0;            ///< ControlNet forward passes (ControlledUNet; one per ControlNet per encoder run)
  bool interrupted = false;
  double seconds = 0;                 ///< wall time of the loop
};

template <class B>
struct SampleResult {
  std::vector<int> timesteps;          ///< one per model call
  std::vector<Tensor<B>> latents;      ///< latents after each call (if keep_trajectory)
  std::vector<Tensor<B>> noise_preds;  ///< guided noise prediction used at each call (if keep_trajectory)
  Tensor<B> final;
  SamplerStats stats;
};

namespace detail {

template <class B>
std::vector<float> host(B const& be, Tensor<B> const& t) {
  return t.to_vector_f32(be);
}

// eps = u + w (c - u) per row block, optionally rescaled (diffusers rescale_noise_cfg: std over all
// dims but the batch, unbiased).
inline void guide(std::span<float const> u, std::span<float const> c, float w, float phi, std::size_t per_image,
                  std::span<float> out) {
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = u[i] + w * (c[i] - u[i]);
  if (phi <= 0.0f) return;
  for (std::size_t off = 0; off < out.size(); off += per_image) {
    auto stdev = [&](std::span<float const> v) {
      double m = 0;
      for (std::size_t i = 0; i < per_image; ++i) m += v[off + i];
      m /= static_cast<double>(per_image);
      double s = 0;
      for (std::size_t i = 0; i < per_image; ++i) s += (v[off + i] - m) * (v[off + i] - m);
      return static_cast<float>(std::sqrt(s / static_cast<double>(per_image - 1)));
    };
    float const std_text = stdev(c), std_cfg = stdev(std::span<float const>(out.data(), out.size()));
    float const f = std_text / std_cfg;
    for (std::size_t i = 0; i < per_image; ++i) {
      float const rescaled = out[off + i] * f;
      out[off + i] = phi * rescaled + (1.0f - phi) * out[off + i];
    }
  }
}

}  // namespace detail

/// The sampler. Keys: a key policy (keys::List<...>, keys::All, keys::Every<N>, keys::Runtime, or your
/// own type with `bool is_key(int, int) const`); Prop: prop::None or prop::EncoderPropagation<Mode>;
/// Inject: inject::None or inject::Prior.
template <class Keys, class Prop, class Inject>
class Sampler {
  static_assert(keys::KeyPolicy<Keys>, "Sampler<Keys, ...>: Keys must have `bool is_key(int step, int num_steps) const` "
                                       "(keys::List<...>, keys::Every<N>, keys::Runtime or your own)");
  static_assert(prop::is_propagation<Prop>, "Sampler<..., Prop, ...>: Prop must be prop::None or "
                                            "prop::EncoderPropagation<prop::Sequential | prop::Parallel>");
  static_assert(inject::is_injection<Inject>, "Sampler<..., Inject>: Inject must be inject::None or inject::Prior");
  static_assert(!std::is_same_v<Prop, prop::None> || std::is_same_v<Keys, keys::All>,
                "Sampler: prop::None runs the full UNet at every step, so key steps mean nothing; use keys::All "
                "with prop::None, or pick prop::EncoderPropagation<...> to use these key steps");

 public:
  /// Runs `scheduler` for `steps` inference steps from init_latents (x_T, scaled here by the
  /// scheduler's init_noise_sigma) with text context.
  template <class B, class Sched, class Model>
  static SampleResult<B> run(B const& be, Model const& unet, Sched& scheduler, int steps,
                             Tensor<B> const& init_latents, Tensor<B> const& context, SamplerOptions const& opt = {},
                             Keys const& keys = {}, StepCallback const& callback = {}) {
    static_assert(models::EncoderDecoderModel<Model, B>,
                  "Sampler::run: the model needs encode(x, timesteps, context) -> EncoderFeatures<B> and "
                  "decode(features, timesteps, context, layout) -> Tensor<B> (UNet2DCondition, ControlledUNet)");
    auto const t_start = std::chrono::steady_clock::now();
    bool const cfg = opt.guidance > 1.0f;
    std::int64_t const b = init_latents.dim(0);
    if (context.rank() != 3 || context.dim(0) != (cfg ? 2 * b : b)) {
      fail(Errc::kShapeMismatch, std::string("sampler: encoder_hidden_states must be [") + (cfg ? "2B" : "B") +
                                     ", L, D] = [" + std::to_string(cfg ? 2 * b : b) + ", L, D] " +
                                     (cfg ? "(uncond rows first, then cond)" : "(no guidance)") + ", got " +
                                     context.shape().str());
    }
    scheduler.set_timesteps(steps);
    std::vector<int> const ts(scheduler.timesteps().begin(), scheduler.timesteps().end());
    // The UNet and the injection rule see the scheduler's float timesteps (Euler's are fractional).
    std::vector<float> const tf(scheduler.timesteps_f32().begin(), scheduler.timesteps_f32().end());
    int const calls = static_cast<int>(ts.size());
    keys::KeySchedule const schedule(keys, calls);

    SampleResult<B> res;
    res.timesteps = ts;
    Tensor<B> z = init_latents.clone(be);
    float const sigma0 = scheduler.init_noise_sigma();
    if (sigma0 != 1.0f) scale_(be, z, sigma0);
    Tensor<B> const z_t = z.clone(be);  // x_T after init_noise_sigma, the injection's reference
    std::size_t const per_image = static_cast<std::size_t>(z.numel() / b);

    auto cfg_input = [&](Tensor<B> const& x) { return cfg ? concat_batch(be, x, x) : x; };
    auto inject = [&](int i) {
      if constexpr (std::is_same_v<Inject, inject::Prior>) {
        if (tf[static_cast<std::size_t>(i)] < static_cast<float>(opt.inject_threshold)) {
          // Out of place: z may be the tensor recorded for the previous step.
          Tensor<B> zi = z.clone(be);
          add_(be, zi, z_t, opt.inject_alpha);
          z = zi;
          ++res.stats.injected_steps;
        }
      } else {
        (void)i;
      }
    };
    // Guided prediction for slot s of a decoder output holding n steps ([u@s0.., c@s0..] with CFG).
    auto guided = [&](std::vector<float> const& all, int n, int s) {
      std::vector<float> out(per_image * static_cast<std::size_t>(b));
      std::size_t const block = per_image * static_cast<std::size_t>(b);
      if (!cfg) {
        std::copy_n(all.begin() + static_cast<std::ptrdiff_t>(block * s), block, out.begin());
      } else {
        std::span<float const> const u(all.data() + block * s, block);
        std::span<float const> const c(all.data() + block * (n + s), block);
        detail::guide(u, c, opt.guidance, opt.guidance_rescale, per_image, out);
      }
      return Tensor<B>::from_host(be, z.shape(), out);
    };
    bool stop = false;
    auto finish_step = [&](int i, Tensor<B> const& eps, bool key) {
      z = scheduler.step(be, eps, i, z, opt.noise);
      if (opt.keep_trajectory) {
        res.latents.push_back(z);
        res.noise_preds.push_back(eps);
      }
      if (callback && !callback(StepInfo{i, calls, ts[static_cast<std::size_t>(i)], key})) stop = true;
    };
    // The encoder at step i (models with per-step state, such as control guidance start/end, are told
    // which step it is).
    auto encode = [&](int i, Tensor<B> const& x, std::span<float const> t) {
      if constexpr (requires { unet.begin_step(i, calls); }) unet.begin_step(i, calls);
      ++res.stats.encoder_runs;
      if constexpr (requires { unet.controlnet_calls(); }) {
        int const before = unet.controlnet_calls();
        auto f = unet.encode(x, t, context);
        res.stats.controlnet_runs += unet.controlnet_calls() - before;
        return f;
      } else {
        return unet.encode(x, t, context);
      }
    };
    auto decode = [&](models::EncoderFeatures<B> const& f, std::span<float const> t) {
      ++res.stats.decoder_calls;
      res.stats.decoder_batches.push_back(static_cast<int>(f.mid.dim(0) * static_cast<std::int64_t>(t.size())));
      res.stats.decoded_steps += static_cast<int>(t.size());
      return unet.decode(f, t, context, cfg ? models::DecoderLayout::kGuidanceHalves : models::DecoderLayout::kSingle);
    };

    if constexpr (std::is_same_v<Prop, prop::None>) {
      for (int i = 0; i < calls && !stop; ++i) {
        float const t = tf[static_cast<std::size_t>(i)];
        auto f = encode(i, scheduler.scale_model_input(be, cfg_input(z), i), {&t, 1});
        std::vector<float> const eps_all = detail::host(be, decode(f, {&t, 1}));
        inject(i);
        finish_step(i, guided(eps_all, 1, 0), true);
      }
    } else if constexpr (prop::is_parallel<Prop>) {
      for (auto const& group : schedule.groups()) {
        if (stop) break;
        int const i0 = group.front();
        float const t0 = tf[static_cast<std::size_t>(i0)];
        // The encoder reads the latents before this group's injections (reference ordering, §4.3).
        auto f = encode(i0, scheduler.scale_model_input(be, cfg_input(z), i0), {&t0, 1});
        int const n = static_cast<int>(group.size());
        std::int64_t const rows_per_step = f.mid.dim(0);
        int chunk = opt.max_decoder_rows > 0
                        ? std::max<int>(1, static_cast<int>(opt.max_decoder_rows / rows_per_step))
                        : n;
        for (int c0 = 0; c0 < n && !stop;) {
          int const m = std::min(chunk, n - c0);
          std::vector<float> tsub;
          for (int s = 0; s < m; ++s) tsub.push_back(tf[static_cast<std::size_t>(group[static_cast<std::size_t>(c0 + s)])]);
          std::vector<float> eps_all;
          try {
            eps_all = detail::host(be, decode(f, tsub));
          } catch (error const& e) {
            // A batch over the device's memory (or the backend's cap): decode this group in halves.
            if (e.code() != Errc::kOutOfMemory || m == 1) throw;
            chunk = (m + 1) / 2;
            --res.stats.decoder_calls;
            res.stats.decoder_batches.pop_back();
            res.stats.decoded_steps -= m;
            ++res.stats.decoder_splits;
            continue;
          }
          for (int s = 0; s < m && !stop; ++s) {
            int const i = group[static_cast<std::size_t>(c0 + s)];
            Tensor<B> eps = guided(eps_all, m, s);
            inject(i);
            finish_step(i, eps, s == 0 && c0 == 0);
          }
          c0 += m;
        }
      }
    } else {
      models::EncoderFeatures<B> cached;
      for (int i = 0; i < calls && !stop; ++i) {
        float const t = tf[static_cast<std::size_t>(i)];
        inject(i);  // sequential reference ordering: before the UNet call (§4.3)
        bool const key = schedule.is_key(i);
        if (key) {
          cached = encode(i, scheduler.scale_model_input(be, cfg_input(z), i), {&t, 1});
        }
        std::vector<float> const eps_all = detail::host(be, decode(cached, {&t, 1}));
        finish_step(i, guided(eps_all, 1, 0), key);
      }
    }
    res.stats.interrupted = stop;
    res.final = z;
    res.stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    return res;
  }

 private:
  template <class B>
  static Tensor<B> concat_batch(B const& be, Tensor<B> const& a, Tensor<B> const& b) {
    Shape s = a.shape();
    s[0] = a.dim(0) + b.dim(0);
    Tensor<B> out = Tensor<B>::empty(be, s);
    Tensor<B> lo = out.slice(0, 0, a.dim(0)), hi = out.slice(0, a.dim(0), s[0]);
    a.copy_to(be, lo);
    b.copy_to(be, hi);
    return out;
  }
};

}  // namespace fd
