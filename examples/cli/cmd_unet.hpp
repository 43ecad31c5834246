#pragma once
// `fasterdiffusion unet`: one UNet forward, its encoder/decoder split and FasterDiffusion's parallel
// decoder call on tensors from a safetensors file, written to another. The tensor names are those of
// the golden fixtures, so any implementation can be checked against this one.

#include <set>

#include <CLI/CLI.hpp>

#include "cli_common.hpp"
#include "cmd_convert_ldm.hpp"

namespace fdcli {

struct UnetArgs {
  std::string model, inputs, output, variant, config_patch;
  int threads = 0;
  int repeat = 0;
};

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
  cmd->add_option("--threads", a.threads, "CPU threads (0 = all)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--repeat", a.repeat, "time N more full forwards after the first")->check(CLI::NonNegativeNumber);
  cmd->add_option("--variant", a.variant, "weights variant to prefer, e.g. fp16");
  cmd->callback([&run, &a] {
    run = [&a] {
      Backend be{{.threads = a.threads}};
      auto unet = [&] {
        using UNet = fd::models::UNet2DCondition<Backend>;
        if (std::filesystem::is_directory(a.model)) return UNet::load(be, a.model, a.variant);
        fd::io::LdmComponents sd = fd::io::open_ldm_checkpoint(a.model, read_ldm_options(a.config_patch));
        auto cfg = fd::models::UNetConfig::from_json(sd.unet_config, a.model + " (inferred UNet config)");
        return UNet::from_checkpoint(be, std::move(cfg), sd.unet);
      }();
      auto in = fd::io::SafeTensorsFile::open(a.inputs);

      // Names this command reads, and the ones it writes (a fixture io file holds both).
      std::set<std::string> const reads{"sample", "timestep", "encoder_hidden_states", "decoder_timestep",
                                        "fdpar.timesteps"};
      for (auto const& name : in.names()) {
        bool const output_name = name == "out" || name.starts_with("enc.") || name.starts_with("dec.") ||
                                 name.starts_with("dbg.") || name.starts_with("full_tdec.") || name == "fdpar.out";
        if (!reads.contains(name) && !output_name) {
          fd::fail(fd::Errc::kUnexpectedTensor, a.inputs + ": unexpected input tensor '" + name +
                                                    "' (the unet command reads " +
                                                    "sample, timestep, encoder_hidden_states, decoder_timestep, fdpar.timesteps)");
        }
      }
      Tensor const x = require_input(be, in, "sample");
      Tensor const ctx = require_input(be, in, "encoder_hidden_states");
      std::vector<float> const t = input_values(be, in, "timestep");

      // Shape errors from the model name the inputs file they came from.
      auto feats = fd::with_context(a.inputs, [&] { return unet.encode(x, t, ctx); });
      std::vector<std::pair<std::string, Tensor>> out;
      out.reserve(feats.skips.size() + 6);  // also keeps GCC 12 from a false -Warray-bounds in emplace_back
      std::vector<float> per_sample = t.size() == 1 ? std::vector<float>(static_cast<std::size_t>(x.dim(0)), t[0]) : t;
      out.emplace_back("out", unet.decode_rows(feats, per_sample, ctx));
      out.emplace_back("enc.temb", feats.temb);
      for (std::size_t i = 0; i < feats.skips.size(); ++i) {
        char name[32];
        std::snprintf(name, sizeof name, "enc.skip.%02zu", i);
        out.emplace_back(name, feats.skips[i]);
      }
      out.emplace_back("enc.mid", feats.mid);
      if (in.contains("decoder_timestep")) {
        std::vector<float> const td = input_values(be, in, "decoder_timestep");
        if (td.size() != 1) {
          fd::fail(fd::Errc::kShapeMismatch, a.inputs + ": decoder_timestep must hold one value, got " +
                                                 std::to_string(td.size()));
        }
        out.emplace_back("dec.out", unet.decode(feats, td, ctx));
      }
      if (in.contains("fdpar.timesteps")) {
        std::vector<float> const ts = input_values(be, in, "fdpar.timesteps");
        out.emplace_back("fdpar.out", unet.decode(feats, ts, ctx, fd::models::DecoderLayout::kGuidanceHalves));
      }
      fd::io::save_safetensors(be, a.output, out);

      if (a.repeat > 0) {
        std::vector<double> ms;
        for (int r = 0; r < a.repeat; ++r) {
          double const t0 = now_ms();
          Tensor y = unet.forward(x, t, ctx);
          ms.push_back(now_ms() - t0);
        }
        Timing const tm = summarize(ms);
        std::printf("unet forward: median %.3f ms, min %.3f ms over %d runs\n", tm.median_ms, tm.min_ms, a.repeat);
      }
    };
  });
}

}  // namespace fdcli
