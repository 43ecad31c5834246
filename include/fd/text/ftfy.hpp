#pragma once
/// @file
/// The subset of ftfy 6.1.1's `fix_text` (default settings) that Stable Diffusion's CLIP tokenizer
/// applies to every prompt, re-implemented from its documented behaviour:
///   per line: HTML entity decoding (skipped from the first line holding '<' on), mojibake repair
///   (UTF-8 decoded as Latin-1 / Windows-125x / ISO-8859-2 / MacRoman / CP437, guided by ftfy's
///   "badness" heuristic), C1 controls read as Windows-1252, Latin ligatures split, half/full-width
///   forms to normal width, curly quotes uncurled, line breaks unified to '\n', ANSI terminal escapes
///   and invisible control characters removed, NFC; repeated until nothing changes.
/// Not implemented (never reachable from a UTF-8 prompt): surrogate repair.

#include <algorithm>
#include <array>
#include <bitset>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fd/text/detail/ftfy_tables.hpp"
#include "fd/text/detail/icu.hpp"
#include "fd/text/utf8.hpp"

namespace fd::text::ftfy {

namespace detail {

using fd::text::detail::compile_regex;
using fd::text::detail::to_icu;

// ---- character classes of ftfy's mojibake heuristic --------------------------------------------
// Each class is a list of characters; an ASCII '-' between two characters denotes a range. They
// name the characters that appear when UTF-8 is decoded with a single-byte codec.
inline constexpr std::u32string_view kCommon = U"\u00A0\u00AD\u00B7\u00B4\u2013\u2014\u2015\u2026\u2019";
inline constexpr std::u32string_view kC1 = U"\u0080-\u009F";
inline constexpr std::u32string_view kBad =
    U"\u00A6\u00A4\u00A8\u00AC\u00AF\u00B6\u00A7\u00B8\u0192\u02C6\u02C7\u02D8\u02DB\u02DC\u2020\u2021\u2030"
    U"\u2310\u25CA\uFFFD\u00AA\u00BA";
inline constexpr std::u32string_view kCurrency = U"\u00A2\u00A3\u00A5\u20A7\u20AC";
inline constexpr std::u32string_view kStartPunct =
    U"\u00A1\u00AB\u00BF\u00A9\u0384\u0385\u2018\u201A\u201C\u201E\u2022\u2039\uF8FF";
inline constexpr std::u32string_view kEndPunct = U"\u00AE\u00BB\u02DD\u201D\u203A\u2122";
inline constexpr std::u32string_view kNumeric =
    U"\u00B2\u00B3\u00B9\u00B1\u00BC\u00BD\u00BE\u00D7\u00B5\u00F7\u2044\u2202\u2206\u220F\u2211\u221A\u221E"
    U"\u2229\u222B\u2248\u2260\u2261\u2264\u2265\u2116";
inline constexpr std::u32string_view kKaomoji = U"\u00D2-\u00D6\u00D9-\u00DC\u00F2-\u00F6\u00F8-\u00FC\u0150\u00B0";
inline constexpr std::u32string_view kUpperAccented =
    U"\u00C0-\u00D1\u00D8\u00DC\u00DD\u0102\u0104\u0106\u010C\u010E\u0110\u0118\u011A\u011E\u0130\u0139\u013D"
    U"\u0141\u0143\u0147\u0152\u0158\u015A\u015E\u0160\u0162\u0164\u016E\u0170\u0178\u0179\u017B\u017D\u0490";
inline constexpr std::u32string_view kLowerAccented =
    U"\u00DF\u00E0-\u00F1\u0103\u0105\u0107\u010D\u010F\u0111\u0119\u011B\u011F\u013A\u013E\u0142\u0153\u0155"
    U"\u015B\u015F\u0161\u0165\u00FC\u017A\u017C\u017E\u0491\uFB01\uFB02";
inline constexpr std::u32string_view kUpperCommon =
    U"\u00DE\u0391-\u03A9\u0386\u0388\u0389\u038A\u038C\u038E\u038F\u03AA\u03AB\u0401-\u042F";
inline constexpr std::u32string_view kLowerCommon = U"\u03B1-\u03C9\u03AC\u03AD\u03AE\u03AF\u03B0\u0430-\u045F";
inline constexpr std::u32string_view kBox =
    U"\u2502\u250C\u2510\u2518\u251C\u2524\u252C\u253C\u2550-\u256C\u2580\u2584\u2588\u258C\u2590\u2591\u2592"
    U"\u2593";

// Clues that a run of characters is UTF-8 read with a single-byte codec (lead bytes of 2/3/4-byte
// sequences and continuation bytes, as they look after such a misreading).
inline constexpr std::u32string_view kUtf8First2 =
    U"ÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖ×ØÙÚÛÜÝÞßĂĆČĎĐĘĚĞİĹŃŇŐŘŞŢŮŰ"
    U"ΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩΪΫάέήίВГДЕЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ";
inline constexpr std::u32string_view kUtf8First3 = U"àáâãäåæçèéêëìíîïăćčďęěĺŕΰαβγδεζηθικλμνξοабвгдежзийклмноп";
inline constexpr std::u32string_view kUtf8First4 = U"ðóđğπσру";
inline constexpr std::u32string_view kUtf8ContStrict =
    U"\u0080-\u00BFĄąĽľŁłŒœŚśŞşŠšŤťŸŹźŻżŽžƒˆˇ˘˛˜˝΄΅ΆΈΉΊΌΎΏЁЂЃЄЅІЇЈЉЊЋЌЎЏёђѓєѕіїјљњћќўџҐґ†‡•‰‹›€№™";
inline constexpr std::u32string_view kUtf8ContExtra = U"–—―‘’‚“”„…\u0020";

/// An ICU set body: every character escaped, ASCII '-' kept as the range operator.
inline std::u32string set_body(std::initializer_list<std::u32string_view> parts) {
  std::u32string out;
  static constexpr char32_t kHex[] = U"0123456789ABCDEF";
  for (auto part : parts) {
    for (char32_t c : part) {
      if (c == U'-') {
        out.push_back(c);
        continue;
      }
      out += U"\\x{";
      for (int shift = 20; shift >= 0; shift -= 4) out.push_back(kHex[(c >> shift) & 0xF]);
      out += U"}";
    }
  }
  return out;
}
inline std::u32string cls(std::initializer_list<std::u32string_view> parts) { return U"[" + set_body(parts) + U"]"; }

/// ftfy's badness heuristic: sequences that are far likelier to be mojibake than intended text.
inline icu::RegexPattern const& badness_pattern() {
  static std::unique_ptr<icu::RegexPattern> const pattern = [] {
    // Python's \s (str.isspace) and \w (str.isalnum or '_').
    std::u32string const s = U"[\\t-\\r\\x{1C}-\\x{20}\\x{85}\\p{Z}]";
    std::u32string const w = U"[\\p{L}\\p{N}_]";
    auto const& B = kBad;
    auto const& LA = kLowerAccented;
    auto const& UA = kUpperAccented;
    auto const& X = kBox;
    auto const& SP = kStartPunct;
    auto const& EP = kEndPunct;
    auto const& C = kCurrency;
    auto const& N = kNumeric;
    std::vector<std::u32string> alts = {
        cls({kC1}),
        cls({B, LA, UA, X, SP, EP, C, N}) + cls({B}),
        U"[a-zA-Z]" + cls({kLowerCommon, kUpperCommon}) + cls({B}),
        cls({B}) + cls({LA, UA, X, SP, EP, C, N}),
        cls({LA, kLowerCommon, X, EP, C, N}) + cls({UA}),
        cls({X, EP, C, N}) + cls({LA}),
        cls({LA, X, EP}) + cls({C}),
        s + cls({UA}) + cls({C}),
        cls({UA, X}) + cls({N}),
        cls({LA, UA, X, C, EP}) + cls({SP}) + cls({N}),
        cls({LA, UA, C, N, X}) + cls({EP}) + cls({SP}),
        cls({C, N, X}) + cls({SP}),
        U"[a-z]" + cls({UA}) + cls({SP, C}),
        cls({X}) + cls({kKaomoji}),
        cls({LA, UA, C, N, SP, EP}) + cls({X}),
        cls({X}) + cls({EP}),
        cls({LA, UA}) + cls({EP}) + w,
        cls({U"Œœ"}) + U"[^A-Za-z]",
        cls({U"ÂÃÎÐ"}) + cls({U"€Šš¢£Ÿž\u00A0\u00AD®©°·»", SP, EP, U"–—´"}),
        U"\\x{D7}" + cls({U"²³"}),
        cls({U"ØÙ"}) + cls({kCommon, C, B, N, SP, U"ŸŠ®°µ»"}) + cls({U"ØÙ"}) +
            cls({kCommon, C, B, N, SP, U"ŸŠ®°µ»"}),
        U"\\x{E0}" + cls({U"²µ¹¼½¾"}),
        U"\\x{221A}" + cls({U"±∂†≠®™´≤≥¥µø"}),
        U"\\x{2248}" + cls({U"°¢"}),
        U"\\x{201A}\\x{C4}" + cls({U"ìîïòôúùû†°¢π"}),
        U"\\x{201A}" + cls({U"âó"}) + cls({U"àä°ê"}),
        U"\\x{432}\\x{402}",
        cls({U"ВГРС"}) + cls({kC1, B, SP, EP, C, U"°µ"}) + cls({U"ВГРС"}),
        U"\\x{413}\\x{45E}\\x{412}\\x{402}\\x{412}[^\\n][A-Za-z\\x{20}]",
        U"\\x{C3}" + cls({U"\u00A0¡"}),
        U"[a-z]" + s + U"?" + cls({U"ÃÂ"}) + U"\\x{20}",
        U"^" + cls({U"ÃÂ"}) + U"\\x{20}",
        U"[a-z.,?!" + set_body({EP}) + U"]\\x{C2}[\\x{20}" + set_body({SP, EP}) + U"]",
        U"\\x{3B2}\\x{20AC}" + cls({U"™\u00A0Ά\u00AD®°"}),
        cls({U"ΒΓΞΟ"}) + cls({kC1, B, SP, EP, C, U"°"}) + cls({U"ΒΓΞΟ"}),
    };
    std::u32string all;
    for (auto const& a : alts) all += (all.empty() ? U"" : U"|") + a;
    return compile_regex(to_icu(all), 0, "ftfy's badness heuristic");
  }();
  return *pattern;
}

inline bool regex_search(icu::RegexPattern const& p, std::u32string_view text) {
  icu::UnicodeString u = to_icu(text);
  UErrorCode status = U_ZERO_ERROR;
  std::unique_ptr<icu::RegexMatcher> m(p.matcher(u, status));
  fd::text::detail::check_icu(status, "regex matcher");
  bool found = m->find(status);
  fd::text::detail::check_icu(status, "regex search");
  return found;
}

/// ftfy's is_bad: does the text look like it contains mojibake?
inline bool is_bad(std::u32string_view text) { return regex_search(badness_pattern(), text); }

inline icu::RegexPattern const& utf8_detector_pattern() {
  static std::unique_ptr<icu::RegexPattern> const pattern = [] {
    std::u32string const cont = cls({kUtf8ContStrict, kUtf8ContExtra});
    std::u32string re = U"(?<!" + cls({kUtf8ContStrict}) + U")(?:" + cls({kUtf8First2}) + cont + U"|" +
                        cls({kUtf8First3}) + cont + U"{2}|" + cls({kUtf8First4}) + cont + U"{3})+";
    return compile_regex(to_icu(re), 0, "ftfy's UTF-8 detector");
  }();
  return *pattern;
}

// ---- single-byte codecs -------------------------------------------------------------------------

struct Codec {
  std::string_view name;
  bool sloppy;
  std::array<char32_t, 256> decode{};
  std::unordered_map<char32_t, std::uint8_t> encode;
};

inline std::vector<Codec> const& codecs() {
  static std::vector<Codec> const all = [] {
    std::vector<Codec> v;
    for (auto const& t : fd::text::detail::kCharmapEncodings) {
      Codec c;
      c.name = t.name;
      c.sloppy = t.name.starts_with("sloppy-");
      for (int b = 0; b < 128; ++b) c.decode[static_cast<std::size_t>(b)] = static_cast<char32_t>(b);
      c.decode[0x1A] = t.sub;
      for (int b = 0; b < 128; ++b) c.decode[static_cast<std::size_t>(128 + b)] = t.high[static_cast<std::size_t>(b)];
      for (int b = 0; b < 256; ++b) c.encode.emplace(c.decode[static_cast<std::size_t>(b)], static_cast<std::uint8_t>(b));
      v.push_back(std::move(c));
    }
    return v;
  }();
  return all;
}

/// ftfy's possible_encoding + encode: the bytes, if every character has one in this codec.
inline std::optional<std::string> encode_single_byte(std::u32string_view text, Codec const& codec) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : text) {
    if (c < 0x80 && c != 0x1A) {
      out.push_back(static_cast<char>(c));
      continue;
    }
    auto it = codec.encode.find(c);
    if (it == codec.encode.end()) return std::nullopt;
    out.push_back(static_cast<char>(it->second));
  }
  return out;
}

