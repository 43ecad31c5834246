#pragma once
// `fasterdiffusion sample`: the denoising loop on given initial latents and text embeddings, baseline or
// FasterDiffusion, with the scheduler named by a diffusers scheduler_config.json.

#include <CLI/CLI.hpp>

#include <fd/models/controlnet/controlled_unet.hpp>
#include <fd/pipelines/sampler.hpp>
#include <fd/schedulers/all.hpp>

#include "cli_common.hpp"

namespace fdcli {

struct SampleArgs {
  std::string unet, scheduler_config, inputs, output, accel = "fd", keys = "50ls", injection, variant, controlnet;
  int steps = 50, threads = 0, max_decoder_rows = 0;
  float guidance = 7.5f, guidance_rescale = 0.0f, control_scale = 1.0f;
};

template <class Inject, class Prop, class Keys, class Model>
fd::SampleResult<Backend> run_sampler(Backend const& be, Model const& unet,
                                      fd::AnyScheduler& sched, SampleArgs const& a, Tensor const& x, Tensor const& ctx,
                                      fd::SamplerOptions const& o, Keys const& keys) {
  return fd::Sampler<Keys, Prop, Inject>::run(be, unet, sched, a.steps, x, ctx, o, keys);
}

inline void add_sample_command(CLI::App& app, SampleArgs& a, std::function<void()>& run) {
  auto* cmd = app.add_subcommand("sample", "Run the sampler (baseline or FasterDiffusion) on given latents and text embeddings");
  cmd->add_option("--unet", a.unet, "diffusers unet folder")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--scheduler-config", a.scheduler_config, "diffusers scheduler_config.json (_class_name picks the scheduler)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--steps", a.steps, "inference steps")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--guidance", a.guidance, "classifier-free guidance scale (<= 1: no guidance)")->capture_default_str();
  cmd->add_option("--guidance-rescale", a.guidance_rescale, "diffusers guidance_rescale")->capture_default_str();
  cmd->add_option("--inputs", a.inputs, "safetensors with init_latents [B,C,H,W], encoder_hidden_states [2B,L,D] "
                                        "(uncond first; [B,L,D] without guidance), optional variance_noise [calls,B,C,H,W]")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--output", a.output, "safetensors to write: timesteps, latents [calls,B,C,H,W], final")->required();
  cmd->add_option("--accel", a.accel, "none | fd (parallel decoding) | fd-seq (sequential)")
      ->capture_default_str()
      ->check(CLI::IsMember({"none", "fd", "fd-seq"}));
  cmd->add_option("--keys", a.keys, "key steps: 50ls | 50ls-personalized | 100ls | 75ls | s2 | pro | every:N | LIST")
      ->capture_default_str();
  cmd->add_option("--noise-injection", a.injection, "prior noise injection coefficient, or off (default 0.003 with fd, off with none)");
  cmd->add_option("--max-decoder-rows", a.max_decoder_rows,
                  "split parallel decoder batches above this many rows (default: two steps' worth of rows, the "
                  "fastest on the CPU backend; -1 = whole groups)");
  cmd->add_option("--threads", a.threads, "CPU threads (0 = all)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--variant", a.variant, "weights variant to prefer, e.g. fp16");
  cmd->add_option("--controlnet", a.controlnet,
                  "diffusers ControlNet folder; the inputs then hold controlnet_cond [1|B,C,8H,8W] (RGB in [0, 1])")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--control-scale", a.control_scale, "ControlNet conditioning scale")->capture_default_str();
  cmd->callback([&run, &a] {
    run = [&a] {
      Backend be{{.threads = a.threads}};
      auto unet = fd::models::UNet2DCondition<Backend>::load(be, a.unet, a.variant);
      std::optional<fd::models::ControlNetModel<Backend>> cn;
      if (!a.controlnet.empty()) cn.emplace(fd::models::ControlNetModel<Backend>::load(be, a.controlnet, a.variant));
      auto sched = fd::AnyScheduler::from_file(a.scheduler_config);
      auto in = fd::io::SafeTensorsFile::open(a.inputs);
      for (auto const& name : in.names()) {
        // A fixture file also holds reference outputs; those names are not inputs but are harmless.
        bool const output_name = name == "timesteps" || name == "latents" || name == "final" ||
                                 name.starts_with("baseline.") || name.starts_with("fd.");
        bool const control_name = cn && name == "controlnet_cond";
        if (name != "init_latents" && name != "encoder_hidden_states" && name != "variance_noise" && !output_name &&
            !control_name) {
          fd::fail(fd::Errc::kUnexpectedTensor, a.inputs + ": unexpected input tensor '" + name +
                                                    "' (sample reads init_latents, encoder_hidden_states, variance_noise" +
                                                    (cn ? ", controlnet_cond)" : "; controlnet_cond with --controlnet)"));
        }
      }
      Tensor const x = require_input(be, in, "init_latents");
      Tensor const ctx = require_input(be, in, "encoder_hidden_states");
      std::unique_ptr<fd::ReplayNoise> noise;
      if (in.contains("variance_noise")) {
        noise = std::make_unique<fd::ReplayNoise>(fd::ReplayNoise::from_rows(be, require_input(be, in, "variance_noise")));
      }
      std::optional<float> const alpha =
          parse_injection(a.injection.empty() ? (a.accel == "none" ? "off" : "0.003") : a.injection);
      // On the CPU a whole group in one batch is slower than two steps at a time: every new batch size
      // is fresh memory to fault in, and the batch no longer fits the caches (docs/benchmarks.md).
      int const step_rows = static_cast<int>(a.guidance > 1.0f ? 2 * x.dim(0) : x.dim(0));
      int const rows = a.max_decoder_rows == 0 ? 2 * step_rows : (a.max_decoder_rows < 0 ? 0 : a.max_decoder_rows);
      fd::SamplerOptions o{.guidance = a.guidance, .guidance_rescale = a.guidance_rescale,
                           .max_decoder_rows = rows, .noise = noise.get()};
      bool const injecting = alpha.has_value();
      if (injecting) o.inject_alpha = *alpha;
      fd::keys::Runtime const keys = fd::keys::Runtime::parse(a.accel == "none" ? "all" : a.keys);
      using Par = fd::prop::EncoderPropagation<fd::prop::Parallel>;
      using Seq = fd::prop::EncoderPropagation<fd::prop::Sequential>;
      fd::SampleResult<Backend> res;
      std::optional<fd::models::ControlledUNet<Backend>> controlled;
      if (cn) {
        controlled.emplace(unet, std::vector<fd::models::ControlUnit<Backend>>{
                                     {.net = &*cn, .image = require_input(be, in, "controlnet_cond"), .scale = a.control_scale}},
                           false, a.guidance > 1.0f);
      }
      auto go = [&](auto inject_tag) {
        using I = decltype(inject_tag);
        auto with_model = [&](auto const& model) {
          if (a.accel == "none") {
            res = run_sampler<I, fd::prop::None>(be, model, sched, a, x, ctx, o, fd::keys::All{});
          } else if (a.accel == "fd") {
            res = run_sampler<I, Par>(be, model, sched, a, x, ctx, o, keys);
          } else {
            res = run_sampler<I, Seq>(be, model, sched, a, x, ctx, o, keys);
          }
        };
        if (controlled) {
          with_model(*controlled);
        } else {
          with_model(unet);
        }
      };
      fd::with_context(a.inputs, [&] {
        if (injecting) {
          go(fd::inject::Prior{});
        } else {
          go(fd::inject::None{});
        }
      });
      std::vector<std::int64_t> ts(res.timesteps.begin(), res.timesteps.end());
      fd::Shape const lat_shape = x.shape();
      std::int64_t const calls = static_cast<std::int64_t>(res.latents.size());
      fd::Shape stacked{calls};
      for (int i = 0; i < lat_shape.rank(); ++i) stacked.push_back(lat_shape[i]);
      Tensor traj = Tensor::empty(be, stacked);
      for (std::int64_t i = 0; i < calls; ++i) {
        Tensor dst = traj.select(0, i);
        res.latents[static_cast<std::size_t>(i)].copy_to(be, dst);
      }
      fd::io::save_safetensors(be, a.output,
                               {{"timesteps", Tensor::from_host(be, {static_cast<std::int64_t>(ts.size())}, ts)},
                                {"latents", traj},
                                {"final", res.final}});
      std::printf("sampling: %.3f s, encoder runs: %d, decoder calls: %d, decoded steps: %d", res.stats.seconds,
                  res.stats.encoder_runs, res.stats.decoder_calls, res.stats.decoded_steps);
      if (cn) std::printf(", controlnet runs: %d", res.stats.controlnet_runs);
      std::printf("\n");
    };
  });
}

}  // namespace fdcli
