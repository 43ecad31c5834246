// CLIP tokenizer against transformers' CLIPTokenizer (fixtures/tokenizer): all golden cases with ftfy
// (the reference) and without (the *_no_ftfy fields), the tokens, the normalised text, truncation, and
// clean errors for bad files.

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/compare.hpp"
#include "common/temp_dir.hpp"
#include "fd/text/clip_tokenizer.hpp"

namespace {

using fd::text::ClipTokenizer;
using fd::text::Normalization;

std::filesystem::path tokenizer_dir() { return std::filesystem::path(fdtest::fixtures_dir()) / "tokenizer"; }

nlohmann::json const& cases() {
  static nlohmann::json const j = [] {
    std::ifstream f(tokenizer_dir() / "clip_tokenizer_cases.json");
    REQUIRE(f);
    return nlohmann::json::parse(f);
  }();
  return j;
}

ClipTokenizer const& tokenizer(Normalization n) {
  static ClipTokenizer const ftfy = ClipTokenizer::load(tokenizer_dir(), Normalization::kFtfy);
  static ClipTokenizer const basic = ClipTokenizer::load(tokenizer_dir(), Normalization::kBasic);
  return n == Normalization::kFtfy ? ftfy : basic;
}

// Checks every golden case in one normalisation mode; returns how many match completely.
int check_all_cases(Normalization n) {
  std::string const sfx = n == Normalization::kFtfy ? "" : "_no_ftfy";
  ClipTokenizer const& tok = tokenizer(n);
  int matched = 0;
  for (auto const& c : cases()["cases"]) {
    std::string const prompt = c["prompt"].get<std::string>();
    INFO("case " << c["name"].get<std::string>() << (sfx.empty() ? " (ftfy)" : " (no ftfy)"));
    fd::text::Encoding const e = tok.encode(prompt);
    auto const input_ids = c["input_ids" + sfx].get<std::vector<std::int64_t>>();
    auto const untrunc = c["ids_untruncated" + sfx].get<std::vector<std::int64_t>>();
    auto const toks = c["tokens" + sfx].get<std::vector<std::string>>();
    auto const words = c["words" + sfx].get<std::vector<std::string>>();
    std::string const norm = c["normalized_text" + sfx].get<std::string>();
    bool const truncated = c["truncated" + sfx].get<bool>();
    CHECK(tok.normalize(prompt) == norm);
    CHECK(tok.words(prompt) == words);
    CHECK(tok.tokens(prompt) == toks);
    CHECK(e.ids_untruncated == untrunc);
    CHECK(e.input_ids == input_ids);
    CHECK(e.truncated == truncated);
    CHECK(e.removed_text.empty() == !truncated);
    matched += tok.normalize(prompt) == norm && tok.tokens(prompt) == toks && e.ids_untruncated == untrunc &&
               e.input_ids == input_ids && e.truncated == truncated;
  }
  return matched;
}

void write(std::filesystem::path const& p, std::string const& s) {
  std::ofstream f(p, std::ios::binary);
  f << s;
}

// A copy of the fixture tokenizer folder in which tests damage one file.
struct TokenizerCopy {
  fdtest::TempDir dir;
  TokenizerCopy() {
    for (char const* f : {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"}) {
      std::filesystem::copy_file(tokenizer_dir() / f, dir / f);
    }
  }
};

}  // namespace

TEST_CASE("CLIP tokenizer: a photo of a cat", "[tokenizer]") {
  ClipTokenizer const& tok = tokenizer(Normalization::kFtfy);
  fd::text::Encoding const e = tok.encode("a photo of a cat");
  std::vector<std::int64_t> expected{49406, 320, 1125, 539, 320, 2368, 49407};
  expected.resize(77, 49407);
  CHECK(e.input_ids == expected);
  CHECK(e.ids_untruncated == std::vector<std::int64_t>{49406, 320, 1125, 539, 320, 2368, 49407});
  CHECK_FALSE(e.truncated);
  CHECK(tok.model_max_length() == 77);
  CHECK(tok.bos_id() == 49406);
  CHECK(tok.eos_id() == 49407);
  CHECK(tok.pad_id() == 49407);
}

TEST_CASE("CLIP tokenizer: every golden case with ftfy", "[tokenizer]") {
  int const matched = check_all_cases(Normalization::kFtfy);
  WARN("ftfy: " << matched << " of " << cases()["cases"].size() << " cases match");
  CHECK(matched == static_cast<int>(cases()["cases"].size()));
}

TEST_CASE("CLIP tokenizer: every golden case without ftfy", "[tokenizer]") {
  int const matched = check_all_cases(Normalization::kBasic);
  WARN("no ftfy: " << matched << " of " << cases()["cases"].size() << " cases match");
  CHECK(matched == static_cast<int>(cases()["cases"].size()));
}

TEST_CASE("CLIP tokenizer: truncation reports the removed text", "[tokenizer]") {
  ClipTokenizer const& tok = tokenizer(Normalization::kFtfy);
  std::string prompt;
  for (int i = 0; i < 75; ++i) prompt += "a ";
  CHECK_FALSE(tok.encode(prompt).truncated);
  fd::text::Encoding const e = tok.encode(prompt + "red cat, sitting.");
  CHECK(e.truncated);
  CHECK(e.input_ids.size() == 77);
  CHECK(e.input_ids.back() == 49407);
  CHECK(e.ids_untruncated.size() == 75 + 5 + 2);
  CHECK(e.removed_text == "red cat, sitting.");
}

TEST_CASE("CLIP tokenizer: invalid UTF-8 reads as U+FFFD", "[tokenizer]") {
  ClipTokenizer const& tok = tokenizer(Normalization::kFtfy);
  // "broken \xff char" tokenizes like "broken \uFFFD char" (Python's errors="replace").
  CHECK(tok.encode("broken \xff char").input_ids == tok.encode("broken \xEF\xBF\xBD char").input_ids);
  CHECK(tok.normalize("a\xC3") == "a\xEF\xBF\xBD");
}

TEST_CASE("CLIP tokenizer: bad files fail with the file named", "[tokenizer]") {
  using Catch::Matchers::Contains;
  auto code_of = [](std::filesystem::path const& dir) {
    try {
      (void)ClipTokenizer::load(dir);
    } catch (fd::error const& e) {
      return std::pair{e.code(), std::string(e.what())};
    }
    return std::pair{fd::Errc::kUnsupported, std::string("no error")};
  };
  SECTION("missing vocab") {
    TokenizerCopy t;
    std::filesystem::remove(t.dir / "vocab.json");
    auto [code, msg] = code_of(t.dir.path());
    CHECK(code == fd::Errc::kIo);
    CHECK_THAT(msg, Contains("vocab.json"));
  }
  SECTION("missing merges") {
    TokenizerCopy t;
    std::filesystem::remove(t.dir / "merges.txt");
    auto [code, msg] = code_of(t.dir.path());
    CHECK(code == fd::Errc::kIo);
    CHECK_THAT(msg, Contains("merges.txt"));
  }
  SECTION("corrupt vocab") {
    TokenizerCopy t;
    write(t.dir / "vocab.json", "{\"a\": 1, ");
    auto [code, msg] = code_of(t.dir.path());
    CHECK(code == fd::Errc::kFormat);
    CHECK_THAT(msg, Contains("vocab.json"));
  }
  SECTION("vocab id not an integer") {
    TokenizerCopy t;
    write(t.dir / "vocab.json", "{\"a\": \"one\"}");
    auto [code, msg] = code_of(t.dir.path());
    CHECK(code == fd::Errc::kFormat);
    CHECK_THAT(msg, Contains("vocab.json") && Contains("'a'"));
  }
  SECTION("corrupt merges line") {
    TokenizerCopy t;
    write(t.dir / "merges.txt", "#version: 0.2\ni n\nthree parts here\n");
    auto [code, msg] = code_of(t.dir.path());
    CHECK(code == fd::Errc::kFormat);
    CHECK_THAT(msg, Contains("merges.txt") && Contains("line 3"));
  }
  SECTION("missing config") {
    TokenizerCopy t;
    std::filesystem::remove(t.dir / "tokenizer_config.json");
    auto [code, msg] = code_of(t.dir.path());
    CHECK(code == fd::Errc::kIo);
    CHECK_THAT(msg, Contains("tokenizer_config.json"));
  }
  SECTION("bad model_max_length") {
    TokenizerCopy t;
    write(t.dir / "tokenizer_config.json", R"({"model_max_length": "77"})");
    auto [code, msg] = code_of(t.dir.path());
    CHECK(code == fd::Errc::kConfig);
    CHECK_THAT(msg, Contains("tokenizer_config.json") && Contains("model_max_length"));
  }
  SECTION("pad token not in the vocabulary") {
    TokenizerCopy t;
    std::filesystem::remove(t.dir / "special_tokens_map.json");
    write(t.dir / "tokenizer_config.json", R"({"model_max_length": 77, "pad_token": "<pad>"})");
    auto [code, msg] = code_of(t.dir.path());
    CHECK(code == fd::Errc::kConfig);
    CHECK_THAT(msg, Contains("pad_token") && Contains("<pad>"));
  }
  SECTION("corrupt special_tokens_map") {
    TokenizerCopy t;
    write(t.dir / "special_tokens_map.json", "[1, 2]");
    auto [code, msg] = code_of(t.dir.path());
    CHECK(code == fd::Errc::kFormat);
    CHECK_THAT(msg, Contains("special_tokens_map.json"));
  }
  SECTION("another tokenizer class") {
    TokenizerCopy t;
    write(t.dir / "tokenizer_config.json", R"({"tokenizer_class": "T5Tokenizer"})");
    auto [code, msg] = code_of(t.dir.path());
    CHECK(code == fd::Errc::kConfig);
    CHECK_THAT(msg, Contains("tokenizer_class"));
  }
}

TEST_CASE("ftfy: fixes beyond the golden cases", "[tokenizer]") {
  using fd::text::u32_to_utf8;
  using fd::text::utf8_to_u32;
  auto fix = [](std::string const& s) { return u32_to_utf8(fd::text::ftfy::fix_text(utf8_to_u32(s))); };
  // Mojibake: Latin-1, a lost no-break space byte, Windows-1252 4-byte (emoji) sequences.
  CHECK(fix("s\u00C3\u00B3") == "s\u00F3");
  CHECK(fix("voil\u00C3 le travail") == "voil\u00E0 le travail");
  CHECK(fix("\u00F0\u0178\u02DC\u20AC smile") == "\U0001F600 smile");
  // UTF-8 read as Windows-1251 (Cyrillic) and as Windows-1252 (CJK).
  CHECK(fix("РїСЂРёРІРµС‚ РјРёСЂ") == "привет мир");
  CHECK(fix("æ—¥æœ¬èªž") == "日本語");
  // Legitimate accented text is left alone.
  CHECK(fix("na\u00EFve caf\u00E9 \u00C3 la carte") == "na\u00EFve caf\u00E9 \u00C3 la carte");
  // C1 controls are Windows-1252 (then uncurled).
  CHECK(fix("\u0093quoted\u0094") == "\"quoted\"");
  // HTML: numeric special cases; entities are decoded until a line with '<', not after it.
  CHECK(fix("&#0;|&#128;|&#x110000;|&#1;|&#12ab;|&bogus;|&#59;") == "\uFFFD|\u20AC|\uFFFD||&#12ab;|&bogus;|&#59;");
  CHECK(fix("&EACUTE;t&eacute;") == "\u00C9t\u00E9");
  CHECK(fix("&lt;b&gt;\n<i>&amp;\n&amp;") == "<b>\n<i>&amp;\n&amp;");
  // Terminal escapes, width, line breaks, ligatures.
  CHECK(fix("\x1b[1;31mred\x1b[0m") == "red");
  CHECK(fix("\uFF21\uFF22\uFF23\uFF11 \uFF76") == "ABC1 \u30AB");
  CHECK(fix("a\r\nb\rc\u2028d") == "a\nb\nc\nd");
  CHECK(fix("\uFB00\uFB04 \u01C6") == "ffffl d\u017E");
}

TEST_CASE("CLIP tokenizer: long prompts are fast", "[tokenizer]") {
  ClipTokenizer const& tok = tokenizer(Normalization::kFtfy);
  std::string prompt;
  for (auto const& c : cases()["cases"])
    if (c["name"] == "long_prompt_300_words") prompt = c["prompt"].get<std::string>();
  REQUIRE_FALSE(prompt.empty());
  auto const t0 = std::chrono::steady_clock::now();
  fd::text::Encoding e;
  for (int i = 0; i < 10; ++i) e = tok.encode(prompt);
  double const ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / 10;
  WARN("encode of a " << e.ids_untruncated.size() - 2 << "-token prompt: " << ms << " ms");
  CHECK(e.truncated);
  CHECK(ms < 50.0);  // generous: milliseconds at most even in debug builds
}
