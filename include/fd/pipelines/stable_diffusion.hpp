#pragma once
/// @file
/// fd::StableDiffusion: text to image with diffusers' StableDiffusionPipeline semantics (v0.23), from a
/// diffusers folder (`model_index.json` + component folders) or a single-file SD 1.x checkpoint, with
/// the sampler and its FasterDiffusion policies chosen at compile time.
///
/// @code
///   fd::backend::Cpu cpu{{.threads = 8}};
///   auto sd = fd::StableDiffusion<fd::backend::Cpu>::load(cpu, "stable-diffusion-v1-5");
///   using Faster = fd::Sampler<fd::keys::Paper50, fd::prop::EncoderPropagation<fd::prop::Parallel>,
///                              fd::inject::Prior>;
///   auto out = sd.generate<Faster>({.prompt = "a cat wearing sunglasses", .seed = 2023});
///   fd::io::write_png("cat.png", out.images[0].rgb, out.images[0].width, out.images[0].height, 3);
/// @endcode

#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fd/error.hpp"
#include "fd/image/postprocess.hpp"
#include "fd/io/ldm_checkpoint.hpp"
#include "fd/models/clip/clip_text.hpp"
#include "fd/models/controlnet/controlled_unet.hpp"
#include "fd/models/unet/unet.hpp"
#include "fd/models/vae/image_decoder.hpp"
#include "fd/pipelines/model_index.hpp"
#include "fd/pipelines/request.hpp"
#include "fd/pipelines/sampler.hpp"
#include "fd/random/torch_noise.hpp"
#include "fd/schedulers/any_scheduler.hpp"
#include "fd/text/clip_tokenizer.hpp"

namespace fd {

/// The key-step policy type of a Sampler, for generate()'s runtime key argument.
template <class S>
struct sampler_keys;
template <class Keys, class Prop, class Inject>
struct sampler_keys<Sampler<Keys, Prop, Inject>> {
  using type = Keys;
};

/// A loaded text-to-image pipeline. Immutable after load(): generate() is const and may run
/// concurrently with itself on backends whose ops are thread-safe.
template <class B>
class StableDiffusion {
 public:
  struct LoadOptions {
    std::string variant;                    ///< weights variant to prefer, e.g. "fp16"
    std::filesystem::path tokenizer;        ///< tokenizer folder; required for single-file checkpoints
    std::filesystem::path decoder;          ///< replaces the model's VAE, e.g. a TAESD folder
    text::Normalization normalization = text::Normalization::kFtfy;
    /// Single-file checkpoints: patches for the configs inferred from tensor shapes (values that shapes
    /// cannot tell, e.g. norm groups of a non-standard model; docs/single_file.md).
    io::LdmOptions ldm{};
    /// ControlNet folders (diffusers ControlNetModel) a request's `controls` refer to, in order.
    std::vector<std::filesystem::path> controlnets{};
  };