// ---- byte patterns (alternatives of fixed-length byte classes, first alternative wins) -----------

using ByteClass = std::bitset<256>;
inline ByteClass bytes_of(std::initializer_list<std::pair<int, int>> ranges) {
  ByteClass b;
  for (auto [lo, hi] : ranges)
    for (int x = lo; x <= hi; ++x) b.set(static_cast<std::size_t>(x));
  return b;
}
using BytePattern = std::vector<ByteClass>;

inline std::size_t match_at(std::string_view s, std::size_t i, std::vector<BytePattern> const& alts) {
  for (auto const& alt : alts) {
    if (i + alt.size() > s.size()) continue;
    bool ok = true;
    for (std::size_t k = 0; ok && k < alt.size(); ++k) ok = alt[k].test(static_cast<std::uint8_t>(s[i + k]));
    if (ok) return alt.size();
  }
  return 0;
}

/// UTF-8 sequences whose 0xA0 byte became a space (0xA0 is a no-break space in Latin-1).
inline std::vector<BytePattern> const& altered_utf8() {
  static std::vector<BytePattern> const p = [] {
    ByteClass const sp = bytes_of({{0x20, 0x20}});
    ByteClass const cont = bytes_of({{0x80, 0xBF}});
    ByteClass const cont_no_a0 = bytes_of({{0x80, 0x84}, {0x86, 0x9F}, {0xA1, 0xBF}});
    ByteClass const lead2 = bytes_of({{0xC2, 0xC3}, {0xC5, 0xC5}, {0xCE, 0xCE}, {0xD0, 0xD0}, {0xD9, 0xD9}});
    ByteClass const f0 = bytes_of({{0xF0, 0xF0}});
    return std::vector<BytePattern>{
        {lead2, sp},
        {bytes_of({{0xE2, 0xE3}}), sp, cont_no_a0},
        {bytes_of({{0xE0, 0xE3}}), cont_no_a0, sp},
        {f0, sp, cont, cont},
        {f0, cont, sp, cont},
        {f0, cont, cont, sp},
    };
  }();
  return p;
}

