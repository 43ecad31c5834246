#pragma once
/// @file
/// Reading and writing safetensors files.
///
/// Layout: an 8-byte little-endian length N, N bytes of UTF-8 JSON describing every tensor
/// ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {string: string}}), then the
/// data buffer; offsets count from the first byte after the header, data is row-major little-endian.
///
/// Reading is strict: every offset, length and type is checked before any tensor is handed out, so a
/// truncated or hostile file fails with an fd::error naming the file (and the tensor) instead of reading
/// out of bounds. See docs/errors.md for the messages.

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "fd/backend/traits.hpp"
#include "fd/core/dtype.hpp"
#include "fd/core/shape.hpp"
#include "fd/core/tensor.hpp"
#include "fd/error.hpp"
#include "fd/io/mapped_file.hpp"

namespace fd::io {

static_assert(std::endian::native == std::endian::little,
              "fd::io reads and writes safetensors data in host byte order, which must be little-endian");

/// Where one tensor lives in a safetensors file.
struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  /// Byte range [begin, end) relative to the start of the data buffer.
  std::size_t begin = 0;
  std::size_t end = 0;

  std::size_t nbytes() const noexcept { return end - begin; }
  std::int64_t numel() const noexcept { return shape.numel(); }
};

namespace detail {

/// Headers above this are rejected before parsing: real checkpoints stay far below (a 1000-tensor
/// header is ~100 KB), and it bounds the memory a hostile length field can make the parser use.
inline constexpr std::uint64_t kMaxHeaderBytes = std::uint64_t{100} << 20;

inline std::string quoted(std::string_view s) {
  // Appended piecewise: `"'" + std::string(s)` trips a GCC 12 -Wrestrict false positive.
  std::string out;
  out.reserve(s.size() + 2);
  out += '\'';
  out += s;
  out += '\'';
  return out;
}

inline std::string tensor_context(std::filesystem::path const& file, std::string_view tensor) {
  return file.string() + ": tensor " + quoted(tensor);
}

/// Strict UTF-8 check (no overlong forms, no surrogates, at most U+10FFFF).
inline bool is_valid_utf8(std::string_view s) noexcept {
  std::size_t i = 0;
  while (i < s.size()) {
    auto const c = static_cast<unsigned char>(s[i]);
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1fu;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0fu;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07u;
    } else {
      return false;
    }
    if (i + len > s.size()) {
      return false;
    }
    for (std::size_t k = 1; k < len; ++k) {
      auto const cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) {
        return false;
      }
      cp = (cp << 6) | (cc & 0x3fu);
    }
    constexpr std::uint32_t min_for_len[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_for_len[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += len;
  }
  return true;
}

/// Parses JSON text, failing with kFormat prefixed by `context`. When `duplicate_key` is given it
/// receives the first key repeated in the top-level object (nlohmann keeps only the last one, which
/// would silently hide a tensor).
inline nlohmann::json parse_json(std::string_view text, std::string const& context,
                                 std::string* duplicate_key = nullptr) {
  // nlohmann stops at a NUL byte as if the input ended there, which would silently accept anything after it.
  if (auto const nul = text.find('\0'); nul != std::string_view::npos) {
    fail(Errc::kFormat, context + ": not valid JSON (NUL byte at offset " + std::to_string(nul) + ")");
  }
  std::set<std::string, std::less<>> seen;
  nlohmann::json::parser_callback_t cb = nullptr;
  if (duplicate_key != nullptr) {
    cb = [&seen, duplicate_key](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
      if (event == nlohmann::json::parse_event_t::key && depth == 1 && parsed.is_string()) {
        auto const& k = parsed.get_ref<std::string const&>();
        if (!seen.insert(k).second && duplicate_key->empty()) {
          *duplicate_key = k;
        }
      }
      return true;
    };
  }
#if defined(FD_NO_EXCEPTIONS)
  nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), cb, false);
  if (j.is_discarded()) {
    fail(Errc::kFormat, context + ": not valid JSON");
  }
  return j;
#else
  try {
    return nlohmann::json::parse(text.begin(), text.end(), cb, true);
  } catch (nlohmann::json::exception const& e) {
    fail(Errc::kFormat, context + ": not valid JSON (" + e.what() + ")");
  }
#endif
}

