#pragma once
/// @file
/// UTF-8 <-> code points, with Python's `bytes.decode("utf-8", errors="replace")` semantics for bad
/// input: every maximal ill-formed subsequence becomes one U+FFFD, so a prompt that arrives as raw
/// bytes (the CLI's argv) is read the way the Python reference would read it.

#include <cstdint>
#include <string>
#include <string_view>

#include <unicode/utf8.h>

namespace fd::text {

/// Decodes UTF-8; invalid sequences (stray continuation bytes, overlong forms, surrogates, truncated
/// sequences, values above U+10FFFF) each become U+FFFD.
inline std::u32string utf8_to_u32(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  auto const* p = reinterpret_cast<std::uint8_t const*>(s.data());
  auto const n = static_cast<std::int32_t>(s.size());
  std::int32_t i = 0;
  while (i < n) {
    UChar32 c;
    U8_NEXT_OR_FFFD(p, i, n, c);
    out.push_back(static_cast<char32_t>(c));
  }
  return out;
}

/// Appends the UTF-8 encoding of one code point (a lone surrogate is written as U+FFFD).
inline void append_utf8(std::string& out, char32_t c) {
  if (c >= 0xD800 && c <= 0xDFFF) c = 0xFFFD;
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

inline std::string u32_to_utf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) append_utf8(out, c);
  return out;
}

}  // namespace fd::text
