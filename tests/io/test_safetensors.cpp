// Tests of fd::io::MappedFile, SafeTensorsFile, SafeTensorsWriter and save_safetensors: round trips of
// every dtype, conversion exactness, and one test per malformed-input case (error code + message).

#include "common/temp_dir.hpp"
#include <catch2/catch.hpp>

#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

#include <unistd.h>

#include "fd/backend/cpu/backend.hpp"
#include "fd/core/tensor.hpp"
#include "fd/io/mapped_file.hpp"
#include "fd/io/safetensors.hpp"

namespace fs = std::filesystem;
using fd::DType;
using fd::Errc;
using fd::Shape;
using Cpu = fd::backend::Cpu;
using T = fd::Tensor<Cpu>;

namespace {

using fdtest::TempDir;

void write_bytes(fs::path const& p, std::string const& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(f.good());
}

std::string read_bytes(fs::path const& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::string u64le(std::uint64_t n) {
  std::string s(8, '\0');
  for (auto& c : s) {
    c = static_cast<char>(n & 0xffu);
    n >>= 8;
  }
  return s;
}

// A safetensors file from raw header text and data (the header length is taken from the text unless
// given).
std::string st_bytes(std::string const& header, std::string const& data = {},
                     std::optional<std::uint64_t> length = std::nullopt) {
  return u64le(length.value_or(header.size())) + header + data;
}

std::optional<fd::error> catch_fd_error(auto&& f) {
  try {
    f();
  } catch (fd::error const& e) {
    return e;
  }
  return std::nullopt;
}

}  // namespace

// Checks that `expr` throws fd::error with code `errc` and a message containing every given substring.
#define CHECK_FD_ERROR(expr, errc, ...)                                                      \
  do {                                                                                       \
    auto const fd_err_ = catch_fd_error([&] { (void)(expr); });                              \
    REQUIRE(fd_err_.has_value());                                                            \
    INFO("message: " << fd_err_->what());                                                    \
    CHECK(fd_err_->code() == (errc));                                                        \
    CHECK(std::string(fd_err_->what()).starts_with("[" + std::string(fd::errc_id(errc)) + "]")); \
    for (std::string const& fd_sub_ : std::vector<std::string>{__VA_ARGS__}) {              \
      CHECK_THAT(std::string(fd_err_->what()), Catch::Contains(fd_sub_));                    \
    }                                                                                        \
  } while (0)

namespace {

#define CHECK_OPEN_ERROR(dir, bytes, errc, ...)                                              \
  do {                                                                                       \
    fs::path const fd_p_ = (dir) / "bad.safetensors";                                        \
    write_bytes(fd_p_, (bytes));                                                             \
    CHECK_FD_ERROR(fd::io::SafeTensorsFile::open(fd_p_), errc, fd_p_.string(), __VA_ARGS__); \
  } while (0)

T make_f16(Cpu const& cpu, Shape shape, std::vector<std::uint16_t> const& bits, DType dt = DType::kF16) {
  T t = T::empty(cpu, shape, dt);
  REQUIRE(bits.size() * 2 == t.nbytes());
  std::memcpy(t.raw(), bits.data(), t.nbytes());
  return t;
}

template <class V>
std::vector<V> host_values(T const& t) {
  std::vector<V> v(static_cast<std::size_t>(t.numel()));
  std::memcpy(v.data(), t.raw(), t.nbytes());
  return v;
}

std::vector<std::uint16_t> host_bits16(T const& t) { return host_values<std::uint16_t>(t); }

std::uint32_t bits_of(float f) { return std::bit_cast<std::uint32_t>(f); }

// F32 file with one tensor "x" holding `values`, loaded as `target`.
T load_f32_as(TempDir const& dir, std::vector<float> const& values, DType target) {
  Cpu cpu;
  fs::path const p = dir / "conv.safetensors";
  fd::io::save_safetensors<Cpu>(p, {{"x", T::from_host(cpu, {static_cast<std::int64_t>(values.size())}, values)}});
  return fd::io::SafeTensorsFile::open(p).load(cpu, "x", target);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// MappedFile

TEST_CASE("MappedFile maps whole files, including empty ones", "[io][mapped_file]") {
  TempDir dir;
  write_bytes(dir / "a.bin", "hello");
  write_bytes(dir / "empty.bin", "");

  fd::io::MappedFile a(dir / "a.bin");
  REQUIRE(a.size() == 5);
  CHECK(std::memcmp(a.bytes().data(), "hello", 5) == 0);
  CHECK(a.path() == dir / "a.bin");

  fd::io::MappedFile e(dir / "empty.bin");
  CHECK(e.size() == 0);
  CHECK(e.bytes().empty());

  // Move-only RAII: the moved-to object owns the mapping, the moved-from one is empty.
  fd::io::MappedFile b(std::move(a));
  CHECK(b.size() == 5);
  CHECK(a.bytes().empty());  // NOLINT(bugprone-use-after-move): documented moved-from state
  fd::io::MappedFile c;
  c = std::move(b);
  CHECK(std::memcmp(c.bytes().data(), "hello", 5) == 0);
  static_assert(!std::is_copy_constructible_v<fd::io::MappedFile>);
}

TEST_CASE("MappedFile errors name the path and the system's reason", "[io][mapped_file][errors]") {
  TempDir dir;
  CHECK_FD_ERROR(fd::io::MappedFile(dir / "missing.bin"), Errc::kIo, (dir / "missing.bin").string(),
                 "No such file or directory");
  CHECK_FD_ERROR(fd::io::MappedFile(dir.path()), Errc::kIo, dir.path().string(), "not a regular file");
}

// ---------------------------------------------------------------------------------------------------
// Round trips

TEST_CASE("save_safetensors / SafeTensorsFile round trip every dtype", "[io][safetensors]") {
  TempDir dir;
  Cpu cpu;
  std::vector<float> const f32 = {0.0f, -1.5f, 3.25f, 1e-30f, -65504.0f, 7.0f};
  std::vector<double> const f64 = {1.0 / 3.0, -2.0, 1e300, 0.0};
  std::vector<std::int64_t> const i64 = {std::numeric_limits<std::int64_t>::min(), -1, 0, 1,
                                         std::numeric_limits<std::int64_t>::max(), 1234567890123};
  std::vector<std::int32_t> const i32 = {std::numeric_limits<std::int32_t>::min(), -7, 0, 42,
                                         std::numeric_limits<std::int32_t>::max(), 5};
  std::vector<std::uint8_t> const u8 = {0, 1, 127, 128, 254, 255};
  std::vector<std::uint16_t> const f16 = {0x3c00, 0xc000, 0x0001, 0x7bff, 0x8000, 0x3555};
  std::vector<std::uint16_t> const bf16 = {0x3f80, 0xc000, 0x0001, 0x7f7f, 0x8000, 0x3eab};

  std::vector<std::pair<std::string, T>> tensors = {
      {"f32", T::from_host(cpu, {2, 3}, f32)},       {"f64", T::from_host(cpu, {4}, f64)},
      {"i64", T::from_host(cpu, {3, 2}, i64)},       {"i32", T::from_host(cpu, {6}, i32)},
      {"u8", T::from_host(cpu, {1, 2, 3}, u8)},      {"f16", make_f16(cpu, {3, 2}, f16)},
      {"bf16", make_f16(cpu, {2, 3}, bf16, DType::kBF16)},
  };
  fs::path const p = dir / "all.safetensors";
  fd::io::save_safetensors<Cpu>(p, tensors);

  auto const f = fd::io::SafeTensorsFile::open(p);
  CHECK(f.path() == p);
  CHECK(f.size() == tensors.size());
  CHECK(f.names() == std::vector<std::string>{"bf16", "f16", "f32", "f64", "i32", "i64", "u8"});
  CHECK(f.metadata().empty());
  for (auto const& [name, t] : tensors) {
    INFO(name);
    REQUIRE(f.contains(name));
    fd::io::TensorInfo const& ti = f.info(name);
    CHECK(ti.name == name);
    CHECK(ti.dtype == t.dtype());
    CHECK(ti.shape == t.shape());
    CHECK(ti.nbytes() == t.nbytes());
    auto const b = f.bytes(name);
    REQUIRE(b.size() == t.nbytes());
    CHECK(std::memcmp(b.data(), t.raw(), b.size()) == 0);
    // Same-dtype load is a bit-exact copy.
    T const same = f.load(cpu, name, t.dtype());
    CHECK(same.dtype() == t.dtype());
    CHECK(same.shape() == t.shape());
    CHECK(std::memcmp(same.raw(), t.raw(), t.nbytes()) == 0);
  }
  // Default target is F32; the values convert as documented.
  CHECK(host_values<float>(f.load(cpu, "f32")) == f32);
  CHECK(host_values<float>(f.load(cpu, "u8")) == std::vector<float>{0, 1, 127, 128, 254, 255});
  CHECK(host_values<float>(f.load(cpu, "i32"))[3] == 42.0f);
  CHECK(host_values<float>(f.load(cpu, "f16")) ==
        std::vector<float>{1.0f, -2.0f, 0x1p-24f, 65504.0f, -0.0f, 0.333251953125f});
  CHECK(host_values<float>(f.load(cpu, "bf16"))[0] == 1.0f);
  CHECK(host_values<float>(f.load(cpu, "f64"))[0] == static_cast<float>(1.0 / 3.0));
  CHECK(f.load(cpu, "f32").shape() == Shape{2, 3});
  CHECK(!f.contains("nope"));
}

TEST_CASE("writer layout: sorted names, contiguous offsets, header padded with spaces to 8 bytes",
          "[io][safetensors][writer]") {
  TempDir dir;
  std::vector<float> a(3, 1.0f);
  std::vector<std::uint8_t> b(5, 7);
  std::vector<std::int64_t> c(1, 9);
  fd::io::SafeTensorsWriter w(dir / "layout.safetensors");
  w.add("zeta", DType::kF32, {3}, std::as_bytes(std::span(a)));
  w.add("alpha", DType::kU8, {5}, std::as_bytes(std::span(b)));
  w.add("mid", DType::kI64, {1, 1}, std::as_bytes(std::span(c)));
  w.set_metadata({{"format", "pt"}});
  CHECK(w.size() == 3);
  w.write();

  std::string const raw = read_bytes(dir / "layout.safetensors");
  REQUIRE(raw.size() >= 8);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(raw[static_cast<std::size_t>(i)]);
  CHECK(n % 8 == 0);
  CHECK(raw.size() == 8 + n + 12 + 5 + 8);
  std::string const header = raw.substr(8, n);
  CHECK(header == w.header());
  CHECK(header.front() == '{');
  auto const last = header.find_last_not_of(' ');
  CHECK(header[last] == '}');
  auto const j = nlohmann::json::parse(header);
  CHECK(j["alpha"]["data_offsets"] == nlohmann::json::array({0, 5}));
  CHECK(j["mid"]["data_offsets"] == nlohmann::json::array({5, 13}));
  CHECK(j["zeta"]["data_offsets"] == nlohmann::json::array({13, 25}));
  CHECK(j["mid"]["shape"] == nlohmann::json::array({1, 1}));
  CHECK(j["mid"]["dtype"] == "I64");
  CHECK(j["__metadata__"]["format"] == "pt");
  // Only the final file remains: the temporary one was renamed.
  int files = 0;
  for (auto const& e : fs::directory_iterator(dir.path())) {
    (void)e;
    ++files;
  }
  CHECK(files == 1);
}

TEST_CASE("metadata round trip (string to string, UTF-8)", "[io][safetensors]") {
  TempDir dir;
  Cpu cpu;
  std::map<std::string, std::string> const md = {
      {"format", "pt"}, {"empty", ""}, {"unicode", "caf\xc3\xa9 \xe2\x9c\x93"}, {"json-ish", "{\"a\": [1, 2]}"}};
  fd::io::save_safetensors<Cpu>(dir / "md.safetensors", {{"x", T::zeros(cpu, {2})}}, md);
  auto const f = fd::io::SafeTensorsFile::open(dir / "md.safetensors");
  CHECK(f.metadata() == md);

  // A file with no tensors at all, only metadata, is valid.
  fd::io::save_safetensors<Cpu>(dir / "only_md.safetensors", {}, md);
  auto const g = fd::io::SafeTensorsFile::open(dir / "only_md.safetensors");
  CHECK(g.size() == 0);
  CHECK(g.names().empty());
  CHECK(g.metadata() == md);
}

TEST_CASE("zero-size and rank-0 tensors", "[io][safetensors]") {
  TempDir dir;
  Cpu cpu;
  std::vector<float> const one = {2.5f};
  fd::io::save_safetensors<Cpu>(dir / "z.safetensors", {{"empty1", T::zeros(cpu, {0})},
                                                   {"empty3", T::zeros(cpu, {2, 0, 3}, DType::kF16)},
                                                   {"scalar", T::from_host(cpu, Shape{}, one.data())},
                                                   {"x", T::zeros(cpu, {4})}});
  auto const f = fd::io::SafeTensorsFile::open(dir / "z.safetensors");
  CHECK(f.info("empty1").nbytes() == 0);
  CHECK(f.info("empty3").shape == Shape{2, 0, 3});
  T const e = f.load(cpu, "empty3");
  CHECK(e.numel() == 0);
  CHECK(e.shape() == Shape{2, 0, 3});
  CHECK(f.bytes("empty1").empty());
  CHECK(f.check_finite("empty1"));
  T const s = f.load(cpu, "scalar");
  CHECK(s.rank() == 0);
  CHECK(host_values<float>(s) == one);

  // A zero-length range may point anywhere inside the buffer, even inside another tensor.
  std::string const data(8, '\0');
  auto const p = dir / "zin.safetensors";
  write_bytes(p, st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                          R"("b":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},)"
                          R"("c":{"dtype":"I64","shape":[3,0],"data_offsets":[8,8]}})",
                          data));
  auto const g = fd::io::SafeTensorsFile::open(p);
  CHECK(g.size() == 3);
  CHECK(g.load(cpu, "b").numel() == 0);
}

// ---------------------------------------------------------------------------------------------------
// Conversions

TEST_CASE("f16 -> f32 on load is exact: subnormals, extremes, inf, NaN", "[io][safetensors][dtype]") {
  TempDir dir;
  Cpu cpu;
  struct Case {
    std::uint16_t h;
    std::uint32_t f;
  };
  std::vector<Case> const cases = {
      {0x0000, 0x00000000},  // +0
      {0x8000, 0x80000000},  // -0
      {0x0001, 0x33800000},  // smallest subnormal 2^-24
      {0x8001, 0xb3800000},  // -2^-24
      {0x0200, 0x38000000},  // subnormal 2^-15
      {0x03ff, 0x387fc000},  // largest subnormal
      {0x0400, 0x38800000},  // smallest normal 2^-14
      {0x3c00, 0x3f800000},  // 1
      {0x3c01, 0x3f802000},  // 1 + 2^-10
      {0x3555, 0x3eaaa000},  // 0.333251953125
      {0x7bff, 0x477fe000},  // 65504 (max)
      {0xfbff, 0xc77fe000},  // -65504
      {0x7c00, 0x7f800000},  // +inf
      {0xfc00, 0xff800000},  // -inf
      {0x7e00, 0x7fc00000},  // quiet NaN
      {0x7c01, 0x7f802000},  // signalling NaN payload kept
  };
  std::vector<std::uint16_t> bits;
  for (auto const& c : cases) bits.push_back(c.h);
  fd::io::save_safetensors<Cpu>(dir / "h.safetensors",
                           {{"h", make_f16(cpu, {static_cast<std::int64_t>(bits.size())}, bits)}});
  auto const f = fd::io::SafeTensorsFile::open(dir / "h.safetensors");
  std::vector<float> const v = host_values<float>(f.load(cpu, "h", DType::kF32));
  for (std::size_t i = 0; i < cases.size(); ++i) {
    INFO("f16 0x" << std::hex << cases[i].h);
    CHECK(bits_of(v[i]) == cases[i].f);
  }
  // F64 target is exact too.
  std::vector<double> const d = host_values<double>(f.load(cpu, "h", DType::kF64));
  CHECK(d[2] == std::ldexp(1.0, -24));
  CHECK(d[10] == 65504.0);
  CHECK(std::isnan(d[14]));
  // BF16 target keeps inf/NaN and rounds 1 + 2^-10 to 1.
  std::vector<std::uint16_t> const b = host_bits16(f.load(cpu, "h", DType::kBF16));
  CHECK(b[7] == 0x3f80);
  CHECK(b[8] == 0x3f80);
  CHECK(b[12] == 0x7f80);
  CHECK(b[13] == 0xff80);
  CHECK((b[14] & 0x7fffu) > 0x7f80u);
}

TEST_CASE("f32 -> f16 on load rounds to nearest even, overflows to inf, keeps NaN", "[io][safetensors][dtype]") {
  TempDir dir;
  std::vector<float> const in = {
      1.0f,
      1.0f + 0x1p-11f,           // halfway between 1 and next: ties to even (1)
      1.0f + 3 * 0x1p-11f,       // halfway, rounds up to even 0x3c02
      1.0f + 0x1p-11f + 0x1p-20f,  // just above halfway
      65504.0f,
      65519.0f,  // below the overflow threshold: rounds to max
      65520.0f,  // rounds to inf
      -1e10f,
      0x1p-24f,               // smallest subnormal
      0x1p-25f,               // halfway to 0: ties to even (0)
      0x1p-25f * 1.0000001f,  // just above: rounds up to the smallest subnormal
      std::numeric_limits<float>::infinity(),
      std::numeric_limits<float>::quiet_NaN(),
      -0.0f,
  };
  std::vector<std::uint16_t> const want = {0x3c00, 0x3c00, 0x3c02, 0x3c01, 0x7bff, 0x7bff, 0x7c00,
                                           0xfc00, 0x0001, 0x0000, 0x0001, 0x7c00, 0x7e00, 0x8000};
  T const h = load_f32_as(dir, in, DType::kF16);
  CHECK(h.dtype() == DType::kF16);
  std::vector<std::uint16_t> const got = host_bits16(h);
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO("index " << i << " value " << in[i]);
    CHECK(got[i] == want[i]);
  }
}

TEST_CASE("bf16 conversions: exact widening, round-to-nearest-even narrowing", "[io][safetensors][dtype]") {
  TempDir dir;
  Cpu cpu;
  std::vector<float> const in = {
      1.0f,
      1.0f + 0x1p-8f,             // tie: rounds to even 0x3f80
      1.0f + 3 * 0x1p-8f,         // tie: rounds up to 0x3f82
      1.0f + 0x1p-8f + 0x1p-20f,  // above the tie: 0x3f81
      std::bit_cast<float>(0x3f80ffffu),  // just below the next tie: 0x3f81
      -2.0f,
      std::numeric_limits<float>::max(),  // rounds up to inf
      std::numeric_limits<float>::infinity(),
      std::numeric_limits<float>::quiet_NaN(),
  };
  std::vector<std::uint16_t> const want = {0x3f80, 0x3f80, 0x3f82, 0x3f81, 0x3f81, 0xc000, 0x7f80, 0x7f80};
  std::vector<std::uint16_t> const got = host_bits16(load_f32_as(dir, in, DType::kBF16));
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO("index " << i);
    CHECK(got[i] == want[i]);
  }
  CHECK((got[8] & 0x7f80u) == 0x7f80u);
  CHECK((got[8] & 0x007fu) != 0);  // still NaN