  /// Loads a diffusers pipeline folder through its `model_index.json` (unet, text_encoder, tokenizer,
  /// scheduler; vae optional: pixel-space models have none), or a single `.safetensors` file in the
  /// original LDM layout (SD 1.x; the scheduler is SD 1.5's PNDM config).
  static StableDiffusion load(B const& be, std::filesystem::path const& model, LoadOptions const& opt = {}) {
    std::error_code ec;
    if (std::filesystem::is_regular_file(model, ec)) return load_single_file(be, model, opt);
    if (!std::filesystem::is_directory(model, ec)) {
      fail(Errc::kIo, model.string() + ": no such model folder or checkpoint file");
    }
    ModelIndex const idx = ModelIndex::from_file(model / "model_index.json");
    auto expect = [&](std::string const& name, std::initializer_list<char const*> classes) {
      ModelIndex::Component const& c = idx.require(name);
      for (char const* k : classes) {
        if (c.class_name == k) return;
      }
      std::string list;
      for (char const* k : classes) list += (list.empty() ? "" : ", ") + std::string(k);
      fail(Errc::kUnsupported, idx.path.string() + ": component '" + name + "' is a " + c.class_name +
                                   "; fd's StableDiffusion supports " + list);
    };
    auto folder = [&](std::string const& name) {
      std::filesystem::path const p = model / name;
      if (!std::filesystem::is_directory(p, ec)) {
        fail(Errc::kIo, p.string() + ": component folder missing (model_index.json lists '" + name + "')");
      }
      return p;
    };
    expect("unet", {"UNet2DConditionModel"});
    expect("text_encoder", {"CLIPTextModel"});
    expect("tokenizer", {"CLIPTokenizer", "CLIPTokenizerFast"});
    expect("scheduler", {"DDIMScheduler", "PNDMScheduler", "DPMSolverMultistepScheduler", "DDPMScheduler",
                         "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler"});
    StableDiffusion sd(be);
    sd.source_ = model;
    sd.unet_.emplace(models::UNet2DCondition<B>::load(be, folder("unet"), opt.variant));
    sd.text_encoder_.emplace(models::ClipTextModel<B>::load(be, folder("text_encoder"), opt.variant));
    sd.tokenizer_.emplace(text::ClipTokenizer::load(opt.tokenizer.empty() ? folder("tokenizer") : opt.tokenizer,
                                                    opt.normalization));
    sd.scheduler_file_ = folder("scheduler") / "scheduler_config.json";
    sd.scheduler_ = SchedulerConfig::from_file(sd.scheduler_file_);
    if (!opt.decoder.empty()) {
      sd.decoder_.emplace(models::ImageDecoder<B>::load(be, opt.decoder, opt.variant));
    } else if (idx.has("vae")) {
      expect("vae", {"AutoencoderKL", "AutoencoderTiny"});
      sd.decoder_.emplace(models::ImageDecoder<B>::load(be, folder("vae"), opt.variant));
    }
    sd.load_controlnets(opt);
    sd.validate();
    return sd;
  }

  /// The UNet, text encoder and VAE of an original SD 1.x checkpoint file, names mapped at load time.
  static StableDiffusion load_single_file(B const& be, std::filesystem::path const& file, LoadOptions const& opt = {}) {
    if (opt.tokenizer.empty()) {
      fail(Errc::kInvalidArgument, file.string() +
                                       ": a single-file checkpoint carries no tokenizer; pass a CLIP tokenizer folder "
                                       "(vocab.json + merges.txt, e.g. models/tiny-shapes/tokenizer, which is SD 1.5's)");
    }
    io::LdmComponents parts = io::open_ldm_checkpoint(file, opt.ldm);
    StableDiffusion sd(be);
    sd.source_ = file;
    std::string const src = file.string();
    if (parts.text_encoder_config.is_null()) {
      fail(Errc::kMissingTensor, src + ": the checkpoint has no text encoder (cond_stage_model.*)");
    }
    sd.unet_.emplace(models::UNet2DCondition<B>::from_checkpoint(
        be, models::UNetConfig::from_json(parts.unet_config, src + " (unet)"), parts.unet));
    sd.text_encoder_.emplace(models::ClipTextModel<B>::from_checkpoint(
        be, models::ClipTextConfig::from_json(parts.text_encoder_config, src + " (text encoder)"), parts.text_encoder));
    sd.tokenizer_.emplace(text::ClipTokenizer::load(opt.tokenizer, opt.normalization));
    sd.scheduler_ = SchedulerConfig::sd15(SchedulerKind::kPndm);
    if (!opt.decoder.empty()) {
      sd.decoder_.emplace(models::ImageDecoder<B>::load(be, opt.decoder, opt.variant));
    } else if (parts.vae_config.is_null()) {
      fail(Errc::kMissingTensor, src + ": the checkpoint has no VAE (first_stage_model.*); pass a decoder folder");
    } else {
      sd.decoder_.emplace(models::ImageDecoder<B>::from_kl(models::AutoencoderKL<B>::from_checkpoint(
          be, models::AutoencoderKLConfig::from_json(parts.vae_config, src + " (vae)"), parts.vae)));
    }
    sd.load_controlnets(opt);
    sd.validate();
    return sd;
  }