/// A JSON value as a non-negative integer, or nullopt.
inline std::optional<std::uint64_t> as_index(nlohmann::json const& v) {
  if (v.is_number_unsigned()) {
    return v.get<std::uint64_t>();
  }
  if (v.is_number_integer()) {
    std::int64_t const s = v.get<std::int64_t>();
    if (s >= 0) {
      return static_cast<std::uint64_t>(s);
    }
  }
  return std::nullopt;
}

/// Why as_index rejected v, for messages.
inline std::string bad_index_reason(nlohmann::json const& v) {
  if (v.is_number_integer()) {
    return "is negative (" + v.dump() + ")";
  }
  if (v.is_number()) {
    return "is not an integer (" + v.dump() + ")";
  }
  return "is not a number (" + v.dump() + ")";
}

inline std::string index_str(Shape const& shape, std::size_t flat) {
  Shape idx = shape;
  for (int i = shape.rank() - 1; i >= 0; --i) {
    auto const extent = static_cast<std::size_t>(shape[i]);
    idx[i] = static_cast<std::int64_t>(flat % extent);
    flat /= extent;
  }
  return idx.str();
}

template <class T>
T load_unaligned(std::byte const* p) noexcept {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

/// Index of the first NaN or infinity in `data` (n elements of dtype), or nullopt. Integer dtypes are
/// always finite. Reads through memcpy, so `data` need not be aligned.
inline std::optional<std::size_t> find_non_finite(DType dtype, std::span<std::byte const> data) {
  std::size_t const es = size_of(dtype);
  std::size_t const n = data.size() / es;
  std::byte const* p = data.data();
  switch (dtype) {
    case DType::kF16:
      for (std::size_t i = 0; i < n; ++i) {
        if ((load_unaligned<std::uint16_t>(p + i * es) & 0x7c00u) == 0x7c00u) return i;
      }
      return std::nullopt;
    case DType::kBF16:
      for (std::size_t i = 0; i < n; ++i) {
        if ((load_unaligned<std::uint16_t>(p + i * es) & 0x7f80u) == 0x7f80u) return i;
      }
      return std::nullopt;
    case DType::kF32:
      for (std::size_t i = 0; i < n; ++i) {
        if (!std::isfinite(load_unaligned<float>(p + i * es))) return i;
      }
      return std::nullopt;
    case DType::kF64:
      for (std::size_t i = 0; i < n; ++i) {
        if (!std::isfinite(load_unaligned<double>(p + i * es))) return i;
      }
      return std::nullopt;
    default:
      return std::nullopt;
  }
}

inline std::string describe_value(DType dtype, std::byte const* p) {
  float v = 0.0f;
  switch (dtype) {
    case DType::kF16: v = f16_to_f32(load_unaligned<std::uint16_t>(p)); break;
    case DType::kBF16: v = bf16_to_f32(load_unaligned<std::uint16_t>(p)); break;
    case DType::kF32: v = load_unaligned<float>(p); break;
    case DType::kF64: v = static_cast<float>(load_unaligned<double>(p)); break;
    default: return "?";
  }
  if (std::isnan(v)) return "NaN";
  return v > 0 ? "+inf" : "-inf";
}

/// Throws kNonFinite "<what>: non-finite value NaN at index [..] (flat i of n)" if data holds NaN/inf.
inline void require_finite_bytes(DType dtype, Shape const& shape, std::span<std::byte const> data,
                                 std::string const& what) {
  if (auto i = find_non_finite(dtype, data)) {
    fail(Errc::kNonFinite, what + ": non-finite value " + describe_value(dtype, data.data() + *i * size_of(dtype)) +
                               " at index " + index_str(shape, *i) + " (flat " + std::to_string(*i) + " of " +
                               std::to_string(data.size() / size_of(dtype)) + ")");
  }
}

inline bool is_integer(DType t) noexcept { return !is_floating(t); }

inline std::int64_t read_int(DType t, std::byte const* p) noexcept {
  switch (t) {
    case DType::kI64: return load_unaligned<std::int64_t>(p);
    case DType::kI32: return load_unaligned<std::int32_t>(p);
    case DType::kU8: return load_unaligned<std::uint8_t>(p);
    default: return 0;
  }
}

/// Whether `to` can hold data of `from` when loading: floats from anything, integers from integers.
inline bool loadable_as(DType from, DType to) noexcept { return is_floating(to) || is_integer(from); }

/// Converts n elements from src (dtype `from`, any alignment) to dst (dtype `to`, aligned for `to`).
/// @pre loadable_as(from, to)
inline void convert_elements(DType from, std::byte const* src, DType to, std::byte* dst, std::size_t n,
                             std::string const& who) {
  std::size_t const ses = size_of(from);
  std::size_t const des = size_of(to);
  if (from == to) {
    std::memcpy(dst, src, n * ses);
    return;
  }
  if (is_integer(to)) {
    std::int64_t lo = 0;
    std::int64_t hi = 0;
    switch (to) {
      case DType::kI64: lo = std::numeric_limits<std::int64_t>::min(); hi = std::numeric_limits<std::int64_t>::max(); break;
      case DType::kI32: lo = std::numeric_limits<std::int32_t>::min(); hi = std::numeric_limits<std::int32_t>::max(); break;
      default: lo = 0; hi = 255; break;
    }
    for (std::size_t i = 0; i < n; ++i) {
      std::int64_t const v = read_int(from, src + i * ses);
      if (v < lo || v > hi) {
        fail(Errc::kDTypeMismatch, who + ": value " + std::to_string(v) + " at flat index " + std::to_string(i) +
                                       " does not fit in " + std::string(dtype_name(to)));
      }
      if (to == DType::kI64) {
        std::memcpy(dst + i * des, &v, des);
      } else if (to == DType::kI32) {
        auto const w = static_cast<std::int32_t>(v);
        std::memcpy(dst + i * des, &w, des);
      } else {
        auto const w = static_cast<std::uint8_t>(v);
        std::memcpy(dst + i * des, &w, des);
      }
    }
    return;
  }
  // Floating target. The source is staged through an aligned buffer first because convert_to_f32 reads
  // through typed pointers and mapped tensors may sit at any byte offset.
  constexpr std::size_t kChunk = 16384;
  std::vector<std::uint64_t> stage(kChunk);
  std::vector<float> f32(kChunk);
  for (std::size_t off = 0; off < n; off += kChunk) {
    std::size_t const m = std::min(kChunk, n - off);
    std::memcpy(stage.data(), src + off * ses, m * ses);
    std::byte* out = dst + off * des;
    if (to == DType::kF64) {
      auto* d = reinterpret_cast<double*>(out);
      if (is_integer(from)) {
        // Straight to double: going through float would round integers above 2^24.
        auto const* s = reinterpret_cast<std::byte const*>(stage.data());
        for (std::size_t i = 0; i < m; ++i) d[i] = static_cast<double>(read_int(from, s + i * ses));
      } else {
        convert_to_f32(from, stage.data(), f32.data(), m);  // exact for f16/bf16/f32 sources
        for (std::size_t i = 0; i < m; ++i) d[i] = f32[i];
      }
    } else if (to == DType::kF32) {
      convert_to_f32(from, stage.data(), reinterpret_cast<float*>(out), m);
    } else {
      convert_to_f32(from, stage.data(), f32.data(), m);
      convert_from_f32(f32.data(), to, out, m);
    }
  }
}

/// Creates a tensor of dtype `target` on `be` holding the values of `src` (described by `ti`).
template <backend::Backend B>
Tensor<B> load_tensor(B const& be, TensorInfo const& ti, std::span<std::byte const> src, DType target,
                      std::string const& who) {
  if (!loadable_as(ti.dtype, target)) {
    fail(Errc::kDTypeMismatch, who + ": cannot load " + std::string(dtype_name(ti.dtype)) + " data as " +
                                   std::string(dtype_name(target)) + " (integer targets need integer data)");
  }
  Tensor<B> t = Tensor<B>::empty(be, ti.shape, target);
  auto const n = static_cast<std::size_t>(ti.shape.numel());
  if (n == 0) {
    return t;
  }
  if (ti.dtype == target) {
    be.copy_from_host(t.raw(), src.data(), src.size());
  } else if constexpr (backend::HostBackend<B>) {
    convert_elements(ti.dtype, src.data(), target, t.raw(), n, who);
  } else {
    std::vector<std::byte> host(t.nbytes());
    convert_elements(ti.dtype, src.data(), target, host.data(), n, who);
    be.copy_from_host(t.raw(), host.data(), host.size());
  }
  return t;
}

inline void require_shape(TensorInfo const& ti, Shape const& expected, std::string const& who) {
  if (!(ti.shape == expected)) {
    fail(Errc::kShapeMismatch, who + ": expected shape " + expected.str() + ", got " + ti.shape.str());
  }
}

}  // namespace detail