  // Widening BF16 -> F32 appends 16 zero bits.
  std::vector<std::uint16_t> const bits = {0x3f81, 0x0001, 0xff80, 0x7fc1};
  fd::io::save_safetensors<Cpu>(dir / "b.safetensors", {{"b", make_f16(cpu, {4}, bits, DType::kBF16)}});
  std::vector<float> const w = host_values<float>(fd::io::SafeTensorsFile::open(dir / "b.safetensors").load(cpu, "b"));
  for (std::size_t i = 0; i < bits.size(); ++i) {
    CHECK(bits_of(w[i]) == static_cast<std::uint32_t>(bits[i]) << 16);
  }
}

TEST_CASE("integer loads: between integer types with range checks, never from floats", "[io][safetensors][dtype]") {
  TempDir dir;
  Cpu cpu;
  std::vector<std::int64_t> const big = {0, 300, -5, std::int64_t{1} << 53};
  std::vector<std::int64_t> const small = {0, 1, 2, 255};
  std::vector<std::uint8_t> const u8 = {0, 200, 255};
  std::vector<float> const fl = {1.0f};
  fs::path const p = dir / "ints.safetensors";
  fd::io::save_safetensors<Cpu>(p, {{"big", T::from_host(cpu, {4}, big)},
                               {"small", T::from_host(cpu, {2, 2}, small)},
                               {"u8", T::from_host(cpu, {3}, u8)},
                               {"fl", T::from_host(cpu, {1}, fl)}});
  auto const f = fd::io::SafeTensorsFile::open(p);

  // The 2^53 element does not fit in I32.
  CHECK_FD_ERROR(f.load(cpu, "big", DType::kI32), Errc::kDTypeMismatch, p.string(), "'big'", "does not fit in I32",
                 "9007199254740992");
  CHECK_FD_ERROR(f.load(cpu, "big", DType::kU8), Errc::kDTypeMismatch, "'big'", "value 300", "U8");
  CHECK(host_values<std::uint8_t>(f.load(cpu, "small", DType::kU8)) == std::vector<std::uint8_t>{0, 1, 2, 255});
  CHECK(host_values<std::int32_t>(f.load(cpu, "small", DType::kI32)) == std::vector<std::int32_t>{0, 1, 2, 255});
  CHECK(host_values<std::int64_t>(f.load(cpu, "u8", DType::kI64)) == std::vector<std::int64_t>{0, 200, 255});
  CHECK(host_values<std::int32_t>(f.load(cpu, "u8", DType::kI32)) == std::vector<std::int32_t>{0, 200, 255});
  // Integers to floats; F64 keeps 2^53 exactly.
  CHECK(host_values<double>(f.load(cpu, "big", DType::kF64))[3] == 9007199254740992.0);
  CHECK(host_values<float>(f.load(cpu, "big"))[1] == 300.0f);
  CHECK(host_bits16(f.load(cpu, "u8", DType::kF16))[2] == fd::f32_to_f16(255.0f));
  // Floats never load as integers.
  CHECK_FD_ERROR(f.load(cpu, "fl", DType::kI64), Errc::kDTypeMismatch, p.string(), "'fl'", "cannot load F32 data as I64");
  CHECK_FD_ERROR(f.load(cpu, "fl", DType::kU8), Errc::kDTypeMismatch, "'fl'");
}

