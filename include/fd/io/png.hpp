#pragma once
/// @file
/// PNG files through libpng: write_png (atomic, with text chunks such as the prompt and seed) and
/// read_png (tests, conditioning images). 8 bits per channel; gray, gray+alpha, RGB or RGBA.
///
/// Text: keys are Latin-1 (the PNG rule; given and returned here as UTF-8). A value that Latin-1 can
/// hold is stored as tEXt, any other Unicode value as iTXt in UTF-8, so prompts in any script round-trip.
///
/// libpng reports errors by longjmp. The functions that call setjmp (in detail::) hold only plain C
/// data, never an object with a destructor, so nothing is skipped by the jump; they return false with
/// libpng's message and the C++ wrappers turn that into fd::error.
///
/// @code
///   fd::io::write_png("out.png", rgb, 512, 512, 3, {{"prompt", "a cat"}, {"seed", "42"}});
///   auto img = fd::io::read_png("out.png");   // img.pixels: row-major, img.channels per pixel
/// @endcode

#include <png.h>

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "fd/error.hpp"

namespace fd::io {

/// One text chunk: key (1-79 Latin-1 characters, given as UTF-8) and value (any UTF-8).
struct PngText {
  std::string key, value;
  friend bool operator==(PngText const&, PngText const&) = default;
};

/// A decoded image: 8-bit samples, rows top to bottom, `channels` interleaved per pixel.
struct PngImage {
  int width = 0, height = 0, channels = 0;  ///< channels: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
  std::vector<std::uint8_t> pixels;         ///< width * height * channels
  std::vector<PngText> text;                ///< tEXt, zTXt and iTXt chunks, in file order, as UTF-8
};

namespace detail {

// ---- UTF-8 / Latin-1 ---------------------------------------------------------------------------

/// Code points of well-formed UTF-8, or nullopt.
inline std::optional<std::vector<char32_t>> decode_utf8(std::string_view s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    auto const b = static_cast<unsigned char>(s[i]);
    int len = 0;
    char32_t cp = 0;
    if (b < 0x80) {
      len = 1, cp = b;
    } else if ((b & 0xe0) == 0xc0) {
      len = 2, cp = b & 0x1f;
    } else if ((b & 0xf0) == 0xe0) {
      len = 3, cp = b & 0x0f;
    } else if ((b & 0xf8) == 0xf0) {
      len = 4, cp = b & 0x07;
    } else {
      return std::nullopt;
    }
    if (i + static_cast<std::size_t>(len) > s.size()) return std::nullopt;
    for (int k = 1; k < len; ++k) {
      auto const c = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
      if ((c & 0xc0) != 0x80) return std::nullopt;
      cp = (cp << 6) | (c & 0x3f);
    }
    // Overlong forms, surrogates and values above U+10FFFF are not UTF-8.
    static constexpr char32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return std::nullopt;
    out.push_back(cp);
    i += static_cast<std::size_t>(len);
  }
  return out;
}

/// UTF-8 -> Latin-1 bytes, or nullopt when a character is above U+00FF (or the input is not UTF-8).
inline std::optional<std::string> utf8_to_latin1(std::string_view s) {
  auto cps = decode_utf8(s);
  if (!cps) return std::nullopt;
  std::string out;
  out.reserve(cps->size());
  for (char32_t c : *cps) {
    if (c > 0xff) return std::nullopt;
    out.push_back(static_cast<char>(static_cast<unsigned char>(c)));
  }
  return out;
}

inline std::string latin1_to_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    auto const c = static_cast<unsigned char>(ch);
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back(static_cast<char>(0xc0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3f)));
    }
  }
  return out;
}

// ---- libpng calls (plain C data only: see the file comment) -------------------------------------

struct PngStatus {
  char message[256];
};

[[noreturn]] inline void png_error_to_status(png_structp png, png_const_charp msg) {
  auto* st = static_cast<PngStatus*>(png_get_error_ptr(png));
  std::snprintf(st->message, sizeof st->message, "%s", msg ? msg : "unknown libpng error");
  png_longjmp(png, 1);
}
inline void png_ignore_warning(png_structp, png_const_charp) {}

