#pragma once
/// @file
/// The Backend concept: what a type must provide to own tensor memory and run fd's ops.
///
//! A backend type B must provide:
//!   - `using fd_backend = void;`                      marker the concept detects
//!   - `using memory_space = <a space tag>;`           where its allocations live (HostSpace, CudaSpace, ...)
//!   - `std::shared_ptr<std::byte> allocate(std::size_t bytes) const;`   64-byte aligned, throws kOutOfMemory
//!   - `void synchronize() const;`                     waits for queued work
//!   - `void copy_from_host(void* dst, void const* src, std::size_t bytes) const;`
//!   - `void copy_to_host(void* dst, void const* src, std::size_t bytes) const;`
//!   - `void copy(void* dst, void const* src, std::size_t bytes) const;`   within its own memory space
//! and the ops the models use, as free functions found by argument-dependent lookup
//! (see backend/cpu/ops_*.hpp and docs/extending.md#backends).

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "fd/core/dtype.hpp"

namespace fd::backend {

/// Memory the host CPU can dereference.
struct HostSpace {};

/// Whether code running on backend Exec may dereference memory of space Space. A CPU kernel handed a
/// device tensor is then a compile error, not a crash.
template <class Exec, class Space>
inline constexpr bool accessible_from = std::same_as<typename Exec::memory_space, Space>;

template <class B>
concept Backend = requires { typename B::fd_backend; typename B::memory_space; } &&
                  requires(B const& b, std::size_t n, void* dst, void const* src) {
                    { b.allocate(n) } -> std::same_as<std::shared_ptr<std::byte>>;
                    b.synchronize();
                    b.copy_from_host(dst, src, n);
                    b.copy_to_host(dst, src, n);
                    b.copy(dst, src, n);
                  };

/// A backend whose memory the host can read directly (no staging copies needed at the API edge).
template <class B>
concept HostBackend = Backend<B> && accessible_from<B, HostSpace>;

/// Dtype of the parameters models allocate on backend `be`: the backend's `parameter_dtype()` when
/// it has one (the CUDA backend's storage dtype), otherwise f32. Loaders convert checkpoint data to it.
template <class B>
DType parameter_dtype(B const& be) {
  if constexpr (requires { { be.parameter_dtype() } -> std::convertible_to<DType>; }) {
    return be.parameter_dtype();
  } else {
    return DType::kF32;
  }
}

/// Rows per parallel-decoder call a pipeline uses when the request leaves it open (0 = whole key-step
/// groups): the backend's `preferred_decoder_rows(rows_per_step)` when it has one, else two steps.
template <class B>
int preferred_decoder_rows(B const& be, std::int64_t rows_per_step) {
  if constexpr (requires { { be.preferred_decoder_rows(rows_per_step) } -> std::convertible_to<int>; }) {
    return be.preferred_decoder_rows(rows_per_step);
  } else {
    return static_cast<int>(2 * rows_per_step);
  }
}

}  // namespace fd::backend