TEST_CASE("tensors at unaligned offsets load correctly", "[io][safetensors][dtype]") {
  TempDir dir;
  Cpu cpu;
  // An unpadded 3-byte-odd header and a 1-byte tensor first put the F32/F16/I64 data at odd addresses.
  std::string header = R"({"pad":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                             R"("f":{"dtype":"F32","shape":[3],"data_offsets":[1,13]},)"
                             R"("h":{"dtype":"F16","shape":[2],"data_offsets":[13,17]},)"
                             R"("i":{"dtype":"I64","shape":[1],"data_offsets":[17,25]}})";
  float const fv[3] = {1.5f, -2.0f, 1e-3f};
  std::uint16_t const hv[2] = {0x3c00, 0xc400};
  std::int64_t const iv = -123456789012;
  std::string data(25, '\0');
  data[0] = 'x';
  std::memcpy(data.data() + 1, fv, 12);
  std::memcpy(data.data() + 13, hv, 4);
  std::memcpy(data.data() + 17, &iv, 8);
  while ((8 + header.size() + 1) % 4 == 0) {
    header += ' ';
  }
  write_bytes(dir / "u.safetensors", st_bytes(header, data));
  auto const f = fd::io::SafeTensorsFile::open(dir / "u.safetensors");
  CHECK(reinterpret_cast<std::uintptr_t>(f.bytes("f").data()) % 4 != 0);
  CHECK(host_values<float>(f.load(cpu, "f")) == std::vector<float>{1.5f, -2.0f, 1e-3f});
  CHECK(host_values<double>(f.load(cpu, "f", DType::kF64))[2] == static_cast<double>(1e-3f));
  CHECK(host_bits16(f.load(cpu, "f", DType::kF16)) == std::vector<std::uint16_t>{0x3e00, 0xc000, fd::f32_to_f16(1e-3f)});
  CHECK(host_values<float>(f.load(cpu, "h")) == std::vector<float>{1.0f, -4.0f});
  CHECK(host_values<std::int64_t>(f.load(cpu, "i", DType::kI64))[0] == iv);
  CHECK(host_values<std::int32_t>(f.load(cpu, "pad", DType::kI32))[0] == 'x');
  CHECK(f.check_finite("f"));
}

