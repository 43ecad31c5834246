#pragma once
// `fasterdiffusion text-encoder`: a CLIPTextModel forward on token ids from a safetensors file, written
// with the golden fixtures' tensor names (last_hidden_state, pooler_output, hidden_states.N, clip_skip_K).

#include <CLI/CLI.hpp>

#include <fd/models/clip/clip_text.hpp>

#include "cli_common.hpp"

namespace fdcli {

struct TextEncoderArgs {
  std::string model, inputs, output, variant;
  int threads = 0, repeat = 0, clip_skip = 0;
};

inline void add_text_encoder_command(CLI::App& app, TextEncoderArgs& a, std::function<void()>& run) {
  auto* cmd = app.add_subcommand("text-encoder", "Run a CLIPTextModel on input_ids from a safetensors file");
  cmd->add_option("--model", a.model, "transformers text encoder folder (config.json + model.safetensors)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--inputs", a.inputs, "safetensors with input_ids [B, L] (I64)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--output", a.output,
                  "safetensors to write: last_hidden_state, pooler_output, hidden_states.0..N (and clip_skip_K)")
      ->required();
  cmd->add_option("--clip-skip", a.clip_skip, "also write clip_skip_K = final_layer_norm(hidden_states[-(K+1)])")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--threads", a.threads, "CPU threads (0 = all)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--repeat", a.repeat, "time N more forwards after the first")->check(CLI::NonNegativeNumber);
  cmd->add_option("--variant", a.variant, "weights variant to prefer, e.g. fp16");
  cmd->callback([&run, &a] {
    run = [&a] {
      Backend be{{.threads = a.threads}};
      auto te = fd::models::ClipTextModel<Backend>::load(be, a.model, a.variant);
      auto in = fd::io::SafeTensorsFile::open(a.inputs);
      if (!in.contains("input_ids")) {
        fd::fail(fd::Errc::kMissingTensor, a.inputs + ": missing input tensor 'input_ids'");
      }
      Tensor const ids_t = in.load(be, "input_ids", fd::DType::kI64);
      if (ids_t.rank() != 2) {
        fd::fail(fd::Errc::kShapeMismatch, a.inputs + ": input_ids must be [B, L], got " + ids_t.shape().str());
      }
      std::vector<std::int64_t> ids(static_cast<std::size_t>(ids_t.numel()));
      be.copy_to_host(ids.data(), ids_t.contiguous(be).data<std::int64_t>(), ids.size() * sizeof(std::int64_t));
      std::int64_t const batch = ids_t.dim(0);
      auto out = fd::with_context(a.inputs, [&] { return te.forward(ids, batch, true); });
      std::vector<std::pair<std::string, Tensor>> tensors{{"last_hidden_state", out.last_hidden_state},
                                                          {"pooler_output", out.pooler_output}};
      for (std::size_t i = 0; i < out.hidden_states.size(); ++i) {
        tensors.emplace_back("hidden_states." + std::to_string(i), out.hidden_states[i]);
      }
      if (a.clip_skip > 0) {
        tensors.emplace_back("clip_skip_" + std::to_string(a.clip_skip), fd::with_context(a.inputs, [&] {
                               return te.encode(ids, batch, a.clip_skip);
                             }));
      }
      fd::io::save_safetensors(be, a.output, tensors);
      if (a.repeat > 0) {
        std::vector<double> ms;
        for (int r = 0; r < a.repeat; ++r) {
          double const t0 = now_ms();
          (void)te.encode(ids, batch);
          ms.push_back(now_ms() - t0);
        }
        Timing const t = summarize(ms);
        std::printf("text-encoder forward: median %.3f ms, min %.3f ms over %d runs\n", t.median_ms, t.min_ms, a.repeat);
      }
    };
  });
}

}  // namespace fdcli
