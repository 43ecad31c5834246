#pragma once
/// @file
/// fd::io::read_jpeg: JPEG decoding through libjpeg(-turbo) (Debian libjpeg-dev; link JPEG::JPEG, which
/// FasterDiffusion::fd does). Grey and YCbCr files decode to 8-bit RGB; CMYK files are refused.
/// libjpeg reports errors by longjmp: every object the jump crosses is plain data.

#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <jpeglib.h>

#include "fd/error.hpp"

namespace fd::io {

/// An 8-bit RGB image, rows top to bottom, 3 bytes per pixel.
struct Rgb8 {
  int width = 0, height = 0;
  std::vector<std::uint8_t> rgb;
};

namespace detail {

struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

[[noreturn]] inline void jpeg_error_exit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// Counts warnings (level < 0: corrupt data, premature end) without printing them; read_jpeg fails on any.
inline void jpeg_quiet(j_common_ptr cinfo, int level) {
  if (level < 0) ++cinfo->err->num_warnings;
}

struct JpegRead {
  jpeg_decompress_struct cinfo;
  JpegError err;
  std::FILE* file = nullptr;
  int width = 0, height = 0, color = 0;
};

// Decodes into `out` (sized by the caller after the header); returns false with err.message set.
inline bool jpeg_decode(JpegRead& s, std::vector<std::uint8_t>& out, bool header_only) {
  if (setjmp(s.err.jump)) return false;
  jpeg_read_header(&s.cinfo, TRUE);
  s.width = static_cast<int>(s.cinfo.image_width);
  s.height = static_cast<int>(s.cinfo.image_height);
  s.color = s.cinfo.jpeg_color_space;
  if (header_only) return true;
  s.cinfo.out_color_space = JCS_RGB;
  jpeg_start_decompress(&s.cinfo);
  std::size_t const stride = static_cast<std::size_t>(s.width) * 3;
  while (s.cinfo.output_scanline < s.cinfo.output_height) {
    JSAMPROW row = out.data() + static_cast<std::size_t>(s.cinfo.output_scanline) * stride;
    jpeg_read_scanlines(&s.cinfo, &row, 1);
  }
  jpeg_finish_decompress(&s.cinfo);
  return true;
}

}  // namespace detail

/// Reads a JPEG file as 8-bit RGB. Errors: kIo (cannot open), kFormat (corrupt or truncated, with
/// libjpeg's reason), kUnsupported (CMYK/YCCK).
inline Rgb8 read_jpeg(std::filesystem::path const& path) {
  std::string const who = path.string();
  detail::JpegRead s{};
  s.file = std::fopen(path.c_str(), "rb");
  if (!s.file) fail(Errc::kIo, who + ": cannot open");
  s.cinfo.err = jpeg_std_error(&s.err.mgr);
  s.err.mgr.error_exit = detail::jpeg_error_exit;
  s.err.mgr.emit_message = detail::jpeg_quiet;  // warnings (e.g. a premature end) are checked below
  jpeg_create_decompress(&s.cinfo);
  jpeg_stdio_src(&s.cinfo, s.file);
  std::vector<std::uint8_t> pixels;
  bool ok = detail::jpeg_decode(s, pixels, true);
  bool const cmyk = ok && (s.color == JCS_CMYK || s.color == JCS_YCCK);
  if (ok && !cmyk) {
    if (s.width <= 0 || s.height <= 0) {
      ok = false;
    } else {
      jpeg_abort_decompress(&s.cinfo);
      std::rewind(s.file);
      jpeg_stdio_src(&s.cinfo, s.file);
      pixels.resize(static_cast<std::size_t>(s.width) * static_cast<std::size_t>(s.height) * 3);
      ok = detail::jpeg_decode(s, pixels, false);
    }
  }
  long const warnings = s.err.mgr.num_warnings;
  std::string const reason = s.err.message;
  jpeg_destroy_decompress(&s.cinfo);
  std::fclose(s.file);
  if (cmyk) fail(Errc::kUnsupported, who + ": CMYK JPEG images are not supported; convert it to RGB first");
  if (!ok) fail(Errc::kFormat, who + ": not a valid JPEG file (" + (reason.empty() ? "empty image" : reason) + ")");
  if (warnings > 0) fail(Errc::kFormat, who + ": corrupt or truncated JPEG data");
  return Rgb8{s.width, s.height, std::move(pixels)};
}

}  // namespace fd::io