TEST_CASE("large tensors convert across chunk boundaries", "[io][safetensors][dtype]") {
  TempDir dir;
  Cpu cpu;
  std::vector<float> v(40000);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) * 0.25f - 5000.0f;
  T const h = load_f32_as(dir, v, DType::kF16);
  std::vector<std::uint16_t> const bits = host_bits16(h);
  for (std::size_t i : {std::size_t{0}, std::size_t{16383}, std::size_t{16384}, std::size_t{32768}, std::size_t{39999}}) {
    CHECK(bits[i] == fd::f32_to_f16(v[i]));
  }
}

// ---------------------------------------------------------------------------------------------------
// Lookups and checks on valid files

TEST_CASE("load with an expected shape, missing tensors", "[io][safetensors][errors]") {
  TempDir dir;
  Cpu cpu;
  fs::path const p = dir / "s.safetensors";
  fd::io::save_safetensors<Cpu>(p, {{"w", T::zeros(cpu, {2, 3})}});
  auto const f = fd::io::SafeTensorsFile::open(p);
  CHECK(f.load(cpu, "w", Shape{2, 3}).shape() == Shape{2, 3});
  CHECK_FD_ERROR(f.load(cpu, "w", Shape{3, 2}), Errc::kShapeMismatch,
                 p.string() + ": tensor 'w': expected shape [3, 2], got [2, 3]");
  CHECK_FD_ERROR(f.load(cpu, "w", Shape{6}, DType::kF16), Errc::kShapeMismatch, "'w'", "[6]");
  CHECK_FD_ERROR(f.info("v"), Errc::kMissingTensor, p.string() + ": no tensor 'v'");
  CHECK_FD_ERROR(f.load(cpu, "v"), Errc::kMissingTensor, p.string() + ": no tensor 'v'");
  CHECK_FD_ERROR(f.bytes("v"), Errc::kMissingTensor, "'v'");
  CHECK_FD_ERROR(f.require_finite("v"), Errc::kMissingTensor, "'v'");
}

