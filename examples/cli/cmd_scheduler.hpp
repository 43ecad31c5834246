#pragma once
// `fasterdiffusion scheduler`: replays a scheduler trajectory on given model outputs, the protocol of the
// golden scheduler fixtures: x = x_T * init_noise_sigma; for call i, x = step(model_outputs[i], i, x)
// (with variance_noise[i] as the noise a stochastic step draws) and latents[i] = x.

#include <memory>

#include <CLI/CLI.hpp>

#include <fd/schedulers/all.hpp>

#include "cli_common.hpp"

namespace fdcli {

struct SchedulerArgs {
  std::string config, inputs, output;
  int steps = 0;
  double eta = 0.0;
};

namespace detail {

// Rows [calls, <sample shape>] of a stacked input tensor, checked against the trajectory.
inline Tensor require_rows(Backend const& be, fd::io::SafeTensorsFile const& in, std::string const& name,
                           std::size_t calls, fd::Shape const& sample, bool allow_double_channels) {
  Tensor t = require_input(be, in, name);
  bool ok = t.rank() == sample.rank() + 1 && t.dim(0) == static_cast<std::int64_t>(calls);
  bool same = ok, twice = ok && allow_double_channels && sample.rank() >= 2;
  for (int k = 0; ok && k < sample.rank(); ++k) {
    same = same && t.dim(k + 1) == sample[k];
    twice = twice && t.dim(k + 1) == (k == 1 ? 2 * sample[k] : sample[k]);
  }
  if (!same && !twice) {
    fd::fail(fd::Errc::kShapeMismatch,
             in.path().string() + ": tensor '" + name + "': expected [" + std::to_string(calls) + ", " +
                 sample.str().substr(1) + " (one row per scheduler call, each shaped like x_T" +
                 (allow_double_channels ? ", or twice its channels" : "") + "), got " + t.shape().str());
  }
  return t;
}

inline Tensor stack_rows(Backend const& be, std::vector<std::vector<float>> const& rows, fd::Shape const& row_shape) {
  fd::Shape shape{static_cast<std::int64_t>(rows.size())};
  for (int k = 0; k < row_shape.rank(); ++k) shape.push_back(row_shape[k]);
  std::vector<float> all;
  all.reserve(static_cast<std::size_t>(shape.numel()));
  for (auto const& r : rows) all.insert(all.end(), r.begin(), r.end());
  return Tensor::from_host(be, shape, all);
}

}  // namespace detail

// The arguments live in a shared object owned by the subcommand's callback, so registering the command
// is one call in main.cpp.
inline void add_scheduler_command(CLI::App& app, std::function<void()>& run) {
  auto args = std::make_shared<SchedulerArgs>();
  SchedulerArgs& a = *args;
  auto* cmd = app.add_subcommand("scheduler", "Replay a diffusion scheduler on given model outputs (fixture protocol)");
  cmd->add_option("--scheduler-config", a.config, "diffusers scheduler_config.json (_class_name picks the scheduler)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--steps", a.steps, "num_inference_steps")->required()->check(CLI::PositiveNumber);
  cmd->add_option("--inputs", a.inputs,
                  "safetensors with x_T, model_outputs [calls, ...] and, for stochastic steps, variance_noise [calls, ...]")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--output", a.output,
                  "safetensors to write: timesteps [calls] (F32), latents [calls, ...], and pred_original_sample / "
                  "scaled_model_inputs where the scheduler has them")
      ->required();
  cmd->add_option("--eta", a.eta, "DDIM eta (other schedulers accept only 0)")->capture_default_str();
  cmd->callback([&run, args] {
    run = [args] {
      SchedulerArgs const& a = *args;
      Backend be{{.threads = 1}};
      fd::AnyScheduler sched(fd::SchedulerConfig::from_file(a.config));
      sched.set_eta(static_cast<float>(a.eta));
      sched.set_timesteps(a.steps);
      std::size_t const calls = sched.timesteps().size();

      auto in = fd::io::SafeTensorsFile::open(a.inputs);
      Tensor x = require_input(be, in, "x_T");
      fd::Shape const shape = x.shape();
      bool const learned = sched.config().variance_type == fd::VarianceType::kLearned ||
                           sched.config().variance_type == fd::VarianceType::kLearnedRange;
      Tensor const outputs = detail::require_rows(be, in, "model_outputs", calls, shape, learned);
      bool const have_noise = in.contains("variance_noise");
      if (sched.uses_noise() && !have_noise) {
        fd::fail(fd::Errc::kMissingTensor, a.inputs + ": missing input tensor 'variance_noise': " +
                                               std::string(sched.class_name()) +
                                               " steps are stochastic here and take their noise from it");
      }
      Tensor const noise_rows = have_noise ? detail::require_rows(be, in, "variance_noise", calls, shape, false) : Tensor{};

      // x_T is standard normal; the schedulers start from x_T * init_noise_sigma.
      {
        std::vector<float> v = x.to_vector_f32(be);
        float const s = sched.init_noise_sigma();
        for (float& e : v) e = e * s;
        x = Tensor::from_host(be, shape, v);
      }
      std::vector<std::vector<float>> latents, pred, scaled;
      for (std::size_t i = 0; i < calls; ++i) {
        int const idx = static_cast<int>(i);
        if (sched.scales_input()) scaled.push_back(sched.scale_model_input(be, x, idx).to_vector_f32(be));
        fd::ReplayNoise noise;
        if (have_noise) noise.push(noise_rows.select(0, idx).to_vector_f32(be));
        x = fd::with_context(a.inputs + ": call " + std::to_string(i), [&] {
          return sched.step(be, outputs.select(0, idx).contiguous(be), idx, x, have_noise ? &noise : nullptr);
        });
        latents.push_back(x.to_vector_f32(be));
        if (sched.has_pred_original_sample()) pred.push_back(sched.pred_original_sample(be).to_vector_f32(be));
      }

      std::vector<float> const& ts = sched.timesteps_f32();
      std::vector<std::pair<std::string, Tensor>> out;
      out.reserve(4);  // also keeps GCC 12 from a false -Warray-bounds on the first emplace_back
      out.emplace_back("timesteps", Tensor::from_host(be, fd::Shape{static_cast<std::int64_t>(ts.size())}, ts));
      out.emplace_back("latents", detail::stack_rows(be, latents, shape));
      if (!pred.empty()) out.emplace_back("pred_original_sample", detail::stack_rows(be, pred, shape));
      if (!scaled.empty()) out.emplace_back("scaled_model_inputs", detail::stack_rows(be, scaled, shape));
      fd::io::save_safetensors(be, a.output, out);
      std::printf("scheduler: %s, %d inference steps, %zu calls -> %s\n", std::string(sched.class_name()).c_str(),
                  a.steps, calls, a.output.c_str());
    };
  });
}

}  // namespace fdcli
