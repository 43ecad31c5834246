#pragma once
/// @file
/// fd::io::read_image: a PNG or JPEG file (told apart by content, not name) as 8-bit RGB, converted the
/// way PIL's Image.convert("RGB") does (grey replicated, alpha dropped).

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>

#include "fd/io/jpeg.hpp"
#include "fd/io/png.hpp"

namespace fd::io {

inline Rgb8 read_image(std::filesystem::path const& path) {
  std::string const who = path.string();
  std::array<unsigned char, 8> magic{};
  {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) fail(Errc::kIo, who + ": cannot open");
    std::size_t const got = std::fread(magic.data(), 1, magic.size(), f);
    std::fclose(f);
    if (got < 3) fail(Errc::kFormat, who + ": too short to be a PNG or JPEG image");
  }
  if (magic[0] == 0xFF && magic[1] == 0xD8 && magic[2] == 0xFF) return read_jpeg(path);
  if (magic[0] != 0x89 || magic[1] != 'P' || magic[2] != 'N' || magic[3] != 'G') {
    fail(Errc::kFormat, who + ": not a PNG or JPEG image");
  }
  PngImage const p = read_png(path);
  Rgb8 out{p.width, p.height, {}};
  std::size_t const n = static_cast<std::size_t>(p.width) * static_cast<std::size_t>(p.height);
  out.rgb.resize(n * 3);
  for (std::size_t i = 0; i < n; ++i) {
    std::uint8_t const* px = p.pixels.data() + i * static_cast<std::size_t>(p.channels);
    bool const grey = p.channels < 3;
    for (int c = 0; c < 3; ++c) out.rgb[i * 3 + static_cast<std::size_t>(c)] = grey ? px[0] : px[c];
  }
  return out;
}

}  // namespace fd::io
