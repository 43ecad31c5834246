#pragma once
/// @file
/// The two prompt normalisations of transformers' CLIPTokenizer. Which one a Stable Diffusion
/// environment uses depends on whether the `ftfy` package is installed:
///  - kFtfy (usual): whitespace_clean(ftfy.fix_text(text)).lower()
///  - kBasic (no ftfy): BERT's BasicTokenizer without accent stripping or punctuation splitting.

#include <string>
#include <string_view>

#include "fd/text/detail/icu.hpp"
#include "fd/text/ftfy.hpp"

namespace fd::text {

/// How a prompt is normalised before the pre-tokenizer regex sees it.
enum class Normalization {
  kFtfy,   ///< transformers with ftfy 6.1.1 installed (the reference ids of Stable Diffusion)
  kBasic,  ///< transformers without ftfy (its BasicTokenizer fallback)
};

/// Every run of white space (Python's str.isspace) becomes one space; both ends stripped.
inline std::u32string whitespace_clean(std::u32string_view t) {
  std::u32string out;
  bool pending = false;
  for (char32_t c : t) {
    if (detail::py_isspace(c)) {
      pending = true;
      continue;
    }
    if (pending && !out.empty()) out.push_back(U' ');
    pending = false;
    out.push_back(c);
  }
  return out;
}

/// whitespace_clean(ftfy.fix_text(t)).lower()
inline std::u32string normalize_ftfy(std::u32string_view t) {
  return detail::lower(whitespace_clean(ftfy::fix_text(t)));
}

/// transformers' BasicTokenizer(strip_accents=False, do_split_on_punc=False) as CLIPTokenizer uses it
/// without ftfy, pieces joined by one space: drop NUL, U+FFFD and every other-category (C*) character
/// except tab/LF/CR; those and Zs to a space; spaces around CJK ideographs; NFC; split on white space;
/// lower-case.
inline std::u32string normalize_basic(std::u32string_view t) {
  auto const is_cjk = [](char32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
  };
  std::u32string cleaned;
  cleaned.reserve(t.size());
  for (char32_t c : t) {
    if (c == 0 || c == 0xFFFD) continue;
    bool const tab_lf_cr = c == U'\t' || c == U'\n' || c == U'\r';
    std::int8_t const type = u_charType(static_cast<UChar32>(c));
    bool const other = type == U_CONTROL_CHAR || type == U_FORMAT_CHAR || type == U_UNASSIGNED ||
                       type == U_PRIVATE_USE_CHAR || type == U_SURROGATE;
    if (other && !tab_lf_cr) continue;
    if (tab_lf_cr || c == U' ' || type == U_SPACE_SEPARATOR) {
      cleaned.push_back(U' ');
    } else if (is_cjk(c)) {
      cleaned += U' ';
      cleaned.push_back(c);
      cleaned += U' ';
    } else {
      cleaned.push_back(c);
    }
  }
  std::u32string const nfc = detail::normalize(cleaned, /*compatibility=*/false);
  std::u32string out;
  std::size_t i = 0;
  while (i < nfc.size()) {
    while (i < nfc.size() && detail::py_isspace(nfc[i])) ++i;
    std::size_t j = i;
    while (j < nfc.size() && !detail::py_isspace(nfc[j])) ++j;
    if (j > i) {
      if (!out.empty()) out.push_back(U' ');
      out += detail::lower(nfc.substr(i, j - i));
    }
    i = j;
  }
  return out;
}

/// The normalised text, as code points.
inline std::u32string normalize(std::u32string_view t, Normalization n) {
  return n == Normalization::kFtfy ? normalize_ftfy(t) : normalize_basic(t);
}

}  // namespace fd::text
