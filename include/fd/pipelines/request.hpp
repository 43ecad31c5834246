#pragma once
/// @file
/// What a text-to-image call takes (fd::Request) and gives back (fd::Generated).

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fd/core/tensor.hpp"
#include "fd/pipelines/sampler.hpp"
#include "fd/schedulers/scheduler.hpp"

namespace fd {

/// One text-to-image request. Defaults are diffusers' StableDiffusionPipeline defaults.
/// @code
///   fd::Request req{.prompt = "a red circle on a blue background", .steps = 50, .seed = 2023};
/// @endcode
struct Request {
  std::string prompt{};              ///< used when `prompts` is empty
  std::string negative_prompt{};     ///< "" = the unconditional prompt of classifier-free guidance
  std::vector<std::string> prompts{};  ///< one prompt per image (overrides `prompt` and `batch`)
  int batch = 1;                     ///< images of `prompt` (diffusers' num_images_per_prompt)
  int steps = 50;
  float guidance = 7.5f;             ///< classifier-free guidance scale; <= 1 runs without guidance
  float guidance_rescale = 0.0f;
  std::uint64_t seed = 0;            ///< image i uses seed + i unless `seeds` is given
  std::vector<std::uint64_t> seeds{};  ///< one seed per image: each image has its own torch CPU generator
  int height = 0, width = 0;         ///< 0 = the UNet's sample_size times the decoder's scale factor
  int clip_skip = 0;                 ///< diffusers' clip_skip: 1 uses the penultimate CLIP layer
  float eta = 0.0f;                  ///< DDIM eta (DDIM only)
  /// Scheduler to run; empty = the model's own (`scheduler/scheduler_config.json`), otherwise that
  /// config converted to this class as diffusers' `from_config` does.
  std::optional<SchedulerKind> scheduler{};
  float noise_injection = 0.003f;    ///< prior noise injection coefficient (inject::Prior samplers only)
  int injection_threshold = 500;     ///< inject at timesteps below this
  /// Rows per parallel decoder call: 0 = what suits the backend (two steps at a time on the CPU),
  /// -1 = whole key-step groups.
  int max_decoder_rows = 0;
  /// Decode in overlapping tiles: nullopt = automatically for latents larger than 96 x 96.
  std::optional<bool> tiled_decode{};

  /// One control image per ControlNet the pipeline holds (StableDiffusion::LoadOptions::controlnets),
  /// in the same order; empty = no ControlNet for this request.
  struct Control {
    /// [channels, height, width] floats, RGB order, in [0, 1], at the request's image size (what
    /// diffusers' control image processor makes of an 8-bit image; fd::image::prepare_control_image).
    std::vector<float> image{};
    float scale = 1.0f;           ///< controlnet_conditioning_scale
    float guidance_start = 0.0f;  ///< control_guidance_start
    float guidance_end = 1.0f;    ///< control_guidance_end
  };
  std::vector<Control> controls{};
  /// diffusers' guess_mode: the ControlNets see the conditional half only, with residuals ramped.
  bool guess_mode = false;
};

/// Progress and diagnostics while a request runs. Every member may be empty.
struct GenerateHooks {
  StepCallback on_step{};                           ///< after each sampler step; return false to stop
  std::function<void(std::string_view)> on_warning{};  ///< e.g. a prompt truncated to 77 tokens
};

/// An 8-bit RGB image, rows top to bottom, 3 bytes per pixel.
struct Image {
  int width = 0, height = 0;
  std::vector<std::uint8_t> rgb{};
};

/// Where the time of a request went, in seconds.
struct GenerateTiming {
  double text_encoder = 0, sampling = 0, decode = 0, total = 0;
};

/// The result of one request.
template <class B>
struct Generated {
  std::vector<Image> images;                 ///< one per image
  Tensor<B> pixels;                          ///< decoded images [N, 3, H, W] in [-1, 1], before clamping
  Tensor<B> latents;                         ///< the sampler's final latents
  Tensor<B> init_noise;                      ///< x_T as drawn from the seeds (before init_noise_sigma)
  Tensor<B> text_embeddings;                 ///< [uncond; cond] (or cond only without guidance)
  std::vector<std::vector<std::int64_t>> input_ids, uncond_input_ids;
  std::vector<std::string> prompts{};          ///< per image
  std::vector<std::uint64_t> seeds;          ///< per image
  std::string scheduler;                     ///< the scheduler class that ran
  SamplerStats stats;
  GenerateTiming timing;
};

}  // namespace fd
