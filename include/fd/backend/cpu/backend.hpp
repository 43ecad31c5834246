#pragma once
/// @file
/// The CPU backend: host memory from a size-keyed pool, OpenMP threads with a settable count.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "fd/backend/traits.hpp"
#include "fd/error.hpp"

namespace fd::backend {

struct CpuOptions {
  /// Worker threads for every op; 0 means all hardware threads. Changing it later with
  /// Cpu::set_threads takes effect at the next op.
  int threads = 0;
  /// Elementwise and normalisation work below this many elements runs on the calling thread: waking
  /// the team and meeting at the barrier costs more than such a loop, and on a loaded machine a
  /// descheduled worker stalls every barrier. 0 parallelises everything (tests use it to exercise the
  /// threaded paths on small tensors).
  std::int64_t parallel_min = 32768;
};

namespace detail {

// Recycles buffers by exact size. A UNet forward allocates the same sizes every call, and handing
// back already-touched pages avoids page faults and zeroing of fresh mappings on every op.
class HostPool {
 public:
  ~HostPool() {
    for (auto& [size, blocks] : free_) {
      for (void* p : blocks) std::free(p);
    }
  }

  std::byte* acquire(std::size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_bytes_ -= bytes;
        return static_cast<std::byte*>(p);
      }
    }
    void* p = std::aligned_alloc(kAlign, bytes);
    if (p == nullptr) {
      trim();
      p = std::aligned_alloc(kAlign, bytes);
      if (p == nullptr) {
        fail(Errc::kOutOfMemory, "cpu backend: cannot allocate " + std::to_string(bytes) + " bytes");
      }
    }
    return static_cast<std::byte*>(p);
  }

  void release(std::byte* p, std::size_t bytes) noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    if (cached_bytes_ + bytes > limit_) {
      std::free(p);
      return;
    }
    try {
      free_[bytes].push_back(p);
      cached_bytes_ += bytes;
    } catch (...) {
      std::free(p);
    }
  }

  /// Returns every cached block to the system.
  void trim() noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [size, blocks] : free_) {
      for (void* p : blocks) std::free(p);
      blocks.clear();
    }
    cached_bytes_ = 0;
  }

  void set_limit(std::size_t bytes) noexcept { limit_ = bytes; }

  static constexpr std::size_t kAlign = 64;

 private:
  std::mutex mu_;
  std::unordered_map<std::size_t, std::vector<void*>> free_;
  std::size_t cached_bytes_ = 0;
  std::size_t limit_ = std::size_t{8} << 30;
};

}  // namespace detail

/// The CPU backend. Cheap to copy: copies share one buffer pool and one thread setting.
/// @code
///   fd::backend::Cpu cpu{{.threads = 8}};
///   auto x = fd::Tensor<fd::backend::Cpu>::zeros(cpu, {2, 4, 64, 64});
/// @endcode
class Cpu {
 public:
  using fd_backend = void;
  using memory_space = HostSpace;

  explicit Cpu(CpuOptions options = {}) : state_(std::make_shared<State>()) {
    set_threads(options.threads);
    state_->parallel_min = options.parallel_min;
  }

  /// Number of threads ops use.
  int threads() const noexcept { return state_->threads; }
  /// See CpuOptions::parallel_min.
  std::int64_t parallel_min() const noexcept { return state_->parallel_min; }
  void set_threads(int n) {
    if (n < 0) fail(Errc::kInvalidArgument, "cpu backend: thread count must be >= 0, got " + std::to_string(n));
#if defined(_OPENMP)
    state_->threads = n == 0 ? omp_get_num_procs() : n;
#else
    state_->threads = 1;
#endif
  }

  std::shared_ptr<std::byte> allocate(std::size_t bytes) const {
    std::size_t const rounded = std::max<std::size_t>(64, (bytes + 63) / 64 * 64);
    std::byte* p = state_->pool.acquire(rounded);
    std::shared_ptr<State> keep = state_;
    return std::shared_ptr<std::byte>(p, [keep, rounded](std::byte* q) { keep->pool.release(q, rounded); });
  }

  void synchronize() const noexcept {}
  void copy_from_host(void* dst, void const* src, std::size_t bytes) const { copy(dst, src, bytes); }
  void copy_to_host(void* dst, void const* src, std::size_t bytes) const { copy(dst, src, bytes); }
  void copy(void* dst, void const* src, std::size_t bytes) const {
    if (bytes != 0) std::memmove(dst, src, bytes);
  }

  /// Frees the pooled buffers not in use (e.g. after loading, before a long run).
  void trim_pool() const noexcept { state_->pool.trim(); }

  /// Floating-point operations issued by the matrix-product ops (2 per multiply-add) since the last
  /// reset: what benchmarks divide by time to report achieved GFLOP/s.
  std::uint64_t flops() const noexcept { return state_->flops.load(std::memory_order_relaxed); }
  void reset_flops() const noexcept { state_->flops.store(0, std::memory_order_relaxed); }
  void add_flops(std::uint64_t n) const noexcept { state_->flops.fetch_add(n, std::memory_order_relaxed); }

 private:
  struct State {
    detail::HostPool pool;
    int threads = 1;
    std::int64_t parallel_min = 32768;
    std::atomic<std::uint64_t> flops{0};
  };
  std::shared_ptr<State> state_;
};

static_assert(HostBackend<Cpu>);

}  // namespace fd::backend
