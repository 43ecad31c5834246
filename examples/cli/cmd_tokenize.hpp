#pragma once
// `fasterdiffusion tokenize`: the CLIP token ids of a prompt, as the Stable Diffusion pipeline computes
// them, printed as one JSON list. A truncated prompt is reported on stderr the way diffusers warns.

#include <cstdio>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <fd/text/clip_tokenizer.hpp>

namespace fdcli {

struct TokenizeArgs {
  std::string tokenizer, prompt;
  bool no_ftfy = false, untruncated = false, tokens = false, normalized = false;
};

inline void add_tokenize_command(CLI::App& app, std::function<void()>& run) {
  auto args = std::make_shared<TokenizeArgs>();
  TokenizeArgs& a = *args;
  auto* cmd = app.add_subcommand("tokenize", "CLIP token ids of a prompt (JSON list on stdout)");
  cmd->add_option("--tokenizer", a.tokenizer, "tokenizer folder: vocab.json, merges.txt, tokenizer_config.json")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--prompt", a.prompt, "the prompt (UTF-8; invalid bytes read as U+FFFD)")->required();
  cmd->add_flag("--no-ftfy", a.no_ftfy, "normalise like transformers without ftfy installed");
  cmd->add_flag("--untruncated", a.untruncated, "print bos + all tokens + eos (no truncation, no padding)");
  cmd->add_flag("--tokens", a.tokens, "print the BPE tokens (vocabulary strings) instead of ids");
  cmd->add_flag("--normalized", a.normalized, "print the normalised prompt (a JSON string) instead of ids");
  cmd->callback([&run, args] {
    run = [args] {
      TokenizeArgs const& a = *args;
      auto const tok = fd::text::ClipTokenizer::load(
          a.tokenizer, a.no_ftfy ? fd::text::Normalization::kBasic : fd::text::Normalization::kFtfy);
      fd::text::Encoding const e = tok.encode(a.prompt);
      if (e.truncated) {
        std::fprintf(stderr,
                     "The following part of your input was truncated because CLIP can only handle sequences up to "
                     "%d tokens: %s\n",
                     tok.model_max_length(), e.removed_text.c_str());
      }
      nlohmann::json out;
      if (a.normalized) {
        out = tok.normalize(a.prompt);
      } else if (a.tokens) {
        out = tok.tokens(a.prompt);
      } else {
        out = a.untruncated ? e.ids_untruncated : e.input_ids;
      }
      std::printf("%s\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    };
  });
}

}  // namespace fdcli
