#pragma once
/// @file
/// The library's error type. Recoverable conditions (bad files, unsupported shapes or dtypes, bad
/// configs, out of memory) throw fd::error; what() always starts with a stable id such as
/// "[fd.shape_mismatch]" followed by the file, tensor or field concerned.

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

namespace fd {

enum class Errc {
  kIo,               ///< a file could not be opened, mapped, read or written
  kFormat,           ///< a file is corrupt or not in the expected format
  kMissingTensor,    ///< a required tensor or input is absent
  kUnexpectedTensor, ///< a file holds a tensor nothing consumes
  kShapeMismatch,    ///< a tensor has the wrong shape
  kDTypeMismatch,    ///< a tensor has a dtype that cannot be used here
  kConfig,           ///< a configuration field is missing, malformed or has an unknown value
  kUnsupported,      ///< a valid request this backend or model cannot run
  kOutOfMemory,      ///< an allocation failed
  kBackend,          ///< a backend library reported a failure
  kInvalidArgument,  ///< an argument violates a documented precondition
  kNonFinite,        ///< an input holds NaN or infinity
};

/// Stable identifier used in messages and docs/errors.md.
constexpr std::string_view errc_id(Errc e) noexcept {
  switch (e) {
    case Errc::kIo: return "fd.io";
    case Errc::kFormat: return "fd.format";
    case Errc::kMissingTensor: return "fd.missing_tensor";
    case Errc::kUnexpectedTensor: return "fd.unexpected_tensor";
    case Errc::kShapeMismatch: return "fd.shape_mismatch";
    case Errc::kDTypeMismatch: return "fd.dtype_mismatch";
    case Errc::kConfig: return "fd.config";
    case Errc::kUnsupported: return "fd.unsupported";
    case Errc::kOutOfMemory: return "fd.out_of_memory";
    case Errc::kBackend: return "fd.backend";
    case Errc::kInvalidArgument: return "fd.invalid_argument";
    case Errc::kNonFinite: return "fd.non_finite";
  }
  return "fd.unknown";
}

/// Exception thrown for every recoverable failure.
/// @code
///   try { auto st = fd::io::SafeTensors::open("w.safetensors"); }
///   catch (fd::error const& e) { if (e.code() == fd::Errc::kFormat) { ... } }
/// @endcode
class error : public std::runtime_error {
 public:
  error(Errc code, std::string const& message) : std::runtime_error(compose(code, message)), code_(code), message_(message) {}

  Errc code() const noexcept { return code_; }
  /// The message without the "[fd.id] " prefix.
  std::string const& message() const noexcept { return message_; }

 private:
  static std::string compose(Errc code, std::string const& message) {
    std::string s;
    s.reserve(message.size() + 24);
    s.append("[").append(errc_id(code)).append("] ").append(message);
    return s;
  }

  Errc code_;
  std::string message_;
};

/// Throws fd::error (or, with FD_NO_EXCEPTIONS, prints it and aborts).
[[noreturn]] inline void fail(Errc code, std::string const& message) {
#if defined(FD_NO_EXCEPTIONS)
  std::fprintf(stderr, "[%s] %s\n", std::string(errc_id(code)).c_str(), message.c_str());
  std::abort();
#else
  throw error(code, message);
#endif
}

/// Adds an outer context ("unet.down_blocks.0: ...") to an error thrown inside f, keeping its code.
template <class F>
decltype(auto) with_context(std::string_view context, F&& f) {
#if defined(FD_NO_EXCEPTIONS)
  (void)context;
  return f();
#else
  try {
    return f();
  } catch (error const& e) {
    throw error(e.code(), std::string(context) + ": " + e.message());
  }
#endif
}

}  // namespace fd