TEST_CASE("non-finite detection names the file, tensor and first bad index", "[io][safetensors][errors]") {
  TempDir dir;
  Cpu cpu;
  std::vector<float> x(12, 1.0f);
  x[5] = std::numeric_limits<float>::quiet_NaN();
  x[9] = std::numeric_limits<float>::infinity();
  std::vector<double> d = {0.0, -std::numeric_limits<double>::infinity()};
  std::vector<std::int64_t> const ints = {1, 2};
  fs::path const p = dir / "nf.safetensors";
  fd::io::save_safetensors<Cpu>(p, {{"x", T::from_host(cpu, {3, 4}, x)},
                               {"d", T::from_host(cpu, {2}, d)},
                               {"h", make_f16(cpu, {3}, {0x3c00, 0x0001, 0xfc00})},
                               {"b", make_f16(cpu, {2}, {0x3f80, 0x7fc0}, DType::kBF16)},
                               {"ok", make_f16(cpu, {2}, {0x7bff, 0x03ff})},
                               {"ints", T::from_host(cpu, {2}, ints)}});
  auto const f = fd::io::SafeTensorsFile::open(p);
  CHECK(f.first_non_finite("x") == std::optional<std::size_t>{5});
  CHECK_FALSE(f.check_finite("x"));
  CHECK_FD_ERROR(f.require_finite("x"), Errc::kNonFinite, p.string(), "tensor 'x'", "NaN", "index [1, 1]", "flat 5 of 12");
  CHECK_FD_ERROR(f.require_finite("d"), Errc::kNonFinite, "tensor 'd'", "-inf", "flat 1");
  CHECK_FD_ERROR(f.require_finite("h"), Errc::kNonFinite, "tensor 'h'", "-inf", "index [2]");
  CHECK_FD_ERROR(f.require_finite("b"), Errc::kNonFinite, "tensor 'b'", "NaN", "index [1]");
  CHECK(f.check_finite("ok"));
  CHECK_NOTHROW(f.require_finite("ok"));
  CHECK(f.check_finite("ints"));

  // The free function checks tensors already in memory (user inputs).
  T const t = T::from_host(cpu, {3, 4}, x);
  CHECK_FD_ERROR(fd::io::require_finite(cpu, t, "latents"), Errc::kNonFinite, "latents: non-finite value NaN",
                 "index [1, 1]");
  CHECK_FD_ERROR(fd::io::require_finite(cpu, t.permute({1, 0}), "latents^T"), Errc::kNonFinite, "latents^T", "index [1, 1]",
                 "flat 4");
  CHECK_NOTHROW(fd::io::require_finite(cpu, T::zeros(cpu, {4}), "zeros"));
}

// ---------------------------------------------------------------------------------------------------
// Malformed files: every case fails with kFormat (or the documented code) naming the file.

TEST_CASE("bad input: file too short for the length field", "[io][safetensors][errors]") {
  TempDir dir;
  CHECK_OPEN_ERROR(dir, std::string(), Errc::kFormat, "file is 0 bytes", "shorter than the 8-byte header length");
  CHECK_OPEN_ERROR(dir, std::string(7, '\0'), Errc::kFormat, "file is 7 bytes");
  CHECK_FD_ERROR(fd::io::SafeTensorsFile::open(dir / "none.safetensors"), Errc::kIo,
                 (dir / "none.safetensors").string(), "cannot open");
}

TEST_CASE("bad input: header length past the end of the file or absurdly large", "[io][safetensors][errors]") {
  TempDir dir;
  CHECK_OPEN_ERROR(dir, st_bytes("{}", "", 1000), Errc::kFormat, "header length 1000 runs past the end of the file",
                   "(2 bytes after the length field)");
  CHECK_OPEN_ERROR(dir, st_bytes("{}", "", std::numeric_limits<std::uint64_t>::max()), Errc::kFormat,
                   "header length 18446744073709551615 runs past the end");
  CHECK_OPEN_ERROR(dir, st_bytes("{}", "", std::uint64_t{1} << 63), Errc::kFormat, "runs past the end");
  // A header length inside the file but above the parser's limit: a sparse 101 MiB file.
  fs::path const p = dir / "huge.safetensors";
  write_bytes(p, u64le((std::uint64_t{100} << 20) + 8));
  fs::resize_file(p, std::uint64_t{101} << 20);
  CHECK_FD_ERROR(fd::io::SafeTensorsFile::open(p), Errc::kFormat, p.string(), "exceeds the 104857600-byte limit");
}

