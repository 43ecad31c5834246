#pragma once
// Internal to FasterDiffusion::cuda: the device context behind fd::backend::Cuda, status checks that
// turn every CUDA/cuBLAS/cuDNN failure into an fd error naming the call, and the caching arena.

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "fd/backend/cuda/backend.hpp"
#include "fd/error.hpp"

namespace fd::backend::cuda_detail {

[[noreturn]] void fail_cuda(cudaError_t e, char const* call, char const* file, int line);
[[noreturn]] void fail_cublas(cublasStatus_t s, char const* call, char const* file, int line);
[[noreturn]] void fail_cudnn(cudnnStatus_t s, char const* call, char const* file, int line);

#define FD_CUDA_CHECK(call)                                                                     \
  do {                                                                                          \
    cudaError_t fd_e_ = (call);                                                                 \
    if (fd_e_ != cudaSuccess) ::fd::backend::cuda_detail::fail_cuda(fd_e_, #call, __FILE__, __LINE__); \
  } while (0)
#define FD_CUBLAS_CHECK(call)                                                                   \
  do {                                                                                          \
    cublasStatus_t fd_s_ = (call);                                                              \
    if (fd_s_ != CUBLAS_STATUS_SUCCESS) ::fd::backend::cuda_detail::fail_cublas(fd_s_, #call, __FILE__, __LINE__); \
  } while (0)
#define FD_CUDNN_CHECK(call)                                                                    \
  do {                                                                                          \
    cudnnStatus_t fd_s_ = (call);                                                               \
    if (fd_s_ != CUDNN_STATUS_SUCCESS) ::fd::backend::cuda_detail::fail_cudnn(fd_s_, #call, __FILE__, __LINE__); \
  } while (0)
// After a kernel launch: launch-configuration errors surface here, naming the kernel.
#define FD_CUDA_LAUNCHED(name)                                                                  \
  do {                                                                                          \
    cudaError_t fd_e_ = cudaGetLastError();                                                     \
    if (fd_e_ != cudaSuccess) ::fd::backend::cuda_detail::fail_cuda(fd_e_, "launch of " name, __FILE__, __LINE__); \
  } while (0)

// Recycles device blocks by exact (rounded) size. The UNet allocates the same sizes at every call, so
// after the first step the sampling loop allocates nothing from the driver. All work runs on the
// context's one stream, so a block freed by the host may be handed out again at once: every later use
// is queued behind the work that still reads it.
class Arena {
 public:
  explicit Arena(std::size_t cap) : cap_(cap) {}
  ~Arena();
  std::byte* acquire(std::size_t bytes);
  void release(std::byte* p, std::size_t bytes) noexcept;
  void trim() noexcept;
  CudaMemoryStats stats() const;
  void reset_peak() noexcept;
  static std::size_t round(std::size_t bytes) noexcept;

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::size_t, std::vector<std::byte*>> free_;
  std::size_t cap_ = 0, in_use_ = 0, cached_ = 0, peak_ = 0;
};

struct ConvKey {
  std::int64_t n, c, h, w, k, r, s;
  int stride, pad, dtype;
  friend bool operator==(ConvKey const&, ConvKey const&) = default;
};
struct ConvKeyHash {
  std::size_t operator()(ConvKey const& k) const noexcept {
    std::size_t h = 1469598103934665603ull;
    for (std::int64_t v : {k.n, k.c, k.h, k.w, k.k, k.r, k.s, std::int64_t{k.stride}, std::int64_t{k.pad},
                           std::int64_t{k.dtype}}) {
      h = (h ^ static_cast<std::size_t>(v)) * 1099511628211ull;
    }
    return h;
  }
};
// A convolution's descriptors and chosen algorithm, made once per shape.
struct ConvPlan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  cudnnConvolutionFwdAlgo_t algo{};
  std::size_t workspace = 0;
};

// Device memory and pinned upload slots of one captured CUDA graph. While a region is captured the
// pool hands out blocks (recycling freed ones, as the arena does) and records the order; while it is
// replayed the same host code asks again and gets the recorded blocks back, so every address the graph
// baked in is the one the host code computes with.
struct GraphPool : std::enable_shared_from_this<GraphPool> {
  ~GraphPool();
  std::byte* acquire(std::size_t bytes);
  void release(std::byte* p, std::size_t bytes) noexcept;
  void* upload_slot(std::size_t bytes);  // pinned host memory the graph copies from

  struct Block {
    std::byte* p;
    std::size_t bytes;
  };
  struct Slot {
    void* p;
    std::size_t bytes;
  };
  std::vector<Block> blocks;
  std::vector<std::size_t> tape;  // block index of every acquisition, in order
  std::unordered_map<std::size_t, std::vector<std::size_t>> free;  // bytes -> free block indices
  std::vector<Slot> slots;
  std::size_t cursor = 0, slot_cursor = 0;
  bool replaying = false;
  bool frozen = false;  // after capture: releases are no-ops (the graph owns every block)
};

// The region being captured or replayed on the calling thread (graph.cpp), null otherwise. While
// replaying, device work is not issued: every launch site asks replaying().
extern thread_local GraphPool* t_graph;
inline bool replaying() noexcept { return t_graph != nullptr && t_graph->replaying; }

struct Context {
  explicit Context(CudaOptions const& o);
  ~Context();
  Context(Context const&) = delete;
  Context& operator=(Context const&) = delete;

  // Makes this context's device current on the calling thread (cheap when it already is).
  void activate() const;
  // A block of scratch memory released when the returned holder dies.
  std::shared_ptr<std::byte> scratch(std::size_t bytes);

  CudaOptions opt;
  int device = 0;
  cudaDeviceProp prop{};
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  cudnnHandle_t dnn = nullptr;
  Arena arena;
  std::byte* blas_workspace = nullptr;
  std::size_t blas_workspace_bytes = 0;
  std::atomic<std::uint64_t> flops{0};
  std::mutex plans_mu;
  std::unordered_map<ConvKey, ConvPlan, ConvKeyHash> conv_plans;
  // Keeps the context alive while tensors it allocated are alive (set by Cuda's constructor).
  std::weak_ptr<Context> self;
};

}  // namespace fd::backend::cuda_detail
