#pragma once
/// @file
/// CLIP's byte-level BPE tokenizer, matching transformers' CLIPTokenizer (slow, as Stable Diffusion
/// pipelines load it) with ftfy installed, or optionally without it (Normalization::kBasic).
/// @code
///   auto tok = fd::text::ClipTokenizer::load(model_dir / "tokenizer");
///   fd::text::Encoding e = tok.encode("a photo of a cat");  // 49406 320 1125 539 320 2368 49407 49407 ...
/// @endcode
/// Prompts are UTF-8; invalid byte sequences are read as U+FFFD each (Python's errors="replace"), so a
/// prompt given as raw bytes tokenizes as the Python reference would after decoding it that way.

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "fd/error.hpp"
#include "fd/text/detail/icu.hpp"
#include "fd/text/normalize.hpp"
#include "fd/text/utf8.hpp"

namespace fd::text {

/// The result of tokenizing one prompt.
struct Encoding {
  std::vector<std::int64_t> input_ids;        ///< model_max_length ids: bos, tokens (truncated), eos, pad...
  std::vector<std::int64_t> ids_untruncated;  ///< bos + all tokens + eos, no truncation or padding
  bool truncated = false;                     ///< more than model_max_length - 2 tokens
  std::string removed_text;                   ///< decoded text of the tokens cut off; empty if none
};

class ClipTokenizer {
 public:
  /// Loads vocab.json, merges.txt and tokenizer_config.json (special_tokens_map.json, if present,
  /// overrides the special tokens) from a diffusers `tokenizer/` folder.
  /// @throws fd::error kIo (file missing or unreadable), kFormat (not valid JSON / merges lines),
  ///         kConfig (a setting with a bad value, or a special token missing from the vocabulary).
  static ClipTokenizer load(std::filesystem::path const& dir, Normalization n = Normalization::kFtfy) {
    ClipTokenizer t;
    t.normalization_ = n;
    t.load_vocab(dir / "vocab.json");
    t.load_merges(dir / "merges.txt");
    t.load_config(dir / "tokenizer_config.json", /*required=*/true);
    t.load_config(dir / "special_tokens_map.json", /*required=*/false);
    t.resolve_special_tokens(dir);
    return t;
  }

  /// Token ids as the Stable Diffusion pipeline computes them (padding="max_length", truncation).
  Encoding encode(std::string_view utf8_prompt) const {
    std::vector<std::string> const toks = tokens(utf8_prompt);
    Encoding e;
    std::vector<std::int64_t> ids;
    ids.reserve(toks.size());
    for (auto const& s : toks) {
      auto it = encoder_.find(s);
      ids.push_back(it == encoder_.end() ? unk_id_ : it->second);
    }
    auto const keep = static_cast<std::size_t>(model_max_length_ - 2);
    e.ids_untruncated.reserve(ids.size() + 2);
    e.ids_untruncated.push_back(bos_id_);
    e.ids_untruncated.insert(e.ids_untruncated.end(), ids.begin(), ids.end());
    e.ids_untruncated.push_back(eos_id_);
    e.truncated = ids.size() > keep;
    std::size_t const n = std::min(ids.size(), keep);
    e.input_ids.reserve(static_cast<std::size_t>(model_max_length_));
    e.input_ids.push_back(bos_id_);
    e.input_ids.insert(e.input_ids.end(), ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(n));
    e.input_ids.push_back(eos_id_);
    e.input_ids.resize(static_cast<std::size_t>(model_max_length_), pad_id_);
    if (e.truncated) {
      e.removed_text = decode(std::vector<std::string>(toks.begin() + static_cast<std::ptrdiff_t>(keep), toks.end()));
    }
    return e;
  }

  /// The BPE tokens (vocabulary strings), without bos/eos.
  std::vector<std::string> tokens(std::string_view prompt) const {
    std::u32string const text = utf8_to_u32(prompt);
    std::vector<std::string> out;
    // Like transformers, a literal special token is split off before normalisation.
    std::size_t pos = 0;
    while (pos <= text.size()) {
      auto [at, len] = find_special(text, pos);
      tokenize_chunk(std::u32string_view(text).substr(pos, at - pos), out);
      if (at == text.size()) break;
      out.push_back(u32_to_utf8(text.substr(at, len)));
      pos = at + len;
    }
    return out;
  }

  /// The normalised prompt (the pre-tokenizer's input), UTF-8.
  std::string normalize(std::string_view prompt) const {
    return u32_to_utf8(text::normalize(utf8_to_u32(prompt), normalization_));
  }