/// UTF-8 sequences in which a byte was lost (became '?' or, through a sloppy codec, 0x1A).
inline std::vector<BytePattern> const& lossy_utf8() {
  static std::vector<BytePattern> const p = [] {
    ByteClass const sub = bytes_of({{0x1A, 0x1A}});
    ByteClass const lost = bytes_of({{0x1A, 0x1A}, {'?', '?'}});
    ByteClass const lost_or_cont = bytes_of({{0x1A, 0x1A}, {'?', '?'}, {0x80, 0xBF}});
    ByteClass const sub_or_cont = bytes_of({{0x1A, 0x1A}, {0x80, 0xBF}});
    ByteClass const ed = bytes_of({{0xED, 0xED}});
    ByteClass const lead3 = bytes_of({{0xE0, 0xEF}});
    ByteClass const lead4 = bytes_of({{0xF0, 0xF4}});
    return std::vector<BytePattern>{
        {bytes_of({{0xC2, 0xDF}}), sub},
        {bytes_of({{0xC2, 0xC3}}), bytes_of({{'?', '?'}})},
        {ed, bytes_of({{0xA0, 0xAF}}), lost, ed, bytes_of({{0xB0, 0xBF}}), lost_or_cont},
        {ed, bytes_of({{0xA0, 0xAF}}), lost_or_cont, ed, bytes_of({{0xB0, 0xBF}}), lost},
        {lead3, lost, sub_or_cont},
        {lead3, sub_or_cont, lost},
        {lead4, lost, sub_or_cont, sub_or_cont},
        {lead4, sub_or_cont, lost, sub_or_cont},
        {lead4, sub_or_cont, sub_or_cont, lost},
        {sub},
    };
  }();
  return p;
}

