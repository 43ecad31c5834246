#pragma once
/// @file
/// fd::io::MappedFile: a whole file mapped read-only into memory (POSIX mmap).

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fd/error.hpp"

namespace fd::io {

/// A read-only memory mapping of an entire file. Move-only; the mapping lives until destruction.
///
/// Checkpoints are mapped rather than read so that only the pages of the tensors actually loaded are
/// touched, and so that several shards can be open at once without doubling memory use.
/// @code
///   fd::io::MappedFile f("weights.safetensors");
///   std::span<std::byte const> all = f.bytes();
/// @endcode
class MappedFile {
 public:
  /// An empty object that maps nothing (bytes() is empty).
  MappedFile() = default;

  /// Maps the whole of `path`. Empty files are allowed (bytes() is then empty).
  /// Throws kIo, naming the path and the system's reason, if the file cannot be opened, is not a
  /// regular file, or cannot be mapped.
  explicit MappedFile(std::filesystem::path path) : path_(std::move(path)) {
    int const handle = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (handle < 0) {
      fail_errno("cannot open");
    }
    struct stat st {};
    if (::fstat(handle, &st) != 0) {
      int const err = errno;
      ::close(handle);
      fail_errno("cannot stat", err);
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(handle);
      fail(Errc::kIo, path_.string() + ": not a regular file");
    }
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, handle, 0);
      if (p == MAP_FAILED) {
        int const err = errno;
        ::close(handle);
        fail_errno("cannot map", err);
      }
      data_ = static_cast<std::byte const*>(p);
    }
    // The mapping keeps the file's contents reachable; the descriptor is no longer needed.
    ::close(handle);
  }

  ~MappedFile() { unmap(); }

  MappedFile(MappedFile const&) = delete;
  MappedFile& operator=(MappedFile const&) = delete;

  MappedFile(MappedFile&& o) noexcept
      : path_(std::move(o.path_)), data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}

  MappedFile& operator=(MappedFile&& o) noexcept {
    if (this != &o) {
      unmap();
      path_ = std::move(o.path_);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }

  /// The file's contents. Valid as long as this object lives (and is not moved from).
  std::span<std::byte const> bytes() const noexcept { return {data_, size_}; }
  std::size_t size() const noexcept { return size_; }
  std::filesystem::path const& path() const noexcept { return path_; }

 private:
  [[noreturn]] void fail_errno(char const* what, int err = errno) const {
    fail(Errc::kIo, path_.string() + ": " + what + ": " + std::strerror(err));
  }

  void unmap() noexcept {
    if (data_ != nullptr) {
      ::munmap(const_cast<std::byte*>(data_), size_);
      data_ = nullptr;
      size_ = 0;
    }
  }

  std::filesystem::path path_;
  std::byte const* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace fd::io