inline int png_color_type_for(int channels) {
  switch (channels) {
    case 1: return PNG_COLOR_TYPE_GRAY;
    case 2: return PNG_COLOR_TYPE_GRAY_ALPHA;
    case 3: return PNG_COLOR_TYPE_RGB;
    default: return PNG_COLOR_TYPE_RGB_ALPHA;
  }
}

/// Encodes to `fp`. Returns false with st->message set on a libpng error.
inline bool png_write_raw(std::FILE* fp, std::uint8_t const* pixels, int width, int height, int channels,
                          png_text* texts, int num_texts, PngStatus* st) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, st, png_error_to_status, png_ignore_warning);
  if (!png) {
    std::snprintf(st->message, sizeof st->message, "libpng could not allocate its write state");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_write_struct(&png, nullptr);
    std::snprintf(st->message, sizeof st->message, "libpng could not allocate its info state");
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_init_io(png, fp);
  png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), 8,
               png_color_type_for(channels), PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (num_texts > 0) png_set_text(png, info, texts, num_texts);
  png_write_info(png, info);
  std::size_t const stride = static_cast<std::size_t>(width) * static_cast<std::size_t>(channels);
  for (int y = 0; y < height; ++y) png_write_row(png, pixels + static_cast<std::size_t>(y) * stride);
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  return true;
}

/// What png_read_raw leaves for the C++ side: the libpng state (alive on success, for the text
/// chunks) and the malloc'ed pixels.
struct PngReadState {
  png_structp png;
  png_infop info;
  png_infop end_info;
  std::uint8_t* pixels;
  png_bytep* rows;
  png_uint_32 width, height;
  int channels;
  PngStatus status;
};

inline void png_read_release(PngReadState* s) {
  if (s->png) png_destroy_read_struct(&s->png, s->info ? &s->info : nullptr, s->end_info ? &s->end_info : nullptr);
  s->png = nullptr;
  s->info = nullptr;
  s->end_info = nullptr;
  std::free(s->rows);
  s->rows = nullptr;
  std::free(s->pixels);
  s->pixels = nullptr;
}

/// Decodes `fp` to 8-bit samples (palette -> RGB, tRNS -> alpha, 16 -> 8 bits, low bit depths
/// expanded). Returns false with s->status.message set, everything released, on a libpng error.
inline bool png_read_raw(std::FILE* fp, PngReadState* s) {
  s->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &s->status, png_error_to_status, png_ignore_warning);
  if (!s->png) {
    std::snprintf(s->status.message, sizeof s->status.message, "libpng could not allocate its read state");
    return false;
  }
  s->info = png_create_info_struct(s->png);
  s->end_info = png_create_info_struct(s->png);
  if (!s->info || !s->end_info) {
    png_read_release(s);
    std::snprintf(s->status.message, sizeof s->status.message, "libpng could not allocate its info state");
    return false;
  }
  // Everything modified after setjmp lives in *s (not in this frame), so it is intact after a longjmp.
  if (setjmp(png_jmpbuf(s->png))) {
    png_read_release(s);
    return false;
  }
  png_init_io(s->png, fp);
  png_read_info(s->png, s->info);
  png_set_expand(s->png);
  png_set_strip_16(s->png);
  png_set_interlace_handling(s->png);
  png_read_update_info(s->png, s->info);
  s->width = png_get_image_width(s->png, s->info);
  s->height = png_get_image_height(s->png, s->info);
  s->channels = png_get_channels(s->png, s->info);
  std::size_t const stride = png_get_rowbytes(s->png, s->info);
  s->pixels = static_cast<std::uint8_t*>(std::malloc(stride * s->height + 1));
  s->rows = static_cast<png_bytep*>(std::malloc(sizeof(png_bytep) * (s->height + 1)));
  if (!s->pixels || !s->rows) png_error(s->png, "out of memory for the decoded image");
  for (png_uint_32 y = 0; y < s->height; ++y) s->rows[y] = s->pixels + y * stride;
  png_read_image(s->png, s->rows);
  png_read_end(s->png, s->end_info);
  return true;
}