inline bool search_bytes(std::string_view s, std::vector<BytePattern> const& alts) {
  for (std::size_t i = 0; i < s.size(); ++i)
    if (match_at(s, i, alts) != 0) return true;
  return false;
}

/// ftfy's restore_byte_a0: put back the 0xA0 bytes that became spaces.
inline std::string restore_byte_a0(std::string_view in) {
  // "\xC3 " is 'à' followed by a space unless a Portuguese word or a lone 's' follows.
  std::string s;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (static_cast<std::uint8_t>(in[i]) == 0xC3 && i + 1 < in.size() && in[i + 1] == ' ') {
      std::string_view rest = in.substr(i + 2);
      bool const keep = rest.starts_with(" ") || rest.starts_with("quele") || rest.starts_with("quela") ||
                        rest.starts_with("quilo") || rest.starts_with("s ");
      if (!keep) {
        s += "\xC3\xA0 ";
        ++i;
        continue;
      }
    }
    s.push_back(in[i]);
  }
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    std::size_t n = match_at(s, i, altered_utf8());
    if (n == 0) {
      out.push_back(s[i++]);
      continue;
    }
    for (std::size_t k = 0; k < n; ++k, ++i) out.push_back(s[i] == ' ' ? '\xA0' : s[i]);
  }
  return out;
}