/// Throws kNonFinite, naming `what` and the first offending index, if `t` holds NaN or infinity.
/// Use it on user-supplied inputs (latents, embeddings) before a long run.
template <backend::Backend B>
void require_finite(B const& be, Tensor<B> const& t, std::string const& what) {
  if (!is_floating(t.dtype()) || t.numel() == 0) {
    return;
  }
  Tensor<B> const c = t.contiguous(be);
  std::vector<std::byte> host(c.nbytes());
  be.copy_to_host(host.data(), c.raw(), host.size());
  detail::require_finite_bytes(t.dtype(), t.shape(), host, what);
}

/// A safetensors file, validated and memory-mapped. Immutable after open(): every const member may be
/// called from several threads at once.
/// @code
///   auto f = fd::io::SafeTensorsFile::open("model.safetensors");
///   auto w = f.load(cpu, "conv_in.weight", fd::Shape{32, 4, 3, 3});   // any stored dtype -> F32
/// @endcode
class SafeTensorsFile {
 public:
  /// Maps and validates `path`. Throws kIo if it cannot be read, kFormat if it is not a well-formed
  /// safetensors file, kUnsupported for a tensor of rank above Shape::kMaxRank.
  /// @post every tensor's byte range lies inside the file and no two non-empty tensors overlap.
  static SafeTensorsFile open(std::filesystem::path path) {
    return SafeTensorsFile(MappedFile(std::move(path)));
  }