  /// Runs one request with the sampler S (an fd::Sampler<Keys, Prop, Inject>); `keys` is the key-step
  /// policy value for policies chosen at run time (keys::Runtime).
  template <class S>
  Generated<B> generate(Request const& req, GenerateHooks const& hooks = {},
                        typename sampler_keys<S>::type const& keys = {}) const {
    auto const t0 = std::chrono::steady_clock::now();
    auto seconds_since = [](auto t) {
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
    };
    Generated<B> out;
    out.prompts = req.prompts.empty() ? std::vector<std::string>(static_cast<std::size_t>(std::max(req.batch, 0)), req.prompt)
                                      : req.prompts;
    check_request(req, out.prompts);
    std::int64_t const n = static_cast<std::int64_t>(out.prompts.size());
    if (!req.seeds.empty()) {
      out.seeds = req.seeds;
    } else {
      for (std::int64_t i = 0; i < n; ++i) out.seeds.push_back(req.seed + static_cast<std::uint64_t>(i));
    }
    auto const [height, width] = image_size(req);
    int const s = scale_factor();
    bool const cfg = req.guidance > 1.0f;

    // Text: [uncond x N; cond x N] with guidance (diffusers' batch order), cond only without.
    auto const t_text = std::chrono::steady_clock::now();
    std::vector<std::int64_t> ids;
    auto add_ids = [&](std::string const& prompt, std::vector<std::vector<std::int64_t>>& record, bool user_prompt,
                       std::size_t index) {
      text::Encoding e = tokenizer_->encode(prompt);
      if (user_prompt && e.ids_untruncated.size() <= 2) {
        fail(Errc::kInvalidArgument, "prompt " + std::to_string(index) + " is empty or only white space");
      }
      if (e.truncated && hooks.on_warning) {
        hooks.on_warning("The following part of your input was truncated because CLIP can only handle sequences up to " +
                         std::to_string(tokenizer_->model_max_length()) + " tokens: " + e.removed_text);
      }
      ids.insert(ids.end(), e.input_ids.begin(), e.input_ids.end());
      record.push_back(std::move(e.input_ids));
    };
    if (cfg) {
      for (std::int64_t i = 0; i < n; ++i) add_ids(req.negative_prompt, out.uncond_input_ids, false, 0);
    }
    for (std::int64_t i = 0; i < n; ++i) add_ids(out.prompts[static_cast<std::size_t>(i)], out.input_ids, true, static_cast<std::size_t>(i));
    out.text_embeddings = text_encoder_->encode(ids, cfg ? 2 * n : n, req.clip_skip);
    out.timing.text_encoder = seconds_since(t_text);

    // x_T from one torch CPU generator per image: the same noise diffusers draws for these seeds.
    random::TorchNoise noise(out.seeds);
    Shape const latent_shape{n, unet_->config().in_channels, height / s, width / s};
    {
      std::vector<float> host(static_cast<std::size_t>(latent_shape.numel()));
      noise.fill_normal(host);
      out.init_noise = Tensor<B>::from_host(be_, latent_shape, host);
    }

    AnyScheduler sched(scheduler_config(req.scheduler));
    if (req.eta != 0.0f) sched.set_eta(req.eta);
    out.scheduler = std::string(sched.class_name());

    std::int64_t const step_rows = cfg ? 2 * n : n;
    SamplerOptions so{.guidance = req.guidance,
                      .guidance_rescale = req.guidance_rescale,
                      .inject_alpha = req.noise_injection,
                      .inject_threshold = req.injection_threshold,
                      .max_decoder_rows = req.max_decoder_rows == 0 ? backend::preferred_decoder_rows(be_, step_rows)
                                                                    : std::max(req.max_decoder_rows, 0),
                      .keep_trajectory = false,
                      .noise = &noise};
    auto const t_sample = std::chrono::steady_clock::now();
    SampleResult<B> res;
    if (req.controls.empty()) {
      res = S::run(be_, *unet_, sched, req.steps, out.init_noise, out.text_embeddings, so, keys, hooks.on_step);
    } else {
      // The ControlNets run inside the encoder: at every step for the baseline, at key steps only with
      // FasterDiffusion (their residuals are part of the cached features).
      models::ControlledUNet<B> const model(*unet_, control_units(req, height, width), req.guess_mode, cfg);
      res = S::run(be_, model, sched, req.steps, out.init_noise, out.text_embeddings, so, keys, hooks.on_step);
    }
    out.timing.sampling = seconds_since(t_sample);
    out.stats = res.stats;
    out.latents = res.final;

    auto const t_dec = std::chrono::steady_clock::now();
    if (decoder_) {
      bool const tiled = req.tiled_decode.value_or(out.latents.dim(2) > 96 || out.latents.dim(3) > 96);
      out.pixels = tiled ? decoder_->decode_tiled(out.latents, models::TileOptions{}) : decoder_->decode(out.latents);
    } else {
      out.pixels = out.latents;  // pixel space: the sample is the image
    }
    out.images = to_images(out.pixels);
    out.timing.decode = seconds_since(t_dec);
    out.timing.total = seconds_since(t0);
    return out;
  }