TEST_CASE("bad input: header is not a JSON object", "[io][safetensors][errors]") {
  TempDir dir;
  CHECK_OPEN_ERROR(dir, st_bytes("{\"a\": "), Errc::kFormat, ": header: not valid JSON");
  CHECK_OPEN_ERROR(dir, st_bytes("not json"), Errc::kFormat, "not valid JSON");
  CHECK_OPEN_ERROR(dir, st_bytes(""), Errc::kFormat, "not valid JSON");
  CHECK_OPEN_ERROR(dir, st_bytes(std::string("{}\0\0", 4)), Errc::kFormat, "not valid JSON (NUL byte at offset 2)");
  CHECK_OPEN_ERROR(dir, st_bytes(std::string("{}\0{\"a\":1}", 10)), Errc::kFormat, "NUL byte");
  CHECK_OPEN_ERROR(dir, st_bytes("{} {}"), Errc::kFormat, "not valid JSON");
  CHECK_OPEN_ERROR(dir, st_bytes("[1, 2]"), Errc::kFormat, "header is not a JSON object (it is array)");
  CHECK_OPEN_ERROR(dir, st_bytes("\"str\"  "), Errc::kFormat, "header is not a JSON object (it is string)");
  CHECK_OPEN_ERROR(dir, st_bytes("null"), Errc::kFormat, "not a JSON object");
  // Invalid UTF-8 inside a tensor name.
  CHECK_OPEN_ERROR(dir, st_bytes("{\"\xff\xfe\": {}}"), Errc::kFormat, "not valid JSON");
  // A header that is the empty object and spaces is valid: no tensors.
  write_bytes(dir / "empty_obj.safetensors", st_bytes("{}      "));
  CHECK(fd::io::SafeTensorsFile::open(dir / "empty_obj.safetensors").size() == 0);
}

TEST_CASE("bad input: duplicate tensor names in the header", "[io][safetensors][errors]") {
  TempDir dir;
  CHECK_OPEN_ERROR(dir,
                   st_bytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                            R"("a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                            "xy"),
                   Errc::kFormat, "lists 'a' more than once");
}

TEST_CASE("bad input: malformed tensor entries", "[io][safetensors][errors]") {
  TempDir dir;
  auto const entry = [](std::string const& body) { return st_bytes("{\"t.w\": " + body + "}", std::string(64, '\0')); };
  SECTION("entry not an object") {
    CHECK_OPEN_ERROR(dir, entry("5"), Errc::kFormat, "tensor 't.w': entry is not a JSON object (it is number)");
    CHECK_OPEN_ERROR(dir, entry("[]"), Errc::kFormat, "tensor 't.w'", "not a JSON object");
  }
  SECTION("dtype missing or not a string") {
    CHECK_OPEN_ERROR(dir, entry(R"({"shape":[1],"data_offsets":[0,4]})"), Errc::kFormat, "tensor 't.w': missing \"dtype\"");
    CHECK_OPEN_ERROR(dir, entry(R"({"dtype":4,"shape":[1],"data_offsets":[0,4]})"), Errc::kFormat,
                     "tensor 't.w': \"dtype\" is not a string");
  }
  SECTION("unknown dtype names the dtype and the tensor") {
    CHECK_OPEN_ERROR(dir, entry(R"({"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]})"), Errc::kFormat,
                     "tensor 't.w': unknown dtype 'F8_E4M3'");
    CHECK_OPEN_ERROR(dir, entry(R"({"dtype":"f32","shape":[1],"data_offsets":[0,4]})"), Errc::kFormat,
                     "tensor 't.w'", "unknown dtype 'f32'");
  }
  SECTION("shape missing, not an array, negative or non-integer entries") {
    CHECK_OPEN_ERROR(dir, entry(R"({"dtype":"F32","data_offsets":[0,4]})"), Errc::kFormat, "tensor 't.w': missing \"shape\"");
    CHECK_OPEN_ERROR(dir, entry(R"({"dtype":"F32","shape":4,"data_offsets":[0,16]})"), Errc::kFormat,
                     "tensor 't.w': \"shape\" is not an array");
    CHECK_OPEN_ERROR(dir, entry(R"({"dtype":"F32","shape":[2,-2],"data_offsets":[0,16]})"), Errc::kFormat,
                     "tensor 't.w': shape entry 1 is negative (-2)");
    CHECK_OPEN_ERROR(dir, entry(R"({"dtype":"F32","shape":[2.5],"data_offsets":[0,10]})"), Errc::kFormat,
                     "tensor 't.w': shape entry 0 is not an integer (2.5)");
    CHECK_OPEN_ERROR(dir, entry(R"({"dtype":"F32","shape":[4.0],"data_offsets":[0,16]})"), Errc::kFormat,
                     "shape entry 0 is not an integer");
    CHECK_OPEN_ERROR(dir, entry(R"({"dtype":"F32","shape":["4"],"data_offsets":[0,16]})"), Errc::kFormat,
                     "shape entry 0 is not a number (\"4\")");
    CHECK_OPEN_ERROR(dir, entry(R"({"dtype":"F32","shape":[null],"data_offsets":[0,16]})"), Errc::kFormat,
                     "shape entry 0 is not a number");
    CHECK_OPEN_ERROR(dir, entry(R"({"dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,1]})"), Errc::kFormat,
                     "tensor 't.w': shape entry 0 is too large");
    CHECK_OPEN_ERROR(dir, entry(R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]})"), Errc::kFormat,
                     "tensor 't.w': shape [4294967296, 4294967296] is too large to address");
  }
  SECTION("rank above the supported maximum") {
    CHECK_OPEN_ERROR(dir, entry(R"({"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]})"),
                     Errc::kUnsupported, "tensor 't.w': rank 9 is above fd's limit of 8");
  }
  SECTION("data_offsets missing or ill-typed") {
    CHECK_OPEN_ERROR(dir, entry(R"({"dtype":"F32","shape":[1]})"), Errc::kFormat, "tensor 't.w': missing \"data_offsets\"");
    CHECK_OPEN_ERROR(dir, entry(R"({"dtype":"F32","shape":[1],"data_offsets":[0]})"), Errc::kFormat,
                     "tensor 't.w': \"data_offsets\" is not an array of two integers");
    CHECK_OPEN_ERROR(dir, entry(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4,8]})"), Errc::kFormat,
                     "\"data_offsets\" is not an array of two integers");
    CHECK_OPEN_ERROR(dir, entry(R"({"dtype":"F32","shape":[1],"data_offsets":"0-4"})"), Errc::kFormat,
                     "\"data_offsets\" is not an array");
    CHECK_OPEN_ERROR(dir, entry(R"({"dtype":"F32","shape":[1],"data_offsets":[-4,0]})"), Errc::kFormat,
                     "tensor 't.w': data_offsets begin is negative (-4)");
    CHECK_OPEN_ERROR(dir, entry(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4.5]})"), Errc::kFormat,
                     "tensor 't.w': data_offsets end is not an integer (4.5)");
  }
  SECTION("begin after end") {
    CHECK_OPEN_ERROR(dir, entry(R"({"dtype":"F32","shape":[1],"data_offsets":[8,4]})"), Errc::kFormat,
                     "tensor 't.w': data_offsets [8, 4] begin after end");
  }
  SECTION("end past the end of the data buffer") {
    CHECK_OPEN_ERROR(dir, entry(R"({"dtype":"F32","shape":[2],"data_offsets":[60,68]})"), Errc::kFormat,
                     "tensor 't.w': data_offsets [60, 68] out of range: the data buffer holds 64 bytes");
    CHECK_OPEN_ERROR(dir, entry(R"({"dtype":"U8","shape":[0],"data_offsets":[65,65]})"), Errc::kFormat, "out of range");
    CHECK_OPEN_ERROR(dir, entry(R"({"dtype":"U8","shape":[1],"data_offsets":[0,18446744073709551615]})"), Errc::kFormat,
                     "out of range");
  }
  SECTION("byte length differs from numel * element size") {
    CHECK_OPEN_ERROR(dir, entry(R"({"dtype":"F32","shape":[2,3],"data_offsets":[0,20]})"), Errc::kFormat,
                     "tensor 't.w': data_offsets [0, 20] span 20 bytes but shape [2, 3] of F32 needs 24");
    CHECK_OPEN_ERROR(dir, entry(R"({"dtype":"BF16","shape":[],"data_offsets":[0,4]})"), Errc::kFormat,
                     "span 4 bytes but shape [] of BF16 needs 2");
    CHECK_OPEN_ERROR(dir, entry(R"({"dtype":"I64","shape":[0],"data_offsets":[0,8]})"), Errc::kFormat, "needs 0");
  }
  SECTION("extra keys in an entry are ignored") {
    write_bytes(dir / "extra.safetensors", entry(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4],"note":"x"})"));
    CHECK(fd::io::SafeTensorsFile::open(dir / "extra.safetensors").info("t.w").nbytes() == 4);
  }
}

