#pragma once
// `fasterdiffusion unet`: one UNet forward, its encoder/decoder split and FasterDiffusion's parallel
// decoder call on tensors from a safetensors file, written to another. The tensor names are those of
// the golden fixtures, so any implementation can be checked against this one.

#include <optional>
#include <set>
#include <type_traits>

#include <CLI/CLI.hpp>

#include <fd/models/controlnet/controlnet.hpp>

#include "cli_backend.hpp"
#include "cli_common.hpp"
#include "cmd_convert_ldm.hpp"

namespace fdcli {

struct UnetArgs {
  std::string model, inputs, output, variant, config_patch, controlnet;
  BackendArgs be;
  int repeat = 0;
  float control_scale = 1.0f;
  bool guess_mode = false;
};

/// A host tensor on backend B (the same tensor on the CPU).
template <class B>
fd::Tensor<B> on_backend(B const& be, Tensor const& t) {
  if constexpr (std::is_same_v<B, Backend>) {
    (void)be;
    return t;
  } else {
    return fd::Tensor<B>::from_host(be, t.shape(), t.to_vector_f32(Backend{{.threads = 1}}));
  }
}

/// A backend tensor on the host, as float32.
template <class B>
Tensor on_host(B const& be, fd::Tensor<B> const& t) {
  if constexpr (std::is_same_v<B, Backend>) {
    (void)be;
    return t;
  } else {
    return Tensor::from_host(Backend{{.threads = 1}}, t.shape(), t.to_vector_f32(be));
  }
}

template <class B>
void run_unet(B const& be, UnetArgs const& a);

inline void add_unet_command(CLI::App& app, UnetArgs& a, std::function<void()>& run) {
  auto* cmd = app.add_subcommand("unet", "Run a UNet2DConditionModel on inputs from a safetensors file");
  cmd->add_option("--model", a.model,
                  "diffusers unet folder (config.json + weights), or a single-file SD 1.x checkpoint (.safetensors, "
                  "LDM names; config inferred)")
      ->required()
      ->check(CLI::ExistingPath);
  cmd->add_option("--config-patch", a.config_patch,
                  "with a single-file --model: JSON {\"unet\": {...}} merged into the inferred config")
      ->check(CLI::ExistingFile);
  cmd->add_option("--inputs", a.inputs,
                  "safetensors with sample [N,C,H,W], timestep [1|N], encoder_hidden_states [N,L,D]; optional "
                  "decoder_timestep [1], fdpar.timesteps [n]")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--output", a.output, "safetensors to write: out, enc.temb, enc.skip.NN, enc.mid, dec.out, fdpar.out")
      ->required();
  add_backend_options(cmd, a.be);
  cmd->add_option("--repeat", a.repeat, "time N more full forwards after the first")->check(CLI::NonNegativeNumber);
  cmd->add_option("--variant", a.variant, "weights variant to prefer, e.g. fp16");
  cmd->add_option("--controlnet", a.controlnet,
                  "diffusers ControlNet folder: reads controlnet_cond [N,C,8H,8W] (and an optional conditioning_scale), "
                  "writes cn.down.NN and cn.mid, and `out` with the residuals added")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--control-scale", a.control_scale, "conditioning scale when the inputs hold no conditioning_scale")
      ->capture_default_str();
  cmd->add_flag("--guess-mode", a.guess_mode, "ControlNet guess mode (residuals ramped from 0.1 to 1)");
  cmd->callback([&run, &a] {
    run = [&a] { with_backend(a.be, [&](auto const& be) { run_unet(be, a); }); };
  });
}

template <class B>
void run_unet(B const& be, UnetArgs const& a) {
  Backend const host{{.threads = a.be.threads}};
  auto unet = [&] {
    using UNet = fd::models::UNet2DCondition<B>;
    if (std::filesystem::is_directory(a.model)) return UNet::load(be, a.model, a.variant);
    fd::io::LdmComponents sd = fd::io::open_ldm_checkpoint(a.model, read_ldm_options(a.config_patch));
    auto cfg = fd::models::UNetConfig::from_json(sd.unet_config, a.model + " (inferred UNet config)");
    return UNet::from_checkpoint(be, std::move(cfg), sd.unet);
  }();
  auto in = fd::io::SafeTensorsFile::open(a.inputs);

  // Names this command reads, and the ones it writes (a fixture io file holds both).
  std::set<std::string> reads{"sample", "timestep", "encoder_hidden_states", "decoder_timestep", "fdpar.timesteps"};
  if (!a.controlnet.empty()) reads.insert({"controlnet_cond", "conditioning_scale"});
  for (auto const& name : in.names()) {
    bool const output_name = name == "out" || name.starts_with("enc.") || name.starts_with("dec.") ||
                             name.starts_with("dbg.") || name.starts_with("full_tdec.") || name == "fdpar.out" ||
                             name.starts_with("cn.") || name.starts_with("scale05.") || name.starts_with("guess.") ||
                             name == "out_without_controlnet";
    if (!reads.contains(name) && !output_name) {
      fd::fail(fd::Errc::kUnexpectedTensor, a.inputs + ": unexpected input tensor '" + name +
                                                "' (the unet command reads " +
                                                "sample, timestep, encoder_hidden_states, decoder_timestep, fdpar.timesteps" +
                                                (a.controlnet.empty() ? "; controlnet_cond with --controlnet)" : ", controlnet_cond, conditioning_scale)"));
    }
  }
  using BT = fd::Tensor<B>;
  BT const x = on_backend(be, require_input(host, in, "sample"));
  BT const ctx = on_backend(be, require_input(host, in, "encoder_hidden_states"));
  std::vector<float> const t = input_values(host, in, "timestep");

  std::vector<std::pair<std::string, Tensor>> out;
  out.reserve(64);  // also keeps GCC 12 from a false -Warray-bounds in emplace_back
  // The ControlNet's residuals, added to the skips and mid output of every forward below.
  std::optional<fd::models::ControlResiduals<B>> control;
  if (!a.controlnet.empty()) {
    auto cn = fd::models::ControlNetModel<B>::load(be, a.controlnet, a.variant);
    BT const cond = on_backend(be, require_input(host, in, "controlnet_cond"));
    float scale = a.control_scale;
    if (in.contains("conditioning_scale")) {
      std::vector<float> const s = input_values(host, in, "conditioning_scale");
      if (s.size() != 1) fd::fail(fd::Errc::kShapeMismatch, a.inputs + ": conditioning_scale must hold one value");
      scale = s[0];
    }
    control = fd::with_context(a.inputs, [&] { return cn.forward(x, t, ctx, cond, scale, a.guess_mode); });
    for (std::size_t i = 0; i < control->down.size(); ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "cn.down.%02zu", i);
      out.emplace_back(name, on_host(be, control->down[i]));
    }
    out.emplace_back("cn.mid", on_host(be, control->mid));
  }
  fd::models::ControlResiduals<B> const* cr = control ? &*control : nullptr;

