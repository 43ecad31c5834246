#pragma once
/// @file
/// Thin bridges between std::u32string (the text layer's working form: one element per code point,
/// like a Python str) and ICU, which answers every Unicode property question.

#include <memory>
#include <string>
#include <string_view>

#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/regex.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include "fd/error.hpp"

namespace fd::text::detail {

inline icu::UnicodeString to_icu(std::u32string_view s) {
  return icu::UnicodeString::fromUTF32(reinterpret_cast<UChar32 const*>(s.data()), static_cast<std::int32_t>(s.size()));
}

inline std::u32string from_icu(icu::UnicodeString const& s) {
  std::u32string out;
  out.reserve(static_cast<std::size_t>(s.length()));
  for (std::int32_t i = 0; i < s.length();) {
    UChar32 c = s.char32At(i);
    out.push_back(static_cast<char32_t>(c));
    i += U16_LENGTH(c);
  }
  return out;
}

inline void check_icu(UErrorCode status, std::string_view what) {
  if (U_FAILURE(status)) {
    fail(Errc::kBackend, "ICU: " + std::string(what) + " failed: " + u_errorName(status));
  }
}

/// NFC or NFKC through ICU's Normalizer2.
inline std::u32string normalize(std::u32string_view s, bool compatibility) {
  UErrorCode status = U_ZERO_ERROR;
  icu::Normalizer2 const* n =
      compatibility ? icu::Normalizer2::getNFKCInstance(status) : icu::Normalizer2::getNFCInstance(status);
  check_icu(status, "Normalizer2 instance");
  icu::UnicodeString src = to_icu(s);
  if (n->isNormalized(src, status) && U_SUCCESS(status)) return std::u32string(s);
  status = U_ZERO_ERROR;
  icu::UnicodeString out = n->normalize(src, status);
  check_icu(status, "normalisation");
  return from_icu(out);
}

/// Python's str.lower(): full case mapping (SpecialCasing: "İ" -> "i̇"), final sigma in context,
/// no locale tailoring (ICU's root locale).
inline std::u32string lower(std::u32string_view s) {
  icu::UnicodeString u = to_icu(s);
  u.toLower(icu::Locale::getRoot());
  return from_icu(u);
}

/// Python's str.isspace() for one character: general category Zs, or bidirectional class WS, B or S.
inline bool py_isspace(char32_t c) {
  auto const ch = static_cast<UChar32>(c);
  if (u_charType(ch) == U_SPACE_SEPARATOR) return true;
  UCharDirection d = u_charDirection(ch);
  return d == U_WHITE_SPACE_NEUTRAL || d == U_BLOCK_SEPARATOR || d == U_SEGMENT_SEPARATOR;
}

/// A compiled ICU regular expression, shared (RegexPattern is immutable and thread-safe; each search
/// makes its own matcher).
inline std::unique_ptr<icu::RegexPattern> compile_regex(icu::UnicodeString const& pattern, std::uint32_t flags,
                                                       std::string_view what) {
  UErrorCode status = U_ZERO_ERROR;
  UParseError pe{};
  std::unique_ptr<icu::RegexPattern> p(icu::RegexPattern::compile(pattern, flags, pe, status));
  check_icu(status, std::string("compiling the regular expression for ") + std::string(what) + " (offset " +
                        std::to_string(pe.offset) + ")");
  return p;
}

}  // namespace fd::text::detail