struct FileCloser {
  void operator()(std::FILE* f) const noexcept {
    if (f) std::fclose(f);
  }
};

inline std::string errno_text(int e) { return std::error_code(e, std::generic_category()).message(); }

inline void collect_text(png_structp png, png_infop info, std::vector<PngText>& out) {
  png_textp t = nullptr;
  int n = 0;
  png_get_text(png, info, &t, &n);
  for (int i = 0; i < n; ++i) {
    std::string key = latin1_to_utf8(t[i].key ? t[i].key : "");
    bool const utf8 = t[i].compression == PNG_ITXT_COMPRESSION_NONE || t[i].compression == PNG_ITXT_COMPRESSION_zTXt;
    std::size_t const len = utf8 ? t[i].itxt_length : t[i].text_length;
    std::string_view const raw(t[i].text ? t[i].text : "", t[i].text ? len : 0);
    out.push_back({std::move(key), utf8 ? std::string(raw) : latin1_to_utf8(raw)});
  }
}

}  // namespace detail

/// Writes an 8-bit PNG atomically: the image goes to a temporary file in the same directory, which
/// is renamed over `path` only once complete, so `path` is either the old file or the whole new one.
/// @param pixels  width * height * channels samples, rows top to bottom, channels interleaved
/// @param channels 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA)
/// @param text    tEXt/iTXt chunks (see the file comment), written before the image data
/// Throws kInvalidArgument for a bad size, channel count, key or non-UTF-8 value; kIo naming `path`
/// and the reason (missing or unwritable directory, disk full, ...) when it cannot be written, in
/// which case no temporary file is left behind and an existing `path` is untouched.
inline void write_png(std::filesystem::path const& path, std::span<std::uint8_t const> pixels, int width, int height,
                      int channels, std::vector<PngText> const& text = {}) {
  std::string const where = path.string() + ": ";
  if (width <= 0 || height <= 0 || width > 1'000'000 || height > 1'000'000) {
    fail(Errc::kInvalidArgument, where + "cannot write a " + std::to_string(width) + "x" + std::to_string(height) +
                                     " PNG (sides must be in [1, 1000000])");
  }
  if (channels < 1 || channels > 4) {
    fail(Errc::kInvalidArgument, where + "PNG channels must be 1, 2, 3 or 4, got " + std::to_string(channels));
  }
  std::size_t const expected =
      static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * static_cast<std::size_t>(channels);
  if (pixels.size() != expected) {
    fail(Errc::kInvalidArgument, where + std::to_string(pixels.size()) + " bytes given for a " + std::to_string(width) +
                                     "x" + std::to_string(height) + "x" + std::to_string(channels) + " image (" +
                                     std::to_string(expected) + " expected)");
  }

  // Chunk strings in the encodings PNG requires; png_text points into these.
  struct Encoded {
    std::string key, value;
    bool itxt;
  };
  std::vector<Encoded> enc;
  enc.reserve(text.size());
  for (auto const& t : text) {
    auto key = detail::utf8_to_latin1(t.key);
    bool key_ok = key && !key->empty() && key->size() <= 79 && key->front() != ' ' && key->back() != ' ' &&
                  key->find("  ") == std::string::npos;
    for (char ch : key ? *key : std::string()) {
      auto const c = static_cast<unsigned char>(ch);
      key_ok = key_ok && ((c >= 32 && c <= 126) || c >= 161);
    }
    if (!key_ok) {
      fail(Errc::kInvalidArgument, where + "PNG text key '" + t.key +
                                       "' must be 1-79 printable Latin-1 characters without leading, trailing or "
                                       "double spaces");
    }
    if (!detail::decode_utf8(t.value) || t.value.find('\0') != std::string::npos) {
      fail(Errc::kInvalidArgument, where + "PNG text value of '" + t.key + "' is not UTF-8 text");
    }
    auto latin1 = detail::utf8_to_latin1(t.value);
    enc.push_back(latin1 ? Encoded{std::move(*key), std::move(*latin1), false} : Encoded{std::move(*key), t.value, true});
  }
  std::vector<png_text> chunks(enc.size());
  for (std::size_t i = 0; i < enc.size(); ++i) {
    png_text& c = chunks[i];
    std::memset(&c, 0, sizeof c);
    c.compression = enc[i].itxt ? PNG_ITXT_COMPRESSION_NONE : PNG_TEXT_COMPRESSION_NONE;
    c.key = enc[i].key.data();
    c.text = enc[i].value.data();
    if (enc[i].itxt) {
      c.itxt_length = enc[i].value.size();
      c.lang = const_cast<char*>("");
      c.lang_key = const_cast<char*>("");
    } else {
      c.text_length = enc[i].value.size();
    }
  }

  // The temporary file: same directory (so rename is atomic), unique name, created exclusively.
  std::filesystem::path const dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  static std::atomic<unsigned> counter{0};
  std::filesystem::path const tmp =
      dir / ("." + path.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  std::unique_ptr<std::FILE, detail::FileCloser> fp(std::fopen(tmp.c_str(), "wbx"));
  if (!fp) {
    int const e = errno;
    std::error_code ec;
    std::string reason = detail::errno_text(e);
    if (e == ENOENT && !std::filesystem::is_directory(dir, ec)) reason = "directory does not exist";
    fail(Errc::kIo, where + "cannot write PNG: cannot create a file in '" + dir.string() + "' (" + reason + ")");
  }
  auto discard = [&](std::string const& reason) {
    fp.reset();
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    fail(Errc::kIo, where + "cannot write PNG: " + reason);
  };

  detail::PngStatus st{};
  errno = 0;
  if (!detail::png_write_raw(fp.get(), pixels.data(), width, height, channels, chunks.data(),
                             static_cast<int>(chunks.size()), &st)) {
    int const e = errno;
    discard(std::string(st.message) + (e ? " (" + detail::errno_text(e) + ")" : std::string()));
  }
  // Buffered data reaches the disk here: a full disk often shows only now.
  if (std::fflush(fp.get()) != 0 || std::ferror(fp.get())) discard(detail::errno_text(errno));
  if (::fsync(::fileno(fp.get())) != 0 && errno != EINVAL) discard(detail::errno_text(errno));
  if (std::fclose(fp.release()) != 0) discard(detail::errno_text(errno));
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) discard("cannot replace it (" + ec.message() + ")");
}