  /// The pre-tokenizer's pieces of the normalised prompt (each gets its own BPE), UTF-8.
  std::vector<std::string> words(std::string_view prompt) const {
    std::vector<std::string> out;
    split_words(text::normalize(utf8_to_u32(prompt), normalization_), [&](std::u32string_view w) {
      out.push_back(u32_to_utf8(w));
    });
    return out;
  }

  /// Token strings back to text (CLIPTokenizer.decode without special-token skipping).
  std::string decode(std::vector<std::string> const& toks) const {
    std::string bytes;
    for (auto const& t : toks) {
      for (char32_t c : utf8_to_u32(t)) {
        auto it = byte_decoder_.find(c);
        if (it != byte_decoder_.end()) {
          bytes.push_back(static_cast<char>(it->second));
        } else {
          append_utf8(bytes, c);
        }
      }
    }
    std::u32string text = utf8_to_u32(bytes);
    std::u32string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
      if (text.compare(i, 4, U"</w>") == 0) {
        out.push_back(U' ');
        i += 3;
      } else {
        out.push_back(text[i]);
      }
    }
    std::size_t b = 0, e = out.size();
    while (b < e && detail::py_isspace(out[b])) ++b;
    while (e > b && detail::py_isspace(out[e - 1])) --e;
    std::string s = u32_to_utf8(std::u32string_view(out).substr(b, e - b));
    // transformers' clean_up_tokenization (on by default in decode).
    for (auto [from, to] : {std::pair{" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
                            {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}}) {
      std::string_view f(from), r(to);
      for (std::size_t p = s.find(f); p != std::string::npos; p = s.find(f, p + r.size())) s.replace(p, f.size(), r);
    }
    return s;
  }

  int model_max_length() const { return model_max_length_; }
  std::int64_t bos_id() const { return bos_id_; }
  std::int64_t eos_id() const { return eos_id_; }
  std::int64_t pad_id() const { return pad_id_; }
  std::int64_t unk_id() const { return unk_id_; }
  Normalization normalization() const { return normalization_; }
  std::size_t vocab_size() const { return encoder_.size(); }

 private:
  ClipTokenizer() { build_byte_tables(); }

  // GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the others are moved to
  // U+0100 onwards, so every byte is a visible, non-space character.
  void build_byte_tables() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      bool const printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      char32_t const c = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
      std::string s;
      append_utf8(s, c);
      byte_encoder_[static_cast<std::size_t>(b)] = s;
      byte_decoder_.emplace(c, static_cast<std::uint8_t>(b));
    }
  }

  static std::string read_file(std::filesystem::path const& p) {
    std::ifstream f(p, std::ios::binary);
    if (!f) fail(Errc::kIo, p.string() + ": cannot open the tokenizer file");
    std::ostringstream ss;
    ss << f.rdbuf();
    if (f.bad()) fail(Errc::kIo, p.string() + ": read error");
    return ss.str();
  }

  static nlohmann::json read_json(std::filesystem::path const& p) {
    std::string const s = read_file(p);
    nlohmann::json j = nlohmann::json::parse(s, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) fail(Errc::kFormat, p.string() + ": not a JSON object");
    return j;
  }

  void load_vocab(std::filesystem::path const& p) {
    nlohmann::json const j = read_json(p);
    std::unordered_map<std::int64_t, std::string> seen;
    for (auto const& [k, v] : j.items()) {
      if (!v.is_number_integer() || v.get<std::int64_t>() < 0 || v.get<std::int64_t>() > (1LL << 31)) {
        fail(Errc::kFormat, p.string() + ": token '" + k + "' has id " + v.dump() + " (expected a non-negative integer)");
      }
      auto const id = v.get<std::int64_t>();
      if (auto [it, fresh] = seen.emplace(id, k); !fresh) {
        fail(Errc::kFormat, p.string() + ": id " + std::to_string(id) + " is given to both '" + it->second + "' and '" + k + "'");
      }
      encoder_.emplace(k, id);
    }
    if (encoder_.empty()) fail(Errc::kFormat, p.string() + ": empty vocabulary");
  }

  // Symbols are interned: the 512 byte characters (with and without "</w>") and every merge result,
  // so BPE works on integers; a merge is (left, right) -> (rank, merged symbol).
  int intern(std::string const& sym) {
    auto [it, fresh] = symbol_ids_.emplace(sym, static_cast<int>(symbols_.size()));
    if (fresh) symbols_.push_back(sym);
    return it->second;
  }

  static std::uint64_t pair_key(int a, int b) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) | static_cast<std::uint32_t>(b);
  }

  void load_merges(std::filesystem::path const& p) {
    for (int b = 0; b < 256; ++b) {
      byte_symbol_[static_cast<std::size_t>(b)] = intern(byte_encoder_[static_cast<std::size_t>(b)]);
      byte_symbol_eow_[static_cast<std::size_t>(b)] = intern(byte_encoder_[static_cast<std::size_t>(b)] + "</w>");
    }
    std::string const s = read_file(p);
    std::size_t pos = 0, line_no = 0;
    // transformers' CLIPTokenizer reads at most 49152 - 256 - 2 merges after the "#version" line.
    constexpr int kMaxMerges = 49152 - 256 - 2;
    int rank = 0;
    while (pos < s.size() && rank < kMaxMerges) {
      std::size_t nl = s.find('\n', pos);
      if (nl == std::string::npos) nl = s.size();
      std::string_view line(s.data() + pos, nl - pos);
      pos = nl + 1;
      if (line_no++ == 0) continue;  // the "#version: 0.2" header
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.empty()) continue;
      std::size_t const sp = line.find(' ');
      if (sp == 0 || sp == std::string_view::npos || sp + 1 == line.size() ||
          line.find(' ', sp + 1) != std::string_view::npos) {
        fail(Errc::kFormat, p.string() + ": line " + std::to_string(line_no) + " is not two symbols separated by one space");
      }
      std::string const a(line.substr(0, sp)), b(line.substr(sp + 1));
      int const ia = intern(a), ib = intern(b), merged = intern(a + b);
      merges_.insert_or_assign(pair_key(ia, ib), Merge{rank++, merged});  // a repeated pair: the last rank wins
    }
    if (line_no == 0) fail(Errc::kFormat, p.string() + ": empty merges file");
  }

  // A special token setting: a string or an AddedToken object {"content": ...}.
  static std::string token_content(nlohmann::json const& v, std::filesystem::path const& p, std::string const& key) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
    fail(Errc::kConfig, p.string() + ": '" + key + "' must be a string or an object with a string 'content', got " +
                            v.dump());
  }

  void load_config(std::filesystem::path const& p, bool required) {
    if (!required && !std::filesystem::exists(p)) return;
    nlohmann::json const j = read_json(p);
    for (auto const& [key, target] : {std::pair<char const*, std::string*>{"bos_token", &bos_},
                                      {"eos_token", &eos_},
                                      {"pad_token", &pad_},
                                      {"unk_token", &unk_}}) {
      if (j.contains(key) && !j[key].is_null()) *target = token_content(j[key], p, key);
    }
    if (j.contains("model_max_length")) {
      auto const& v = j["model_max_length"];
      if (!v.is_number_integer() || v.get<std::int64_t>() < 3 || v.get<std::int64_t>() > (1 << 20)) {
        fail(Errc::kConfig, p.string() + ": 'model_max_length' must be an integer in [3, 1048576], got " + v.dump());
      }
      model_max_length_ = static_cast<int>(v.get<std::int64_t>());
    }
    if (j.contains("tokenizer_class")) {
      auto const& v = j["tokenizer_class"];
      if (!v.is_string() || (v != "CLIPTokenizer" && v != "CLIPTokenizerFast")) {
        fail(Errc::kConfig, p.string() + ": 'tokenizer_class' is " + v.dump() + "; only CLIPTokenizer is supported");
      }
    }
  }

  void resolve_special_tokens(std::filesystem::path const& dir) {
    auto id_of = [&](std::string const& tok, char const* key) {
      auto it = encoder_.find(tok);
      if (it == encoder_.end()) {
        fail(Errc::kConfig, (dir / "tokenizer_config.json").string() + ": '" + key + "' \"" + tok +
                                "\" is not in " + (dir / "vocab.json").string());
      }
      return it->second;
    };
    bos_id_ = id_of(bos_, "bos_token");
    eos_id_ = id_of(eos_, "eos_token");
    pad_id_ = id_of(pad_, "pad_token");
    unk_id_ = id_of(unk_, "unk_token");
    specials_.clear();
    for (std::string const* s : {&bos_, &eos_, &unk_, &pad_}) {
      std::u32string u = utf8_to_u32(*s);
      if (!u.empty() && std::find(specials_.begin(), specials_.end(), u) == specials_.end()) specials_.push_back(u);
    }
  }

  // The earliest literal special token at or after `from` (the longest if several start there);
  // {text.size(), 0} if none.
  std::pair<std::size_t, std::size_t> find_special(std::u32string const& text, std::size_t from) const {
    std::size_t best = text.size(), len = 0;
    for (auto const& s : specials_) {
      std::size_t at = text.find(s, from);
      if (at != std::u32string::npos && (at < best || (at == best && s.size() > len))) {
        best = at;
        len = s.size();
      }
    }
    return {best, len};
  }

  static icu::RegexPattern const& pretokenizer() {
    static std::unique_ptr<icu::RegexPattern> const p = detail::compile_regex(
        icu::UnicodeString::fromUTF8(R"(<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+)"),
        UREGEX_CASE_INSENSITIVE, "CLIP's pre-tokenizer");
    return *p;
  }

  template <class F>
  static void split_words(std::u32string const& normalized, F&& emit) {
    icu::UnicodeString u = detail::to_icu(normalized);
    UErrorCode status = U_ZERO_ERROR;
    std::unique_ptr<icu::RegexMatcher> m(pretokenizer().matcher(u, status));
    detail::check_icu(status, "regex matcher");
    while (m->find(status)) {
      std::int32_t const a = m->start(status), b = m->end(status);
      emit(std::u32string_view(detail::from_icu(icu::UnicodeString(u, a, b - a))));
    }
    detail::check_icu(status, "pre-tokenizer");
  }

  void tokenize_chunk(std::u32string_view chunk, std::vector<std::string>& out) const {
    if (chunk.empty()) return;
    split_words(text::normalize(chunk, normalization_), [&](std::u32string_view w) {
      std::string const utf8 = u32_to_utf8(w);
      if (utf8 == "<|startoftext|>" || utf8 == "<|endoftext|>") {  // CLIPTokenizer's BPE cache holds these as is
        out.push_back(utf8);
        return;
      }
      bpe(utf8, out);
    });
  }

  // Byte-level BPE of one word: its bytes as byte characters, "</w>" on the last one; then the
  // adjacent pair with the lowest merge rank is merged (every occurrence, left to right) until no
  // pair has a rank.
  void bpe(std::string const& word, std::vector<std::string>& out) const {
    std::vector<int> sym;
    sym.reserve(word.size());
    for (std::size_t i = 0; i < word.size(); ++i) {
      auto const b = static_cast<std::uint8_t>(word[i]);
      sym.push_back(i + 1 == word.size() ? byte_symbol_eow_[b] : byte_symbol_[b]);
    }
    while (sym.size() > 1) {
      Merge best{std::numeric_limits<int>::max(), -1};
      int first = -1, second = -1;
      for (std::size_t i = 0; i + 1 < sym.size(); ++i) {
        auto it = merges_.find(pair_key(sym[i], sym[i + 1]));
        if (it != merges_.end() && it->second.rank < best.rank) {
          best = it->second;
          first = sym[i];
          second = sym[i + 1];
        }
      }
      if (best.merged < 0) break;
      std::size_t o = 0;
      for (std::size_t i = 0; i < sym.size();) {
        if (i + 1 < sym.size() && sym[i] == first && sym[i + 1] == second) {
          sym[o++] = best.merged;
          i += 2;
        } else {
          sym[o++] = sym[i++];
        }
      }
      sym.resize(o);
    }
    for (int s : sym) out.push_back(symbols_[static_cast<std::size_t>(s)]);
  }

  struct Merge {
    int rank;
    int merged;
  };

  Normalization normalization_ = Normalization::kFtfy;
  std::unordered_map<std::string, std::int64_t> encoder_;
  std::vector<std::string> symbols_;
  std::unordered_map<std::string, int> symbol_ids_;
  std::unordered_map<std::uint64_t, Merge> merges_;
  std::array<int, 256> byte_symbol_{}, byte_symbol_eow_{};
  std::array<std::string, 256> byte_encoder_;
  std::unordered_map<char32_t, std::uint8_t> byte_decoder_;
  std::string bos_ = "<|startoftext|>", eos_ = "<|endoftext|>", pad_ = "<|endoftext|>", unk_ = "<|endoftext|>";
  std::vector<std::u32string> specials_;
  int model_max_length_ = 77;
  std::int64_t bos_id_ = 0, eos_id_ = 0, pad_id_ = 0, unk_id_ = 0;
};

}  // namespace fd::text