  std::filesystem::path const& path() const noexcept { return file_.path(); }

  /// Tensor names in sorted order.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    out.reserve(tensors_.size());
    for (auto const& [name, ti] : tensors_) out.push_back(name);
    return out;
  }

  /// Number of tensors.
  std::size_t size() const noexcept { return tensors_.size(); }

  bool contains(std::string_view name) const { return tensors_.find(name) != tensors_.end(); }

  /// Throws kMissingTensor "<file>: no tensor '<name>'" if absent.
  TensorInfo const& info(std::string_view name) const {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) {
      fail(Errc::kMissingTensor, path().string() + ": no tensor " + detail::quoted(name));
    }
    return it->second;
  }

  /// The stored bytes of a tensor (little-endian, row-major, any alignment).
  std::span<std::byte const> bytes(std::string_view name) const { return bytes(info(name)); }

  /// The "__metadata__" entries (empty if the file has none).
  std::map<std::string, std::string> const& metadata() const noexcept { return metadata_; }

  /// Loads a tensor onto `be`, converting it to `target`: floating targets accept every stored dtype
  /// (through float32, exact for f16/bf16 sources); integer targets accept integer data only
  /// (kDTypeMismatch otherwise, or if a value does not fit).
  template <backend::Backend B>
  Tensor<B> load(B const& be, std::string_view name, DType target = DType::kF32) const {
    TensorInfo const& ti = info(name);
    return detail::load_tensor(be, ti, bytes(ti), target, detail::tensor_context(path(), name));
  }

  /// As load(), after checking the stored shape: kShapeMismatch
  /// "<file>: tensor '<name>': expected shape [..], got [..]".
  template <backend::Backend B>
  Tensor<B> load(B const& be, std::string_view name, Shape const& expected, DType target = DType::kF32) const {
    TensorInfo const& ti = info(name);
    std::string const who = detail::tensor_context(path(), name);
    detail::require_shape(ti, expected, who);
    return detail::load_tensor(be, ti, bytes(ti), target, who);
  }

  /// Flat index of the first NaN/infinity in a tensor, or nullopt (always nullopt for integer dtypes).
  std::optional<std::size_t> first_non_finite(std::string_view name) const {
    TensorInfo const& ti = info(name);
    return detail::find_non_finite(ti.dtype, bytes(ti));
  }

  /// True if the tensor holds no NaN or infinity.
  bool check_finite(std::string_view name) const { return !first_non_finite(name).has_value(); }

  /// Throws kNonFinite "<file>: tensor '<name>': non-finite value NaN at index [..] (flat i of n)".
  void require_finite(std::string_view name) const {
    TensorInfo const& ti = info(name);
    detail::require_finite_bytes(ti.dtype, ti.shape, bytes(ti), detail::tensor_context(path(), name));
  }

 private:
  explicit SafeTensorsFile(MappedFile file) : file_(std::move(file)) { parse(); }

  std::span<std::byte const> bytes(TensorInfo const& ti) const {
    return file_.bytes().subspan(data_start_ + ti.begin, ti.nbytes());
  }

  [[noreturn]] void bad(std::string const& what) const { fail(Errc::kFormat, path().string() + ": " + what); }
  [[noreturn]] void bad_tensor(std::string_view name, std::string const& what) const {
    fail(Errc::kFormat, detail::tensor_context(path(), name) + ": " + what);
  }

  void parse() {
    std::span<std::byte const> const all = file_.bytes();
    if (all.size() < 8) {
      bad("file is " + std::to_string(all.size()) + " bytes, shorter than the 8-byte header length");
    }
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) {
      n = (n << 8) | static_cast<std::uint64_t>(all[static_cast<std::size_t>(i)]);
    }
    std::uint64_t const available = all.size() - 8;
    if (n > available) {
      bad("header length " + std::to_string(n) + " runs past the end of the file (" + std::to_string(available) +
          " bytes after the length field)");
    }
    if (n > detail::kMaxHeaderBytes) {
      bad("header length " + std::to_string(n) + " exceeds the " + std::to_string(detail::kMaxHeaderBytes) +
          "-byte limit");
    }
    data_start_ = 8 + static_cast<std::size_t>(n);
    std::size_t const data_size = all.size() - data_start_;

    std::string_view const text(reinterpret_cast<char const*>(all.data()) + 8, static_cast<std::size_t>(n));
    std::string duplicate;
    nlohmann::json const header = detail::parse_json(text, path().string() + ": header", &duplicate);
    if (!header.is_object()) {
      bad(std::string("header is not a JSON object (it is ") + header.type_name() + ")");
    }
    if (!duplicate.empty()) {
      bad("header lists " + detail::quoted(duplicate) + " more than once");
    }

    for (auto const& [key, value] : header.items()) {
      if (key == "__metadata__") {
        parse_metadata(value);
      } else {
        TensorInfo ti = parse_entry(key, value, data_size);
        std::string name = ti.name;
        tensors_.emplace(std::move(name), std::move(ti));
      }
    }
    check_overlaps();
  }

  void parse_metadata(nlohmann::json const& value) {
    if (!value.is_object()) {
      bad(std::string("__metadata__ is not a JSON object (it is ") + value.type_name() + ")");
    }
    for (auto const& [k, v] : value.items()) {
      if (!v.is_string()) {
        bad("__metadata__ value for key " + detail::quoted(k) + " is not a string (it is " + v.dump() + ")");
      }
      metadata_.emplace(k, v.get<std::string>());
    }
  }

  TensorInfo parse_entry(std::string const& name, nlohmann::json const& e, std::size_t data_size) const {
    if (!e.is_object()) {
      bad_tensor(name, std::string("entry is not a JSON object (it is ") + e.type_name() + ")");
    }
    TensorInfo ti;
    ti.name = name;

    auto const dt = e.find("dtype");
    if (dt == e.end()) {
      bad_tensor(name, "missing \"dtype\"");
    }
    if (!dt->is_string()) {
      bad_tensor(name, "\"dtype\" is not a string (it is " + dt->dump() + ")");
    }
    std::string const& dts = dt->get_ref<std::string const&>();
    if (!parse_dtype(dts, ti.dtype)) {
      bad_tensor(name, "unknown dtype " + detail::quoted(dts) + " (fd reads F64, F32, F16, BF16, I64, I32, U8)");
    }

    auto const sh = e.find("shape");
    if (sh == e.end()) {
      bad_tensor(name, "missing \"shape\"");
    }
    if (!sh->is_array()) {
      bad_tensor(name, "\"shape\" is not an array (it is " + sh->dump() + ")");
    }
    if (sh->size() > static_cast<std::size_t>(Shape::kMaxRank)) {
      fail(Errc::kUnsupported, detail::tensor_context(path(), name) + ": rank " + std::to_string(sh->size()) +
                                   " is above fd's limit of " + std::to_string(Shape::kMaxRank));
    }
    // numel * element size, checked for overflow so a huge shape cannot wrap around to a small size.
    std::uint64_t nbytes = size_of(ti.dtype);
    bool overflow = false;
    for (std::size_t i = 0; i < sh->size(); ++i) {
      nlohmann::json const& d = (*sh)[i];
      std::optional<std::uint64_t> const v = detail::as_index(d);
      if (!v) {
        bad_tensor(name, "shape entry " + std::to_string(i) + " " + detail::bad_index_reason(d));
      }
      if (*v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        bad_tensor(name, "shape entry " + std::to_string(i) + " is too large (" + d.dump() + ")");
      }
      ti.shape.push_back(static_cast<std::int64_t>(*v));
      overflow = overflow || __builtin_mul_overflow(nbytes, *v, &nbytes);
    }
    if (overflow) {
      bad_tensor(name, "shape " + ti.shape.str() + " is too large to address");
    }

    auto const off = e.find("data_offsets");
    if (off == e.end()) {
      bad_tensor(name, "missing \"data_offsets\"");
    }
    if (!off->is_array() || off->size() != 2) {
      bad_tensor(name, "\"data_offsets\" is not an array of two integers (it is " + off->dump() + ")");
    }
    std::uint64_t be[2] = {0, 0};
    for (std::size_t i = 0; i < 2; ++i) {
      std::optional<std::uint64_t> const v = detail::as_index((*off)[i]);
      if (!v) {
        bad_tensor(name, std::string("data_offsets ") + (i == 0 ? "begin " : "end ") +
                             detail::bad_index_reason((*off)[i]));
      }
      be[i] = *v;
    }
    std::string const range = "[" + std::to_string(be[0]) + ", " + std::to_string(be[1]) + "]";
    if (be[0] > be[1]) {
      bad_tensor(name, "data_offsets " + range + " begin after end");
    }
    if (be[1] > data_size) {
      bad_tensor(name, "data_offsets " + range + " out of range: the data buffer holds " +
                           std::to_string(data_size) + " bytes");
    }
    if (be[1] - be[0] != nbytes) {
      bad_tensor(name, "data_offsets " + range + " span " + std::to_string(be[1] - be[0]) + " bytes but shape " +
                           ti.shape.str() + " of " + std::string(dtype_name(ti.dtype)) + " needs " +
                           std::to_string(nbytes));
    }
    ti.begin = static_cast<std::size_t>(be[0]);
    ti.end = static_cast<std::size_t>(be[1]);
    return ti;
  }

  void check_overlaps() const {
    std::vector<TensorInfo const*> order;
    order.reserve(tensors_.size());
    for (auto const& [name, ti] : tensors_) {
      if (ti.nbytes() > 0) {  // an empty range overlaps nothing, wherever it points
        order.push_back(&ti);
      }
    }
    std::sort(order.begin(), order.end(), [](TensorInfo const* a, TensorInfo const* b) {
      return a->begin != b->begin ? a->begin < b->begin : a->name < b->name;
    });
    TensorInfo const* reach = nullptr;  // the tensor ending furthest so far
    for (TensorInfo const* t : order) {
      if (reach != nullptr && t->begin < reach->end) {
        auto span_of = [](TensorInfo const* x) {
          // Built with append: GCC 12 warns (-Wrestrict, a false positive) on "[" + std::string&&.
          std::string s("[");
          s.append(std::to_string(x->begin)).append(", ").append(std::to_string(x->end)).append("]");
          return s;
        };
        bad("tensors " + detail::quoted(reach->name) + " " + span_of(reach) + " and " + detail::quoted(t->name) +
            " " + span_of(t) + " overlap");
      }
      if (reach == nullptr || t->end > reach->end) {
        reach = t;
      }
    }
  }

  MappedFile file_;
  std::size_t data_start_ = 0;
  std::map<std::string, TensorInfo, std::less<>> tensors_;
  std::map<std::string, std::string> metadata_;
};

