// write_png / read_png: round trips with Unicode text, atomic replacement, and clean fd::error
// reports for unwritable targets and corrupt or truncated files.

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "common/temp_dir.hpp"
#include "fd/io/png.hpp"

namespace {

namespace fs = std::filesystem;
using fd::io::PngText;

std::vector<std::uint8_t> gradient(int w, int h, int c) {
  std::vector<std::uint8_t> v(static_cast<std::size_t>(w * h * c));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::uint8_t>((i * 37 + i / 7) & 0xff);
  return v;
}

std::vector<char> slurp(fs::path const& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void spit(fs::path const& p, std::vector<char> const& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// Names in `dir` other than `keep` (temporary files a failed write must not leave).
std::vector<std::string> other_entries(fs::path const& dir, std::vector<std::string> const& keep) {
  std::vector<std::string> out;
  for (auto const& e : fs::directory_iterator(dir)) {
    std::string const n = e.path().filename().string();
    if (std::find(keep.begin(), keep.end(), n) == keep.end()) out.push_back(n);
  }
  return out;
}

bool is_error(fd::error const& e, fd::Errc code, std::string const& needle) {
  return e.code() == code && std::string(e.what()).find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("write_png / read_png round trip pixels and Unicode text", "[png]") {
  fdtest::TempDir dir;
  for (int channels : {1, 2, 3, 4}) {
    INFO("channels " << channels);
    auto const px = gradient(13, 7, channels);
    std::vector<PngText> const text{
        {"prompt", "a photo of a cat, 4k"},                       // ASCII: tEXt
        {"Título", "café crème"},                                 // Latin-1 key and value: tEXt
        {"negative", "猫の写真 — ぼやけた, 🐈 emoji"},              // beyond Latin-1: iTXt
        {"empty", ""},
    };
    fs::path const p = dir / ("img" + std::to_string(channels) + ".png");
    fd::io::write_png(p, px, 13, 7, channels, text);
    auto const img = fd::io::read_png(p);
    CHECK(img.width == 13);
    CHECK(img.height == 7);
    CHECK(img.channels == channels);
    CHECK(img.pixels == px);
    CHECK(img.text == text);
  }
  SECTION("an existing file is replaced") {
    fs::path const p = dir / "same.png";
    fd::io::write_png(p, gradient(2, 2, 3), 2, 2, 3);
    auto const px = std::vector<std::uint8_t>(4 * 3 * 3, 200);
    fd::io::write_png(p, px, 4, 3, 3, {{"seed", "42"}});
    auto const img = fd::io::read_png(p);
    CHECK(img.pixels == px);
    CHECK(img.text == std::vector<PngText>{{"seed", "42"}});
    CHECK(other_entries(dir.path(), {"same.png", "img1.png", "img2.png", "img3.png", "img4.png"}).empty());
  }
}

TEST_CASE("write_png rejects bad arguments before touching the disk", "[png]") {
  fdtest::TempDir dir;
  fs::path const p = dir / "x.png";
  auto const px = gradient(4, 4, 3);
  auto matches = [](fd::Errc code, std::string needle) {
    return Catch::Matchers::Predicate<fd::error>([=](fd::error const& e) { return is_error(e, code, needle); },
                                                 "fd::error with code and '" + needle + "'");
  };
  CHECK_THROWS_MATCHES(fd::io::write_png(p, px, 4, 5, 3), fd::error, matches(fd::Errc::kInvalidArgument, "x.png"));
  CHECK_THROWS_MATCHES(fd::io::write_png(p, px, 4, 4, 5), fd::error, matches(fd::Errc::kInvalidArgument, "channels"));
  CHECK_THROWS_MATCHES(fd::io::write_png(p, px, 4, 4, 3, {{"", "v"}}), fd::error,
                       matches(fd::Errc::kInvalidArgument, "key"));
  CHECK_THROWS_MATCHES(fd::io::write_png(p, px, 4, 4, 3, {{"ключ", "v"}}), fd::error,
                       matches(fd::Errc::kInvalidArgument, "key"));
  CHECK_THROWS_MATCHES(fd::io::write_png(p, px, 4, 4, 3, {{"k", std::string("\xff\xfe", 2)}}), fd::error,
                       matches(fd::Errc::kInvalidArgument, "UTF-8"));
  CHECK(!fs::exists(p));
  CHECK(other_entries(dir.path(), {}).empty());
}

TEST_CASE("write_png failures name the path and leave nothing behind", "[png]") {
  fdtest::TempDir dir;
  auto const px = gradient(8, 8, 3);

  SECTION("missing directory") {
    fs::path const p = dir / "no" / "such" / "dir" / "out.png";
    CHECK_THROWS_MATCHES(fd::io::write_png(p, px, 8, 8, 3), fd::error,
                         Catch::Matchers::Predicate<fd::error>([&](fd::error const& e) {
                           return is_error(e, fd::Errc::kIo, p.string()) &&
                                  std::string(e.what()).find("does not exist") != std::string::npos;
                         }));
  }
  SECTION("unwritable directory") {
    // A regular file where a directory should be is unwritable even for root; so is /proc.
    spit(dir / "plain_file", {'x'});
    fs::path const p = dir / "plain_file" / "out.png";
    CHECK_THROWS_MATCHES(fd::io::write_png(p, px, 8, 8, 3), fd::error,
                         Catch::Matchers::Predicate<fd::error>(
                             [&](fd::error const& e) { return is_error(e, fd::Errc::kIo, p.string()); }));
    CHECK_THROWS_MATCHES(fd::io::write_png("/proc/fd_test_out.png", px, 8, 8, 3), fd::error,
                         Catch::Matchers::Predicate<fd::error>(
                             [](fd::error const& e) { return is_error(e, fd::Errc::kIo, "/proc/fd_test_out.png"); }));
    if (::geteuid() != 0) {  // permissions do not bind root
      fs::create_directory(dir / "ro");
      fs::permissions(dir / "ro", fs::perms::owner_read | fs::perms::owner_exec);
      CHECK_THROWS_MATCHES(fd::io::write_png(dir / "ro" / "out.png", px, 8, 8, 3), fd::error,
                           Catch::Matchers::Predicate<fd::error>([](fd::error const& e) {
                             return is_error(e, fd::Errc::kIo, "Permission denied");
                           }));
      fs::permissions(dir / "ro", fs::perms::owner_all);
    }
  }
  SECTION("a write that fails part-way (file size limit, as on a full disk) keeps the old file") {
    fs::path const p = dir / "keep.png";
    fd::io::write_png(p, gradient(2, 2, 3), 2, 2, 3);
    auto const before = slurp(p);
    // Random pixels do not compress: the new image is ~200 KB, the limit 16 KB.
    std::vector<std::uint8_t> big(256 * 256 * 3);
    std::uint32_t s = 1;
    for (auto& b : big) b = static_cast<std::uint8_t>((s = s * 1664525u + 1013904223u) >> 24);
    rlimit old{};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
    rlimit lim = old;
    lim.rlim_cur = 16 * 1024;
    auto const old_handler = ::signal(SIGXFSZ, SIG_IGN);  // get EFBIG instead of being killed
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &lim) == 0);
    bool threw = false;
    std::string message;
    try {
      fd::io::write_png(p, big, 256, 256, 3, {{"prompt", "too big"}});
    } catch (fd::error const& e) {
      threw = true;
      message = e.what();
      CHECK(e.code() == fd::Errc::kIo);
    }
    ::setrlimit(RLIMIT_FSIZE, &old);
    ::signal(SIGXFSZ, old_handler);
    CHECK(threw);
    INFO(message);
    CHECK(message.find(p.string()) != std::string::npos);
    CHECK(message.find("too large") != std::string::npos);  // strerror(EFBIG): "File too large"
    CHECK(slurp(p) == before);
    CHECK(other_entries(dir.path(), {"keep.png"}).empty());
  }
  SECTION("a target that is a directory is not replaced, and the temporary file is removed") {
    fs::create_directories(dir / "target.png" / "inside");
    CHECK_THROWS_MATCHES(fd::io::write_png(dir / "target.png", px, 8, 8, 3), fd::error,
                         Catch::Matchers::Predicate<fd::error>(
                             [&](fd::error const& e) { return is_error(e, fd::Errc::kIo, "target.png"); }));
    CHECK(fs::is_directory(dir / "target.png" / "inside"));
    CHECK(other_entries(dir.path(), {"target.png"}).empty());
  }
}

TEST_CASE("read_png reports missing, foreign, truncated and corrupt files", "[png]") {
  fdtest::TempDir dir;
  fs::path const good = dir / "good.png";
  fd::io::write_png(good, gradient(32, 32, 3), 32, 32, 3, {{"k", "v"}});
  auto const bytes = slurp(good);
  REQUIRE(bytes.size() > 100);
  auto format_error = [](fs::path const& p) {
    return Catch::Matchers::Predicate<fd::error>(
        [p](fd::error const& e) { return is_error(e, fd::Errc::kFormat, p.string()); },
        "kFormat naming " + p.string());
  };

  CHECK_THROWS_MATCHES(fd::io::read_png(dir / "absent.png"), fd::error,
                       Catch::Matchers::Predicate<fd::error>(
                           [](fd::error const& e) { return is_error(e, fd::Errc::kIo, "absent.png"); }));

  fs::path const text = dir / "text.png";
  spit(text, {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'});
  CHECK_THROWS_MATCHES(fd::io::read_png(text), fd::error, format_error(text));

  fs::path const empty = dir / "empty.png";
  spit(empty, {});
  CHECK_THROWS_MATCHES(fd::io::read_png(empty), fd::error, format_error(empty));

  for (std::size_t keep : {std::size_t{8}, std::size_t{20}, std::size_t{60}, bytes.size() / 2, bytes.size() - 13}) {
    INFO("truncated to " << keep << " of " << bytes.size() << " bytes");
    fs::path const cut = dir / ("cut" + std::to_string(keep) + ".png");
    spit(cut, std::vector<char>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(keep)));
    CHECK_THROWS_MATCHES(fd::io::read_png(cut), fd::error, format_error(cut));
  }

  // Flipped bytes inside the image data: the IDAT CRC (a critical chunk) no longer matches.
  fs::path const bad = dir / "corrupt.png";
  auto flipped = bytes;
  for (std::size_t i = bytes.size() / 2; i < bytes.size() / 2 + 8; ++i) flipped[i] = static_cast<char>(flipped[i] ^ 0x5a);
  spit(bad, flipped);
  CHECK_THROWS_MATCHES(fd::io::read_png(bad), fd::error, format_error(bad));

  // The intact file still reads after all those failures (no state leaks between calls).
  CHECK(fd::io::read_png(good).pixels == gradient(32, 32, 3));
}