  // Shape errors from the model name the inputs file they came from.
  auto feats = fd::with_context(a.inputs, [&] { return unet.encode(x, t, ctx, cr); });
  std::vector<float> per_sample = t.size() == 1 ? std::vector<float>(static_cast<std::size_t>(x.dim(0)), t[0]) : t;
  out.emplace_back("out", on_host(be, unet.decode_rows(feats, per_sample, ctx)));
  out.emplace_back("enc.temb", on_host(be, feats.temb));
  for (std::size_t i = 0; i < feats.skips.size(); ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "enc.skip.%02zu", i);
    out.emplace_back(name, on_host(be, feats.skips[i]));
  }
  out.emplace_back("enc.mid", on_host(be, feats.mid));
  if (in.contains("decoder_timestep")) {
    std::vector<float> const td = input_values(host, in, "decoder_timestep");
    if (td.size() != 1) {
      fd::fail(fd::Errc::kShapeMismatch, a.inputs + ": decoder_timestep must hold one value, got " +
                                             std::to_string(td.size()));
    }
    out.emplace_back("dec.out", on_host(be, unet.decode(feats, td, ctx)));
  }
  if (in.contains("fdpar.timesteps")) {
    std::vector<float> const ts = input_values(host, in, "fdpar.timesteps");
    out.emplace_back("fdpar.out", on_host(be, unet.decode(feats, ts, ctx, fd::models::DecoderLayout::kGuidanceHalves)));
  }
  fd::io::save_safetensors(host, a.output, out);

  if (a.repeat > 0) {
    std::vector<double> ms;
    for (int r = 0; r < a.repeat; ++r) {
      double const t0 = now_ms();
      BT y = unet.forward(x, t, ctx, cr);
      be.synchronize();
      ms.push_back(now_ms() - t0);
    }
    Timing const tm = summarize(ms);
    std::printf("unet forward: median %.3f ms, min %.3f ms over %d runs\n", tm.median_ms, tm.min_ms, a.repeat);
  }
}

}  // namespace fdcli