/// Builds a safetensors file from host buffers and writes it atomically.
///
/// Tensors are stored sorted by name, back to back; the header is padded with spaces so that the data
/// buffer starts at a multiple of 8 bytes.
/// @code
///   fd::io::SafeTensorsWriter w("out.safetensors");
///   w.add("x", fd::DType::kF32, {2, 3}, std::as_bytes(std::span(values)));
///   w.write();
/// @endcode
class SafeTensorsWriter {
 public:
  explicit SafeTensorsWriter(std::filesystem::path path) : path_(std::move(path)) {}

  std::filesystem::path const& path() const noexcept { return path_; }

  /// Adds a tensor. `data` is not copied.
  /// @pre `data` stays valid until write() returns.
  /// Throws kInvalidArgument (naming the file and tensor) for an empty, reserved ("__metadata__"),
  /// non-UTF-8 or duplicate name, a negative extent, or data.size() != numel * size_of(dtype).
  void add(std::string name, DType dtype, Shape const& shape, std::span<std::byte const> data) {
    std::string const who = detail::tensor_context(path_, name);
    if (name.empty()) {
      fail(Errc::kInvalidArgument, path_.string() + ": empty tensor name");
    }
    if (name == "__metadata__") {
      fail(Errc::kInvalidArgument, who + ": the name is reserved for the metadata entry");
    }
    if (!detail::is_valid_utf8(name)) {
      fail(Errc::kInvalidArgument, who + ": name is not valid UTF-8");
    }
    for (std::int64_t d : shape) {
      if (d < 0) {
        fail(Errc::kInvalidArgument, who + ": negative extent in shape " + shape.str());
      }
    }
    std::size_t const need = static_cast<std::size_t>(shape.numel()) * size_of(dtype);
    if (data.size() != need) {
      fail(Errc::kInvalidArgument, who + ": " + std::to_string(data.size()) + " bytes given, shape " + shape.str() +
                                       " of " + std::string(dtype_name(dtype)) + " needs " + std::to_string(need));
    }
    if (entries_.find(name) != entries_.end()) {
      fail(Errc::kInvalidArgument, who + ": duplicate tensor name");
    }
    entries_.emplace(std::move(name), Entry{dtype, shape, data});
  }