/// ftfy's replace_lossy_sequences: a damaged UTF-8 sequence becomes U+FFFD.
inline std::string replace_lossy_sequences(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    std::size_t n = match_at(s, i, lossy_utf8());
    if (n == 0) {
      out.push_back(s[i++]);
    } else {
      out += "\xEF\xBF\xBD";
      i += n;
    }
  }
  return out;
}

/// Strict UTF-8 decoding (Python's "utf-8" codec), or with `variants` also CESU-8 surrogate pairs and
/// Java's 0xC0 0x80 for NUL (ftfy's "utf-8-variants"). nullopt on any error.
inline std::optional<std::u32string> decode_utf8_strict(std::string_view s, bool variants) {
  std::u32string out;
  auto const* p = reinterpret_cast<std::uint8_t const*>(s.data());
  std::size_t const n = s.size();
  std::size_t i = 0;
  while (i < n) {
    if (variants) {
      if (p[i] == 0xC0 && i + 1 < n) {  // ftfy's codec takes 0xC0 plus any byte as NUL
        out.push_back(0);
        i += 2;
        continue;
      }
      if (p[i] == 0xED && i + 5 < n && p[i + 1] >= 0xA0 && p[i + 1] <= 0xAF && p[i + 2] >= 0x80 && p[i + 2] <= 0xBF &&
          p[i + 3] == 0xED && p[i + 4] >= 0xB0 && p[i + 4] <= 0xBF && p[i + 5] >= 0x80 && p[i + 5] <= 0xBF) {
        char32_t c = ((p[i + 1] & 0x0Fu) << 16) + ((p[i + 2] & 0x3Fu) << 10) + ((p[i + 4] & 0x0Fu) << 6) +
                     (p[i + 5] & 0x3Fu) + 0x10000u;
        out.push_back(c);
        i += 6;
        continue;
      }
    }
    auto const len = static_cast<std::int32_t>(n);
    auto j = static_cast<std::int32_t>(i);
    UChar32 c;
    U8_NEXT(p, j, len, c);
    if (c < 0) return std::nullopt;
    out.push_back(static_cast<char32_t>(c));
    i = static_cast<std::size_t>(j);
  }
  return out;
}

inline std::u32string fix_encoding(std::u32string text);

