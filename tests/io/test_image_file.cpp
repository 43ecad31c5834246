// Control images: PNG/JPEG reading (against Pillow's decode), Pillow-exact LANCZOS resizing, and the
// [3, H, W] float control image diffusers makes of them. Reference data: tests/data/control (made by
// make_references.py there with Pillow 9.4 and OpenCV 4.6).

#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "common/temp_dir.hpp"
#include "fd/image/resize.hpp"
#include "fd/io/image_file.hpp"

namespace fs = std::filesystem;

namespace {

fs::path data(std::string const& name) { return fs::path(FD_TEST_DATA_DIR) / "control" / name; }

std::size_t differing_pixels(fd::io::Rgb8 const& a, fd::io::Rgb8 const& b) {
  REQUIRE(a.width == b.width);
  REQUIRE(a.height == b.height);
  std::size_t n = 0;
  for (std::size_t i = 0; i < a.rgb.size(); i += 3) {
    n += a.rgb[i] != b.rgb[i] || a.rgb[i + 1] != b.rgb[i + 1] || a.rgb[i + 2] != b.rgb[i + 2];
  }
  return n;
}

}  // namespace

TEST_CASE("image: LANCZOS resizing equals Pillow's, byte for byte", "[image][resize]") {
  struct Case {
    char const* src;
    int w, h;
  };
  for (Case c : {Case{"shapes", 32, 24}, Case{"shapes", 128, 96}, Case{"shapes", 40, 64}, Case{"gradient", 16, 16},
                 Case{"gradient", 100, 30}, Case{"noise", 64, 64}, Case{"noise", 12, 9}, Case{"odd", 120, 72},
                 Case{"odd", 256, 160}}) {
    auto const src = fd::io::read_image(data(std::string("src_") + c.src + ".png"));
    auto const want = fd::io::read_image(data(std::string("resize_") + c.src + "_" + std::to_string(c.w) + "x" +
                                              std::to_string(c.h) + ".png"));
    auto const got = fd::image::resize_lanczos(src, c.w, c.h);
    std::size_t const diff = differing_pixels(got, want);
    std::printf("  resize %-8s %3dx%-3d -> %3dx%-3d: %zu differing pixels\n", c.src, src.width, src.height, c.w, c.h, diff);
    INFO(c.src << " to " << c.w << "x" << c.h);
    CHECK(diff == 0);
  }
}

TEST_CASE("image: JPEG and PNG files decode as Pillow decodes them", "[image][io]") {
  CHECK(differing_pixels(fd::io::read_image(data("photo.jpg")), fd::io::read_image(data("photo_decoded.png"))) == 0);
  CHECK(differing_pixels(fd::io::read_image(data("grey.jpg")), fd::io::read_image(data("grey_decoded.png"))) == 0);
  auto const g = fd::io::read_image(data("grey_decoded.png"));
  CHECK(g.rgb[0] == g.rgb[1]);
}

TEST_CASE("image: the control image is RGB / 255 at the request size; default size rounds down to 8",
          "[image][resize]") {
  auto const src = fd::io::read_image(data("src_odd.png"));  // 123 x 77
  auto const [w, h] = fd::image::default_size_for(src, 8);
  CHECK(w == 120);
  CHECK(h == 72);
  auto const v = fd::image::prepare_control_image(src, 123, 77);
  REQUIRE(v.size() == 3u * 123 * 77);
  std::size_t const plane = 123 * 77;
  CHECK(v[0] == static_cast<float>(src.rgb[0]) / 255.0f);
  CHECK(v[plane + 5] == static_cast<float>(src.rgb[5 * 3 + 1]) / 255.0f);
  CHECK(v[2 * plane + 77] == static_cast<float>(src.rgb[77 * 3 + 2]) / 255.0f);
  auto const r = fd::image::prepare_control_image(src, 120, 72);
  CHECK(r.size() == 3u * 120 * 72);
}

TEST_CASE("image: unreadable, truncated and foreign files give clear errors", "[image][io][errors]") {
  fdtest::TempDir dir;
  CHECK_THROWS_WITH(fd::io::read_image(dir / "missing.png"), Catch::Contains("missing.png: cannot open"));
  {
    std::ofstream(dir / "text.png") << "hello, not an image";
  }
  CHECK_THROWS_WITH(fd::io::read_image(dir / "text.png"), Catch::Contains("not a PNG or JPEG image"));
  {
    std::ifstream in(data("photo.jpg"), std::ios::binary);
    std::string const bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(dir / "cut.jpg", std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
  }
  try {
    (void)fd::io::read_image(dir / "cut.jpg");
    FAIL("a truncated JPEG was accepted");
  } catch (fd::error const& e) {
    CHECK(e.code() == fd::Errc::kFormat);
    CHECK_THAT(e.what(), Catch::Contains("cut.jpg"));
  }
  CHECK_THROWS_WITH(fd::image::resize_lanczos(fd::io::read_image(data("src_noise.png")), 0, 5),
                    Catch::Contains("target size must be positive"));
}