  /// Sets the "__metadata__" entries (string to string). Throws kInvalidArgument for non-UTF-8 text.
  void set_metadata(std::map<std::string, std::string> metadata) {
    for (auto const& [k, v] : metadata) {
      if (!detail::is_valid_utf8(k) || !detail::is_valid_utf8(v)) {
        fail(Errc::kInvalidArgument, path_.string() + ": metadata key " + detail::quoted(k) +
                                         " or its value is not valid UTF-8");
      }
    }
    metadata_ = std::move(metadata);
  }

  std::size_t size() const noexcept { return entries_.size(); }

  /// The header exactly as write() stores it, without the length prefix (padded to a multiple of 8).
  std::string header() const {
    nlohmann::json h = nlohmann::json::object();
    std::uint64_t offset = 0;
    for (auto const& [name, e] : entries_) {
      nlohmann::json shape = nlohmann::json::array();
      for (std::int64_t d : e.shape) shape.push_back(d);
      std::uint64_t const end = offset + e.data.size();
      h[name] = {{"dtype", std::string(dtype_name(e.dtype))}, {"shape", shape}, {"data_offsets", {offset, end}}};
      offset = end;
    }
    if (!metadata_.empty()) {
      h["__metadata__"] = metadata_;
    }
    std::string text = h.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    return text;
  }