/// ftfy's decode_inconsistent_utf8: fix runs that look like UTF-8 mojibake inside otherwise fine text.
inline std::u32string decode_inconsistent_utf8(std::u32string const& text) {
  icu::UnicodeString u = to_icu(text);
  UErrorCode status = U_ZERO_ERROR;
  std::unique_ptr<icu::RegexMatcher> m(utf8_detector_pattern().matcher(u, status));
  fd::text::detail::check_icu(status, "regex matcher");
  std::u32string out;
  std::int32_t last = 0;
  auto piece = [&](std::int32_t a, std::int32_t b) {
    return fd::text::detail::from_icu(icu::UnicodeString(u, a, b - a));
  };
  while (m->find(status)) {
    std::int32_t const a = m->start(status), b = m->end(status);
    out += piece(last, a);
    std::u32string sub = piece(a, b);
    if (sub.size() < text.size() && is_bad(sub)) sub = fix_encoding(sub);
    out += sub;
    last = b;
  }
  fd::text::detail::check_icu(status, "regex search");
  out += piece(last, u.length());
  return out;
}

inline bool has_c1(std::u32string_view t) {
  return std::any_of(t.begin(), t.end(), [](char32_t c) { return c >= 0x80 && c <= 0x9F; });
}

/// C1 controls read as Windows-1252 (ftfy's fix_c1_controls; undefined bytes stay as they are).
inline std::u32string fix_c1_controls(std::u32string t) {
  Codec const& cp1252 = codecs()[1];
  for (char32_t& c : t)
    if (c >= 0x80 && c <= 0x9F) c = cp1252.decode[c];
  return t;
}

/// One step of ftfy's mojibake repair.
inline std::u32string fix_encoding_one_step(std::u32string const& text) {
  if (text.empty()) return text;
  bool const ascii = std::all_of(text.begin(), text.end(), [](char32_t c) { return c < 0x80; });
  if (ascii || !is_bad(text)) return text;
  bool latin1_possible = false;
  for (Codec const& codec : codecs()) {
    std::optional<std::string> bytes = encode_single_byte(text, codec);
    if (!bytes) continue;
    if (codec.name == "latin-1") latin1_possible = true;
    if (search_bytes(*bytes, altered_utf8())) *bytes = restore_byte_a0(*bytes);
    if (codec.sloppy) *bytes = replace_lossy_sequences(*bytes);
    bool const variants = bytes->find('\xED') != std::string::npos || bytes->find('\xC0') != std::string::npos;
    if (auto fixed = decode_utf8_strict(*bytes, variants)) return *fixed;
  }
  if (regex_search(utf8_detector_pattern(), text)) {
    std::u32string fixed = decode_inconsistent_utf8(text);
    if (fixed != text) return fixed;
  }
  // Latin-1 text with C1 controls: read them as (strict) Windows-1252 when that decodes.
  if (latin1_possible) {
    Codec const& cp1252 = codecs()[1];
    bool decodable = true;
    std::u32string fixed = text;
    for (char32_t& c : fixed) {
      if (c >= 0x80 && c <= 0x9F) {
        if (c == 0x81 || c == 0x8D || c == 0x8F || c == 0x90 || c == 0x9D) decodable = false;
        c = cp1252.decode[c];
      }
    }
    if (decodable && fixed != text) return fixed;
  }
  if (has_c1(text)) return fix_c1_controls(text);
  return text;
}

inline std::u32string fix_encoding(std::u32string text) {
  for (;;) {
    std::u32string next = fix_encoding_one_step(text);
    if (next == text) return text;
    text = std::move(next);
  }
}

// ---- HTML entities ------------------------------------------------------------------------------

inline std::unordered_map<std::string_view, std::string_view> const& html_entities() {
  static std::unordered_map<std::string_view, std::string_view> const map = [] {
    std::unordered_map<std::string_view, std::string_view> m;
    std::string_view t = fd::text::detail::kHtmlEntities;
    while (!t.empty()) {
      std::size_t const tab = t.find('\t');
      std::size_t const nl = t.find('\n', tab + 2);  // a value is never empty (and may itself be "\n")
      m.emplace(t.substr(0, tab), t.substr(tab + 1, nl - tab - 1));
      t.remove_prefix(nl + 1);
    }
    return m;
  }();
  return map;
}