TEST_CASE("bad input: overlapping tensors name both tensors", "[io][safetensors][errors]") {
  TempDir dir;
  std::string const data(32, '\0');
  CHECK_OPEN_ERROR(dir,
                   st_bytes(R"({"first":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                            R"("second":{"dtype":"F32","shape":[4],"data_offsets":[12,28]}})",
                            data),
                   Errc::kFormat, "tensors 'first' [0, 16] and 'second' [12, 28] overlap");
  // Identical ranges.
  CHECK_OPEN_ERROR(dir,
                   st_bytes(R"({"a":{"dtype":"I32","shape":[2],"data_offsets":[8,16]},)"
                            R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                            data),
                   Errc::kFormat, "'a' [8, 16] and 'b' [8, 16] overlap");
  // A range nested in an earlier long one is caught even when it does not overlap its neighbour.
  CHECK_OPEN_ERROR(dir,
                   st_bytes(R"({"long":{"dtype":"U8","shape":[32],"data_offsets":[0,32]},)"
                            R"("x":{"dtype":"U8","shape":[4],"data_offsets":[20,24]},)"
                            R"("y":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})",
                            data),
                   Errc::kFormat, "'long' [0, 32] and 'y' [2, 6] overlap");
  // Adjacent ranges and gaps are fine.
  write_bytes(dir / "ok.safetensors", st_bytes(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                                               R"("b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]},)"
                                               R"("c":{"dtype":"U8","shape":[4],"data_offsets":[20,24]}})",
                                               data));
  CHECK(fd::io::SafeTensorsFile::open(dir / "ok.safetensors").size() == 3);
}

TEST_CASE("bad input: __metadata__ must map strings to strings", "[io][safetensors][errors]") {
  TempDir dir;
  CHECK_OPEN_ERROR(dir, st_bytes(R"({"__metadata__":{"format":"pt","steps":50}})"), Errc::kFormat,
                   "__metadata__ value for key 'steps' is not a string (it is 50)");
  CHECK_OPEN_ERROR(dir, st_bytes(R"({"__metadata__":{"nested":{"a":"b"}}})"), Errc::kFormat, "key 'nested'");
  CHECK_OPEN_ERROR(dir, st_bytes(R"({"__metadata__":["format","pt"]})"), Errc::kFormat,
                   "__metadata__ is not a JSON object (it is array)");
  CHECK_OPEN_ERROR(dir, st_bytes(R"({"__metadata__":null})"), Errc::kFormat, "__metadata__ is not a JSON object");
}

// ---------------------------------------------------------------------------------------------------
// Writer errors and atomicity

TEST_CASE("writer rejects duplicate, reserved, empty and non-UTF-8 names and wrong sizes", "[io][safetensors][writer][errors]") {
  TempDir dir;
  Cpu cpu;
  fs::path const p = dir / "w.safetensors";
  CHECK_FD_ERROR(fd::io::save_safetensors<Cpu>(p, {{"a", T::zeros(cpu, {1})}, {"a", T::zeros(cpu, {2})}}),
                 Errc::kInvalidArgument, p.string(), "tensor 'a': duplicate tensor name");
  CHECK_FALSE(fs::exists(p));
  CHECK_FD_ERROR(fd::io::save_safetensors<Cpu>(p, {{"__metadata__", T::zeros(cpu, {1})}}), Errc::kInvalidArgument,
                 "'__metadata__'", "reserved");
  CHECK_FD_ERROR(fd::io::save_safetensors<Cpu>(p, {{"", T::zeros(cpu, {1})}}), Errc::kInvalidArgument, p.string(),
                 "empty tensor name");
  CHECK_FD_ERROR(fd::io::save_safetensors<Cpu>(p, {{"bad\xc3", T::zeros(cpu, {1})}}), Errc::kInvalidArgument,
                 "not valid UTF-8");
  CHECK_FD_ERROR(fd::io::save_safetensors<Cpu>(p, {{"undef", T{}}}), Errc::kInvalidArgument, "tensor 'undef'", "undefined");
  CHECK_FD_ERROR(fd::io::save_safetensors<Cpu>(p, {{"x", T::zeros(cpu, {1})}}, {{"k", "\xed\xa0\x80"}}),
                 Errc::kInvalidArgument, "metadata key 'k'", "UTF-8");
  CHECK_FALSE(fs::exists(p));

  std::vector<float> v(4);
  fd::io::SafeTensorsWriter w(p);
  CHECK_FD_ERROR(w.add("x", DType::kF32, {5}, std::as_bytes(std::span(v))), Errc::kInvalidArgument,
                 p.string() + ": tensor 'x': 16 bytes given, shape [5] of F32 needs 20");
  CHECK_FD_ERROR(w.add("x", DType::kF32, {-1, -4}, std::as_bytes(std::span(v))), Errc::kInvalidArgument,
                 "tensor 'x': negative extent");
  w.add("x", DType::kF16, {2, 4}, std::as_bytes(std::span(v)));
  CHECK_FD_ERROR(w.add("x", DType::kF32, {4}, std::as_bytes(std::span(v))), Errc::kInvalidArgument, "duplicate");
  CHECK(w.size() == 1);

  // UTF-8 names round-trip.
  fd::io::save_safetensors<Cpu>(p, {{"caf\xc3\xa9.w", T::zeros(cpu, {1})}});
  CHECK(fd::io::SafeTensorsFile::open(p).contains("caf\xc3\xa9.w"));
}