  /// Writes the file to `<path>.tmp.<pid>` and renames it over `path`, so readers never see a partial
  /// file. On failure the temporary file is removed and kIo naming `path` is thrown.
  void write() const {
    std::string const text = header();
    std::byte prefix[8];
    auto n = static_cast<std::uint64_t>(text.size());
    for (auto& b : prefix) {
      b = static_cast<std::byte>(n & 0xffu);
      n >>= 8;
    }
    std::filesystem::path tmp = path_;
    tmp += ".tmp." + std::to_string(::getpid());

    int const handle = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (handle < 0) {
      fail(Errc::kIo, path_.string() + ": cannot create temporary file " + detail::quoted(tmp.string()) + ": " +
                          std::strerror(errno));
    }
    auto abort_write = [&](char const* what, int err) {
      ::close(handle);
      ::unlink(tmp.c_str());
      fail(Errc::kIo, path_.string() + ": " + what + ": " + std::strerror(err));
    };
    auto put = [&](void const* p, std::size_t len) {
      auto const* c = static_cast<char const*>(p);
      while (len > 0) {
        ssize_t const w = ::write(handle, c, len);
        if (w < 0) {
          if (errno == EINTR) {
            continue;
          }
          abort_write("cannot write", errno);
        }
        c += w;
        len -= static_cast<std::size_t>(w);
      }
    };
    put(prefix, sizeof prefix);
    put(text.data(), text.size());
    for (auto const& [name, e] : entries_) {
      put(e.data.data(), e.data.size());
    }
    // Without the flush a crash shortly after the rename could leave an empty file under the final name.
    if (::fsync(handle) != 0) {
      abort_write("cannot flush", errno);
    }
    if (::close(handle) != 0) {
      int const err = errno;
      ::unlink(tmp.c_str());
      fail(Errc::kIo, path_.string() + ": cannot close: " + std::strerror(err));
    }
    if (::rename(tmp.c_str(), path_.c_str()) != 0) {
      int const err = errno;
      ::unlink(tmp.c_str());
      fail(Errc::kIo, path_.string() + ": cannot rename " + detail::quoted(tmp.string()) + " into place: " +
                          std::strerror(err));
    }
  }