inline bool ascii_alnum(char32_t c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
inline bool ascii_hex(char32_t c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

/// What Python's html.unescape makes of a complete "&#<digits>;" / "&#x<hex>;" reference.
inline std::u32string numeric_reference(std::u32string_view digits, int base) {
  std::uint64_t v = 0;
  for (char32_t c : digits) {
    unsigned d = c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
    v = std::min<std::uint64_t>(v * static_cast<std::uint64_t>(base) + d, 0x7FFFFFFF);
  }
  if (v == 0) return U"\uFFFD";
  if (v == 0x0D) return U"\r";
  if (v >= 0x80 && v <= 0x9F) return std::u32string(1, fd::text::detail::kHtmlC1Refs[v - 0x80]);
  if ((v >= 0xD800 && v <= 0xDFFF) || v > 0x10FFFF) return U"\uFFFD";
  bool const invalid = (v >= 0x1 && v <= 0x8) || (v >= 0xE && v <= 0x1F) || v == 0xB || (v >= 0x7F && v <= 0x9F) ||
                       (v >= 0xFDD0 && v <= 0xFDEF) || (v & 0xFFFE) == 0xFFFE;
  if (invalid) return U"";
  return std::u32string(1, static_cast<char32_t>(v));
}

/// ftfy's unescape_html: "&name;" (HTML5 names, plus upper-case spellings) and complete numeric
/// references are decoded; anything else stays as written.
inline std::u32string unescape_html(std::u32string_view t) {
  std::u32string out;
  out.reserve(t.size());
  for (std::size_t i = 0; i < t.size();) {
    if (t[i] != U'&') {
      out.push_back(t[i++]);
      continue;
    }
    // &#?[0-9A-Za-z]{1,24};
    std::size_t j = i + 1;
    bool const hash = j < t.size() && t[j] == U'#';
    if (hash) ++j;
    std::size_t k = j;
    while (k < t.size() && ascii_alnum(t[k]) && k - j < 25) ++k;
    if (k == j || k - j > 24 || k >= t.size() || t[k] != U';') {
      out.push_back(t[i++]);
      continue;
    }
    std::u32string_view const name = t.substr(j, k - j);
    std::size_t const end = k + 1;
    if (!hash) {
      std::string key;
      for (char32_t c : name) key.push_back(static_cast<char>(c));
      key.push_back(';');
      auto it = html_entities().find(key);
      if (it != html_entities().end()) {
        out += utf8_to_u32(it->second);
        i = end;
        continue;
      }
    } else {
      bool const dec = std::all_of(name.begin(), name.end(), [](char32_t c) { return c >= '0' && c <= '9'; });
      bool const hex = name.size() > 1 && (name[0] == U'x' || name[0] == U'X') &&
                       std::all_of(name.begin() + 1, name.end(), ascii_hex);
      std::u32string const value = dec ? numeric_reference(name, 10)
                                   : hex ? numeric_reference(name.substr(1), 16)
                                         : std::u32string(U";");
      if (value != U";") {  // ftfy keeps a reference whose decoding still holds a ';'
        out += value;
        i = end;
        continue;
      }
    }
    out.append(t.substr(i, end - i));
    i = end;
  }
  return out;
}

// ---- character-level fixes ----------------------------------------------------------------------

/// ESC '[' (digits | ';')* letter.
inline std::u32string remove_terminal_escapes(std::u32string_view t) {
  std::u32string out;
  for (std::size_t i = 0; i < t.size();) {
    if (t[i] == 0x1B && i + 1 < t.size() && t[i + 1] == U'[') {
      std::size_t k = i + 2;
      while (k < t.size() && ((t[k] >= '0' && t[k] <= '9') || t[k] == ';')) ++k;
      if (k < t.size() && ((t[k] >= 'a' && t[k] <= 'z') || (t[k] >= 'A' && t[k] <= 'Z'))) {
        i = k + 1;
        continue;
      }
    }
    out.push_back(t[i++]);
  }
  return out;
}

inline std::u32string_view ligature(char32_t c) {
  switch (c) {
    case U'Ĳ': return U"IJ";
    case U'ĳ': return U"ij";
    case U'ŉ': return U"ʼn";
    case U'Ǳ': return U"DZ";
    case U'ǲ': return U"Dz";
    case U'ǳ': return U"dz";
    case U'Ǆ': return U"DŽ";
    case U'ǅ': return U"Dž";
    case U'ǆ': return U"dž";
    case U'Ǉ': return U"LJ";
    case U'ǈ': return U"Lj";
    case U'ǉ': return U"lj";
    case U'Ǌ': return U"NJ";
    case U'ǋ': return U"Nj";
    case U'ǌ': return U"nj";
    case U'ﬀ': return U"ff";
    case U'ﬁ': return U"fi";
    case U'ﬂ': return U"fl";
    case U'ﬃ': return U"ffi";
    case U'ﬄ': return U"ffl";
    case U'ﬅ': return U"ſt";
    case U'ﬆ': return U"st";
    default: return {};
  }
}

/// Ideographic space and the half-/full-width forms block (U+FF01-U+FFEF) to their NFKC forms.
inline std::u32string fix_character_width(std::u32string_view t) {
  std::u32string out;
  for (char32_t c : t) {
    if (c == 0x3000) {
      out.push_back(U' ');
    } else if (c >= 0xFF01 && c <= 0xFFEF) {
      out += fd::text::detail::normalize(std::u32string(1, c), /*compatibility=*/true);
    } else {
      out.push_back(c);
    }
  }
  return out;
}

/// Characters ftfy's remove_control_chars drops: C0 controls but tab, LF, FF, CR; DEL; deprecated
/// format characters U+206A-U+206F; BOM; interlinear annotation marks U+FFF9-U+FFFC.
inline bool removed_control(char32_t c) {
  return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || (c >= 0x206A && c <= 0x206F) ||
         c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

inline std::u32string fix_characters(std::u32string t) {
  if (has_c1(t)) t = fix_c1_controls(std::move(t));
  std::u32string out;
  out.reserve(t.size());
  for (char32_t c : t) {
    std::u32string_view lig = ligature(c);
    if (!lig.empty()) {
      out += lig;
    } else {
      out.push_back(c);
    }
  }
  out = fix_character_width(out);
  for (char32_t& c : out) {
    if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B)) c = U'\'';
    else if (c >= 0x201C && c <= 0x201F) c = U'"';
  }
  // Line breaks: CRLF, CR, LS, PS, NEL -> LF.
  std::u32string lines;
  for (std::size_t i = 0; i < out.size(); ++i) {
    char32_t c = out[i];
    if (c == U'\r' && i + 1 < out.size() && out[i + 1] == U'\n') continue;
    lines.push_back((c == U'\r' || c == 0x2028 || c == 0x2029 || c == 0x85) ? U'\n' : c);
  }
  lines = remove_terminal_escapes(lines);
  std::erase_if(lines, removed_control);
  return lines;
}

/// ftfy's fix_and_explain for one segment, with unescape_html on or off.
inline std::u32string fix_segment(std::u32string text, bool unescape) {
  if (text.find(U'<') != std::u32string::npos) unescape = false;
  for (;;) {
    std::u32string const orig = text;
    if (unescape) text = unescape_html(text);
    text = fix_encoding(std::move(text));
    text = fix_characters(std::move(text));
    text = fd::text::detail::normalize(text, /*compatibility=*/false);
    if (text == orig) return text;
  }
}

}  // namespace detail

/// ftfy.fix_text(text) with ftfy 6.1.1's default configuration, on code points. Lines (up to and
/// including each '\n') are fixed independently; HTML entities are decoded until the first line that
/// contains '<' and not after it.
inline std::u32string fix_text(std::u32string_view text) {
  std::u32string out;
  bool unescape = true;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t brk = text.find(U'\n', pos);
    brk = brk == std::u32string_view::npos ? text.size() : brk + 1;
    std::u32string segment(text.substr(pos, brk - pos));
    if (segment.find(U'<') != std::u32string::npos) unescape = false;
    out += detail::fix_segment(std::move(segment), unescape);
    pos = brk;
  }
  return out;
}

}  // namespace fd::text::ftfy