/// Reads an 8-bit-per-channel image (palette, low bit depths and 16-bit files are converted; tRNS
/// becomes an alpha channel) and its text chunks. Throws kIo when the file cannot be opened, kFormat
/// naming the file when it is not a PNG, or corrupt or truncated.
inline PngImage read_png(std::filesystem::path const& path) {
  std::string const where = path.string() + ": ";
  std::unique_ptr<std::FILE, detail::FileCloser> fp(std::fopen(path.c_str(), "rb"));
  if (!fp) fail(Errc::kIo, where + "cannot open PNG (" + detail::errno_text(errno) + ")");
  unsigned char sig[8] = {};
  std::size_t const got = std::fread(sig, 1, sizeof sig, fp.get());
  if (got != sizeof sig || png_sig_cmp(sig, 0, sizeof sig) != 0) {
    fail(Errc::kFormat, where + "not a PNG file (bad signature)");
  }
  std::rewind(fp.get());

  detail::PngReadState s{};
  if (!detail::png_read_raw(fp.get(), &s)) {
    fail(Errc::kFormat, where + "corrupt or truncated PNG (libpng: " + std::string(s.status.message) + ")");
  }
  struct Release {
    detail::PngReadState* s;
    ~Release() { detail::png_read_release(s); }
  } release{&s};

  PngImage img;
  img.width = static_cast<int>(s.width);
  img.height = static_cast<int>(s.height);
  img.channels = s.channels;
  std::size_t const n = static_cast<std::size_t>(s.width) * s.height * static_cast<std::size_t>(s.channels);
  img.pixels.assign(s.pixels, s.pixels + n);
  detail::collect_text(s.png, s.info, img.text);
  detail::collect_text(s.png, s.end_info, img.text);
  return img;
}

}  // namespace fd::io