 private:
  struct Entry {
    DType dtype;
    Shape shape;
    std::span<std::byte const> data;
  };

  std::filesystem::path path_;
  std::map<std::string, Entry, std::less<>> entries_;
  std::map<std::string, std::string> metadata_;
};

namespace detail {

/// Row-major host copy of a host-readable tensor with any strides.
template <backend::Backend B>
std::vector<std::byte> gather_host(Tensor<B> const& t) {
  std::size_t const es = size_of(t.dtype());
  std::vector<std::byte> out(t.nbytes());
  auto const n = static_cast<std::size_t>(t.numel());
  int const r = t.rank();
  std::vector<std::int64_t> idx(static_cast<std::size_t>(r), 0);
  for (std::size_t i = 0; i < n; ++i) {
    std::int64_t off = 0;
    for (int k = 0; k < r; ++k) off += idx[static_cast<std::size_t>(k)] * t.strides()[k];
    std::memcpy(out.data() + i * es, t.raw() + off * static_cast<std::int64_t>(es), es);
    for (int k = r - 1; k >= 0; --k) {
      if (++idx[static_cast<std::size_t>(k)] < t.shape()[k]) break;
      idx[static_cast<std::size_t>(k)] = 0;
    }
  }
  return out;
}

template <class B>
void check_defined(std::filesystem::path const& path, std::string const& name, Tensor<B> const& t) {
  if (!t.defined()) {
    fail(Errc::kInvalidArgument, tensor_context(path, name) + ": tensor is undefined (default-constructed)");
  }
}

}  // namespace detail

/// Writes `tensors` (each in its own dtype) and `metadata` to `path` atomically; see SafeTensorsWriter.
/// Tensors may have any strides. With a braced list name the backend: save_safetensors<Cpu>(p, {{"x", x}}).
/// Throws kInvalidArgument for duplicate or invalid names, kIo if the
/// file cannot be written.
template <backend::HostBackend B>
void save_safetensors(std::filesystem::path const& path, std::vector<std::pair<std::string, Tensor<B>>> const& tensors,
                      std::map<std::string, std::string> const& metadata = {}) {
  SafeTensorsWriter w(path);
  std::vector<std::vector<std::byte>> staged;  // keeps gathered copies alive until write()
  staged.reserve(tensors.size());
  for (auto const& [name, t] : tensors) {
    detail::check_defined(path, name, t);
    if (t.is_contiguous()) {
      w.add(name, t.dtype(), t.shape(), {t.raw(), t.nbytes()});
    } else {
      staged.push_back(detail::gather_host(t));
      w.add(name, t.dtype(), t.shape(), staged.back());
    }
  }
  w.set_metadata(metadata);
  w.write();
}

/// As above for a tensor on any backend: the values are copied to the host through `be` first.
/// B is deduced from `be` alone, so `tensors` may be a braced list: save_safetensors(cpu, p, {{"x", x}}).
template <backend::Backend B>
void save_safetensors(B const& be, std::filesystem::path const& path,
                      std::type_identity_t<std::vector<std::pair<std::string, Tensor<B>>>> const& tensors,
                      std::map<std::string, std::string> const& metadata = {}) {
  SafeTensorsWriter w(path);
  std::vector<std::vector<std::byte>> staged;
  staged.reserve(tensors.size());
  for (auto const& [name, t] : tensors) {
    detail::check_defined(path, name, t);
    Tensor<B> const c = t.contiguous(be);
    staged.emplace_back(c.nbytes());
    be.copy_to_host(staged.back().data(), c.raw(), c.nbytes());
    w.add(name, t.dtype(), t.shape(), staged.back());
  }
  w.set_metadata(metadata);
  w.write();
}

}  // namespace fd::io