TEST_CASE("writer failures throw kIo naming the path and leave no temporary file", "[io][safetensors][writer][errors]") {
  TempDir dir;
  Cpu cpu;
  std::vector<std::pair<std::string, T>> const one = {{"x", T::zeros(cpu, {4})}};
  fs::path const missing_dir = dir / "no_such_dir" / "w.safetensors";
  CHECK_FD_ERROR(fd::io::save_safetensors<Cpu>(missing_dir, one), Errc::kIo, missing_dir.string(),
                 "cannot create temporary file", "No such file or directory");

  // The rename fails when the target is a non-empty directory; the temporary file must be cleaned up.
  fs::path const target = dir / "is_a_dir";
  fs::create_directories(target / "child");
  CHECK_FD_ERROR(fd::io::save_safetensors<Cpu>(target, one), Errc::kIo, target.string(), "cannot rename");
  int entries = 0;
  for (auto const& e : fs::directory_iterator(dir.path())) {
    INFO(e.path().string());
    CHECK(e.path().filename().string().find(".tmp.") == std::string::npos);
    ++entries;
  }
  CHECK(entries == 1);

  // Overwriting an existing file replaces it whole.
  fs::path const p = dir / "over.safetensors";
  write_bytes(p, "old contents that are not safetensors");
  fd::io::save_safetensors<Cpu>(p, one, {{"v", "2"}});
  CHECK(fd::io::SafeTensorsFile::open(p).metadata().at("v") == "2");
}

TEST_CASE("save_safetensors stores strided views row-major; backend overload", "[io][safetensors][writer]") {
  TempDir dir;
  Cpu cpu;
  std::vector<float> const v = {0, 1, 2, 3, 4, 5};
  T const m = T::from_host(cpu, {2, 3}, v);
  T const mt = m.permute({1, 0});  // [3, 2]: 0 3 / 1 4 / 2 5
  T const col = m.slice(1, 1, 2);  // [2, 1]: 1 / 4
  REQUIRE_FALSE(mt.is_contiguous());
  fd::io::save_safetensors<Cpu>(dir / "v.safetensors", {{"mt", mt}, {"col", col}, {"row", m.select(0, 1)}});
  auto const f = fd::io::SafeTensorsFile::open(dir / "v.safetensors");
  CHECK(f.info("mt").shape == Shape{3, 2});
  CHECK(host_values<float>(f.load(cpu, "mt")) == std::vector<float>{0, 3, 1, 4, 2, 5});
  CHECK(host_values<float>(f.load(cpu, "col")) == std::vector<float>{1, 4});
  CHECK(host_values<float>(f.load(cpu, "row")) == std::vector<float>{3, 4, 5});

  fd::io::save_safetensors(cpu, dir / "b.safetensors", {{"mt", mt}}, {{"k", "v"}});
  auto const g = fd::io::SafeTensorsFile::open(dir / "b.safetensors");
  CHECK(host_values<float>(g.load(cpu, "mt")) == std::vector<float>{0, 3, 1, 4, 2, 5});
  CHECK(g.metadata().at("k") == "v");
}

TEST_CASE("concurrent loads from one SafeTensorsFile", "[io][safetensors]") {
  TempDir dir;
  Cpu cpu;
  auto const name_of = [](int i) { return std::string("t").append(std::to_string(i)); };
  std::vector<std::pair<std::string, T>> ts;
  for (int i = 0; i < 16; ++i) {
    std::vector<float> v(1000, static_cast<float>(i));
    ts.emplace_back(name_of(i), T::from_host(cpu, {1000}, v));
  }
  fd::io::save_safetensors<Cpu>(dir / "c.safetensors", ts);
  auto const f = fd::io::SafeTensorsFile::open(dir / "c.safetensors");
  std::vector<int> ok(16, 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&, i] {
      T const t = f.load(cpu, name_of(i), DType::kF16);
      std::vector<std::uint16_t> const b = host_bits16(t);
      ok[static_cast<std::size_t>(i)] = b.front() == fd::f32_to_f16(static_cast<float>(i)) && b.back() == b.front();
    });
  }
  for (auto& t : threads) t.join();
  CHECK(ok == std::vector<int>(16, 1));
}

// ---------------------------------------------------------------------------------------------------
// Real fixtures

TEST_CASE("fixture: clip_text_tiny/model.safetensors (F16 weights, I64 position_ids)", "[io][safetensors][fixtures]") {
  Cpu cpu;
  fs::path const p = FD_FIXTURES_DIR "/clip_text_tiny/model.safetensors";
  auto const f = fd::io::SafeTensorsFile::open(p);
  CHECK(f.size() == 37);
  CHECK(f.metadata().at("format") == "pt");
  for (std::string const& name : f.names()) {
    INFO(name);
    if (name == "text_model.embeddings.position_ids") {
      CHECK(f.info(name).dtype == DType::kI64);
    } else {
      CHECK(f.info(name).dtype == DType::kF16);
      CHECK(f.check_finite(name));
    }
  }
  T const ids = f.load(cpu, "text_model.embeddings.position_ids", Shape{1, 77}, DType::kI64);
  std::vector<std::int64_t> const iv = host_values<std::int64_t>(ids);
  for (std::size_t i = 0; i < iv.size(); ++i) {
    CHECK(iv[i] == static_cast<std::int64_t>(i));
  }
  T const pe = f.load(cpu, "text_model.embeddings.position_embedding.weight", Shape{77, 32});
  std::vector<float> const pv = host_values<float>(pe);
  CHECK(pv[0] == -0.0108795166015625f);
  CHECK(pv[1] == 0.1199951171875f);
  CHECK(pv[3] == 0.038818359375f);
  CHECK(f.info("text_model.embeddings.token_embedding.weight").shape == Shape{49408, 32});
  CHECK(f.info("text_model.final_layer_norm.weight").shape == Shape{32});
}