  models::UNet2DCondition<B> const& unet() const { return *unet_; }
  /// The ControlNets loaded with LoadOptions::controlnets, in order.
  std::vector<std::shared_ptr<models::ControlNetModel<B> const>> const& controlnets() const { return controlnets_; }
  models::ClipTextModel<B> const& text_encoder() const { return *text_encoder_; }
  text::ClipTokenizer const& tokenizer() const { return *tokenizer_; }
  /// The image decoder, or nullptr for a pixel-space model.
  models::ImageDecoder<B> const* decoder() const { return decoder_ ? &*decoder_ : nullptr; }
  /// The model's scheduler config, or that config converted to another class as diffusers'
  /// `Class.from_config(pipe.scheduler.config)` does.
  SchedulerConfig scheduler_config(std::optional<SchedulerKind> as = std::nullopt) const {
    if (!as || *as == scheduler_.kind) return scheduler_;
    return scheduler_file_.empty() ? SchedulerConfig::sd15(*as) : SchedulerConfig::from_file(scheduler_file_, as);
  }
  /// Pixels per latent pixel: the decoder's factor (8 for SD's VAE), 1 in pixel space.
  int scale_factor() const { return decoder_ ? decoder_->scale_factor() : 1; }
  /// diffusers' default size: the UNet's sample_size times the scale factor.
  int default_size() const { return unet_->config().sample_size * scale_factor(); }
  std::filesystem::path const& source() const { return source_; }

 private:
  explicit StableDiffusion(B const& be) : be_(be) {}

  // Components that load on their own can still disagree with each other.
  void validate() const {
    std::string const where = source_.string() + ": ";
    int const ctx = unet_->config().cross_attention_dim.front();
    if (text_encoder_->config().hidden_size != ctx) {
      fail(Errc::kShapeMismatch, where + "the text encoder's hidden size " + std::to_string(text_encoder_->config().hidden_size) +
                                     " does not match the UNet's cross_attention_dim " + std::to_string(ctx));
    }
    int const want = decoder_ ? decoder_->latent_channels() : 3;
    if (unet_->config().in_channels != want || unet_->config().out_channels != want) {
      fail(Errc::kShapeMismatch, where + "the UNet has " + std::to_string(unet_->config().in_channels) + " input and " +
                                     std::to_string(unet_->config().out_channels) + " output channels, but " +
                                     (decoder_ ? "the image decoder takes " + std::to_string(want) + " latent channels"
                                               : std::string("a pixel-space model (no vae) needs 3 (RGB)")));
    }
  }

  void load_controlnets(LoadOptions const& opt) {
    for (auto const& dir : opt.controlnets) {
      auto cn = std::make_shared<models::ControlNetModel<B> const>(models::ControlNetModel<B>::load(be_, dir, opt.variant));
      auto const& c = cn->config();
      std::string const where = dir.string() + ": ";
      if (c.trunk.in_channels != unet_->config().in_channels) {
        fail(Errc::kShapeMismatch, where + "the ControlNet takes " + std::to_string(c.trunk.in_channels) +
                                       " input channels, the UNet " + std::to_string(unet_->config().in_channels));
      }
      if (c.trunk.cross_attention_dim.front() != unet_->config().cross_attention_dim.front()) {
        fail(Errc::kShapeMismatch, where + "the ControlNet's cross_attention_dim " +
                                       std::to_string(c.trunk.cross_attention_dim.front()) + " differs from the UNet's " +
                                       std::to_string(unet_->config().cross_attention_dim.front()));
      }
      int const f = 1 << (c.conditioning_embedding_out_channels.size() - 1);
      int const s = decoder_ ? decoder_->scale_factor() : 1;
      if (f != s) {
        fail(Errc::kShapeMismatch, where + "the ControlNet embeds control images at 1/" + std::to_string(f) +
                                       " of their size, but this pipeline's latents are 1/" + std::to_string(s) +
                                       " of the image");
      }
      controlnets_.push_back(std::move(cn));
    }
  }

