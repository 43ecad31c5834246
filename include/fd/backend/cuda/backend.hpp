#pragma once
/// @file
/// The CUDA backend: device memory from a stream-ordered caching arena, one stream per backend object,
/// cuBLAS/cuDNN handles and plans cached by shape. The implementation lives in the compiled library
/// FasterDiffusion::cuda (kernels/); this header needs no CUDA headers, so code templated on the
/// backend compiles with any C++20 compiler and links against that library.
///
/// Activations and parameters use one storage dtype (CudaOptions::dtype: f32, f16 or bf16); every
/// reduction and matrix product accumulates in fp32.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "fd/backend/traits.hpp"
#include "fd/core/dtype.hpp"

namespace fd::backend {

/// Memory on a CUDA device: host code cannot dereference it.
struct CudaSpace {};

struct CudaOptions {
  int device = 0;
  /// Storage dtype of parameters and activations: kF32 (for checks), kF16 or kBF16.
  DType dtype = DType::kF16;
  /// Lets fp32 matrix products and convolutions use TF32 tensor cores (about 1e-3 relative error).
  bool allow_tf32 = false;
  /// Largest device memory the arena may hold, in bytes (0 = what the device has). Reaching it raises
  /// Errc::kOutOfMemory, which the parallel decoder answers by splitting its batch.
  std::size_t memory_cap = 0;
  /// Records each UNet encoder/decoder call shape once as a CUDA graph and replays it (the launch cost
  /// of its several hundred kernels paid once); false launches every op each time.
  bool graphs = true;
  /// f16/bf16 attention through the fused kernel (scores never leave shared memory); false runs two
  /// cuBLAS GEMMs around an fp32 softmax, as f32 always does.
  bool fused_attention = true;
  /// Largest fp32 score block of the unfused attention, in bytes: longer query ranges run in chunks.
  std::size_t attention_workspace = std::size_t{256} << 20;
};

/// Arena counters, in bytes.
struct CudaMemoryStats {
  std::size_t in_use = 0;    ///< held by live tensors
  std::size_t cached = 0;    ///< freed blocks kept for reuse
  std::size_t peak = 0;      ///< largest in_use since the last reset_peak()
  std::size_t device_free = 0, device_total = 0;
};

namespace cuda_detail {
struct Context;
}

/// The CUDA backend. Cheap to copy: copies share one device context (stream, handles, arena).
/// @code
///   if (fd::backend::Cuda::available()) {
///     fd::backend::Cuda gpu{{.dtype = fd::DType::kF16}};
///     auto sd = fd::StableDiffusion<fd::backend::Cuda>::load(gpu, "stable-diffusion-v1-5");
///   }
/// @endcode
class Cuda {
 public:
  using fd_backend = void;
  using memory_space = CudaSpace;

  /// Opens the device. Throws Errc::kUnsupported when there is no CUDA device (or no driver), and for
  /// a dtype other than f32/f16/bf16 or one the device cannot run (bf16 before compute capability 8.0).
  explicit Cuda(CudaOptions options = {});

  /// Whether a usable CUDA device and driver are present; never throws.
  static bool available() noexcept;
  static int device_count() noexcept;

  std::shared_ptr<std::byte> allocate(std::size_t bytes) const;
  void synchronize() const;
  void copy_from_host(void* dst, void const* src, std::size_t bytes) const;
  void copy_to_host(void* dst, void const* src, std::size_t bytes) const;
  void copy(void* dst, void const* src, std::size_t bytes) const;

  /// Storage dtype of activations and of parameters created on this backend.
  DType dtype() const noexcept;
  DType parameter_dtype() const noexcept { return dtype(); }
  CudaOptions const& options() const noexcept;
  /// "NVIDIA H100 80GB HBM3 (sm_90)".
  std::string device_name() const;
  int compute_capability() const noexcept;  ///< 90 for sm_90

  CudaMemoryStats memory() const;
  void reset_peak() const noexcept;
  /// Returns the cached blocks to the driver.
  void trim_pool() const;

  /// Parallel-decoder batch a pipeline uses when the request leaves it open: whole key-step groups.
  int preferred_decoder_rows(std::int64_t /*rows_per_step*/) const noexcept { return 0; }

  /// Matrix-product FLOPs issued since the last reset (as Cpu::flops).
  std::uint64_t flops() const noexcept;
  void reset_flops() const noexcept;
  void add_flops(std::uint64_t n) const noexcept;

  cuda_detail::Context& context() const noexcept { return *ctx_; }

 private:
  std::shared_ptr<cuda_detail::Context> ctx_;
};

static_assert(Backend<Cuda>);
static_assert(!HostBackend<Cuda>);

}  // namespace fd::backend