  std::vector<models::ControlUnit<B>> control_units(Request const& req, int height, int width) const {
    if (req.controls.size() != controlnets_.size()) {
      fail(Errc::kInvalidArgument, "request: " + std::to_string(req.controls.size()) + " control image(s) for " +
                                       std::to_string(controlnets_.size()) + " loaded ControlNet(s)");
    }
    std::vector<models::ControlUnit<B>> units;
    for (std::size_t k = 0; k < controlnets_.size(); ++k) {
      auto const& c = req.controls[k];
      int const ch = controlnets_[k]->config().conditioning_channels;
      std::size_t const want = static_cast<std::size_t>(ch) * static_cast<std::size_t>(height) * static_cast<std::size_t>(width);
      if (c.image.size() != want) {
        fail(Errc::kShapeMismatch, "request: control image " + std::to_string(k) + " holds " + std::to_string(c.image.size()) +
                                       " values; the ControlNet needs [" + std::to_string(ch) + ", " + std::to_string(height) +
                                       ", " + std::to_string(width) + "] at the request's size");
      }
      for (float v : c.image) {
        if (!std::isfinite(v)) fail(Errc::kNonFinite, "request: control image " + std::to_string(k) + " holds NaN or infinity");
      }
      units.push_back({.net = controlnets_[k].get(),
                       .image = Tensor<B>::from_host(be_, {1, ch, height, width}, c.image),
                       .scale = c.scale,
                       .guidance_start = c.guidance_start,
                       .guidance_end = c.guidance_end});
    }
    return units;
  }

  void check_request(Request const& req, std::vector<std::string> const& prompts) const {
    if (prompts.empty()) fail(Errc::kInvalidArgument, "request: batch must be at least 1");
    if (!req.seeds.empty() && req.seeds.size() != prompts.size()) {
      fail(Errc::kInvalidArgument, "request: " + std::to_string(req.seeds.size()) + " seeds for " +
                                       std::to_string(prompts.size()) + " images");
    }
    if (req.steps <= 0) fail(Errc::kInvalidArgument, "request: steps must be positive, got " + std::to_string(req.steps));
    if (!std::isfinite(req.guidance)) fail(Errc::kInvalidArgument, "request: guidance scale is not finite");
  }

  std::pair<int, int> image_size(Request const& req) const {
    int const h = req.height > 0 ? req.height : default_size();
    int const w = req.width > 0 ? req.width : default_size();
    if (req.height < 0 || req.width < 0) {
      fail(Errc::kInvalidArgument, "request: height and width must be positive");
    }
    // diffusers' check_inputs: multiples of 8 whatever the decoder.
    if (h % 8 != 0 || w % 8 != 0) {
      fail(Errc::kInvalidArgument, "request: height and width have to be divisible by 8, got " + std::to_string(h) +
                                       "x" + std::to_string(w));
    }
    int const s = scale_factor();
    if (h % s != 0 || w % s != 0) {
      fail(Errc::kInvalidArgument, "request: height and width must be multiples of the decoder's scale factor " +
                                       std::to_string(s));
    }
    return {h, w};
  }

  std::vector<Image> to_images(Tensor<B> const& pixels) const {
    std::vector<Image> images;
    std::int64_t const n = pixels.dim(0), h = pixels.dim(2), w = pixels.dim(3);
    std::vector<std::uint8_t> const all = image::to_rgb8(be_, pixels);
    std::size_t const per = static_cast<std::size_t>(h * w * 3);
    for (std::int64_t i = 0; i < n; ++i) {
      auto const first = all.begin() + static_cast<std::ptrdiff_t>(per * static_cast<std::size_t>(i));
      images.push_back(Image{static_cast<int>(w), static_cast<int>(h), std::vector<std::uint8_t>(first, first + static_cast<std::ptrdiff_t>(per))});
    }
    return images;
  }

  B be_;
  std::filesystem::path source_;
  std::optional<models::UNet2DCondition<B>> unet_;
  std::vector<std::shared_ptr<models::ControlNetModel<B> const>> controlnets_;
  std::optional<models::ClipTextModel<B>> text_encoder_;
  std::optional<text::ClipTokenizer> tokenizer_;
  std::optional<models::ImageDecoder<B>> decoder_;
  SchedulerConfig scheduler_;
  std::filesystem::path scheduler_file_;  // empty for single-file checkpoints (SD 1.5's config)
};

}  // namespace fd
