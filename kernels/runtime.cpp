// fd::backend::Cuda: device context, arena, copies and error translation.

#include <algorithm>
#include <cstring>
#include <string>

#include "cuda_context.hpp"

namespace fd::backend {
namespace cuda_detail {

namespace {
std::string where(char const* call, char const* file, int line) {
  char const* base = std::strrchr(file, '/');
  return std::string(call) + " (" + (base ? base + 1 : file) + ":" + std::to_string(line) + ")";
}
}  // namespace

void fail_cuda(cudaError_t e, char const* call, char const* file, int line) {
  Errc const code = e == cudaErrorMemoryAllocation ? Errc::kOutOfMemory
                    : (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver) ? Errc::kUnsupported
                                                                                      : Errc::kBackend;
  fail(code, "cuda: " + where(call, file, line) + " failed: " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e));
}

void fail_cublas(cublasStatus_t s, char const* call, char const* file, int line) {
  Errc const code = s == CUBLAS_STATUS_ALLOC_FAILED ? Errc::kOutOfMemory
                    : s == CUBLAS_STATUS_NOT_SUPPORTED || s == CUBLAS_STATUS_ARCH_MISMATCH ? Errc::kUnsupported
                                                                                          : Errc::kBackend;
  fail(code, "cublas: " + where(call, file, line) + " failed: " + cublasGetStatusName(s) + ": " +
                 cublasGetStatusString(s));
}

void fail_cudnn(cudnnStatus_t s, char const* call, char const* file, int line) {
  Errc const code = s == CUDNN_STATUS_ALLOC_FAILED ? Errc::kOutOfMemory
                    : s == CUDNN_STATUS_NOT_SUPPORTED || s == CUDNN_STATUS_ARCH_MISMATCH ? Errc::kUnsupported
                                                                                        : Errc::kBackend;
  fail(code, "cudnn: " + where(call, file, line) + " failed: " + cudnnGetErrorString(s));
}

// ---- Arena ----------------------------------------------------------------------------------------

std::size_t Arena::round(std::size_t bytes) noexcept {
  // 512-byte granules keep every tensor 16-byte (vector-load) aligned; large blocks round to 2 MiB so
  // batch sizes that differ slightly still share blocks.
  std::size_t const g = bytes >= (std::size_t{64} << 20) ? (std::size_t{2} << 20) : 512;
  return std::max<std::size_t>(g, (bytes + g - 1) / g * g);
}

Arena::~Arena() { trim(); }

std::byte* Arena::acquire(std::size_t bytes) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.find(bytes);
    if (it != free_.end() && !it->second.empty()) {
      std::byte* p = it->second.back();
      it->second.pop_back();
      cached_ -= bytes;
      in_use_ += bytes;
      peak_ = std::max(peak_, in_use_);
      return p;
    }
    // The cap bounds what the arena holds, cached blocks included: cached blocks of other sizes are
    // given back before a new block would cross it.
    if (cap_ != 0 && in_use_ + cached_ + bytes > cap_) {
      for (auto& [size, blocks] : free_) {
        for (std::byte* q : blocks) cudaFree(q);
        blocks.clear();
      }
      cached_ = 0;
      if (in_use_ + bytes > cap_) {
        fail(Errc::kOutOfMemory, "cuda: allocating " + std::to_string(bytes) + " bytes would exceed the memory cap of " +
                                     std::to_string(cap_) + " bytes (" + std::to_string(in_use_) + " in use)");
      }
    }
  }
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, bytes);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // clear the sticky-free error state before retrying
    trim();
    e = cudaMalloc(&p, bytes);
  }
  if (e != cudaSuccess) {
    cudaGetLastError();
    std::size_t fr = 0, tot = 0;
    cudaMemGetInfo(&fr, &tot);
    Errc const code = e == cudaErrorMemoryAllocation ? Errc::kOutOfMemory : Errc::kBackend;
    std::lock_guard<std::mutex> lock(mu_);
    fail(code, "cuda: cudaMalloc of " + std::to_string(bytes) + " bytes failed (" + cudaGetErrorString(e) + "; " +
                   std::to_string(in_use_) + " bytes in use by fd, " + std::to_string(fr) + " of " +
                   std::to_string(tot) + " bytes free on the device)");
  }
  std::lock_guard<std::mutex> lock(mu_);
  in_use_ += bytes;
  peak_ = std::max(peak_, in_use_);
  return static_cast<std::byte*>(p);
}

void Arena::release(std::byte* p, std::size_t bytes) noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  in_use_ -= bytes;
  try {
    free_[bytes].push_back(p);
    cached_ += bytes;
  } catch (...) {
    cudaFree(p);
  }
}

void Arena::trim() noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  bool any = false;
  for (auto& [size, blocks] : free_) any = any || !blocks.empty();
  if (!any) return;
  // cudaFree synchronises the device, so no queued kernel still reads these blocks.
  for (auto& [size, blocks] : free_) {
    for (std::byte* p : blocks) cudaFree(p);
    blocks.clear();
  }
  cached_ = 0;
}

CudaMemoryStats Arena::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  CudaMemoryStats s;
  s.in_use = in_use_;
  s.cached = cached_;
  s.peak = peak_;
  cudaMemGetInfo(&s.device_free, &s.device_total);
  return s;
}

void Arena::reset_peak() noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  peak_ = in_use_;
}

// ---- GraphPool ------------------------------------------------------------------------------------

thread_local GraphPool* t_graph = nullptr;

GraphPool::~GraphPool() {
  for (Block const& b : blocks) cudaFree(b.p);
  for (Slot const& s : slots) cudaFreeHost(s.p);
}

std::byte* GraphPool::acquire(std::size_t bytes) {
  if (replaying) {
    if (cursor >= tape.size() || blocks[tape[cursor]].bytes != bytes) {
      fail(Errc::kBackend, "cuda graph: replay asked for " + std::to_string(bytes) + " bytes at allocation " +
                               std::to_string(cursor) + ", which the capture did not (host logic that depends on values?)");
    }
    return blocks[tape[cursor++]].p;
  }
  auto it = free.find(bytes);
  std::size_t idx = 0;
  if (it != free.end() && !it->second.empty()) {
    idx = it->second.back();
    it->second.pop_back();
  } else {
    void* p = nullptr;
    FD_CUDA_CHECK(cudaMalloc(&p, bytes));
    idx = blocks.size();
    blocks.push_back({static_cast<std::byte*>(p), bytes});
  }
  tape.push_back(idx);
  return blocks[idx].p;
}

void GraphPool::release(std::byte* p, std::size_t bytes) noexcept {
  if (frozen || replaying) return;
  for (std::size_t i = blocks.size(); i-- > 0;) {
    if (blocks[i].p == p) {
      try {
        free[bytes].push_back(i);
      } catch (...) {
      }
      return;
    }
  }
}

void* GraphPool::upload_slot(std::size_t bytes) {
  if (replaying) {
    if (slot_cursor >= slots.size() || slots[slot_cursor].bytes != bytes) {
      fail(Errc::kBackend, "cuda graph: replay uploads " + std::to_string(bytes) + " bytes at upload " +
                               std::to_string(slot_cursor) + ", which the capture did not");
    }
    return slots[slot_cursor++].p;
  }
  void* p = nullptr;
  FD_CUDA_CHECK(cudaMallocHost(&p, bytes));
  slots.push_back({p, bytes});
  return p;
}

// ---- Context --------------------------------------------------------------------------------------

Context::Context(CudaOptions const& o) : opt(o), device(o.device), arena(o.memory_cap) {
  int count = 0;
  cudaError_t const e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    cudaGetLastError();
    fail(Errc::kUnsupported, std::string("cuda backend: no CUDA device is available (") +
                                 (e != cudaSuccess ? cudaGetErrorString(e) : "the driver reports 0 devices") +
                                 "); use the CPU backend");
  }
  if (o.device < 0 || o.device >= count) {
    fail(Errc::kInvalidArgument, "cuda backend: device " + std::to_string(o.device) + " does not exist (" +
                                     std::to_string(count) + " device(s))");
  }
  if (o.dtype != DType::kF32 && o.dtype != DType::kF16 && o.dtype != DType::kBF16) {
    fail(Errc::kUnsupported, "cuda backend: dtype " + std::string(dtype_name(o.dtype)) +
                                 " is not supported; use f32, f16 or bf16");
  }
  FD_CUDA_CHECK(cudaSetDevice(device));
  FD_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  if (o.dtype == DType::kBF16 && prop.major < 8) {
    fail(Errc::kUnsupported, "cuda backend: bf16 needs compute capability 8.0 or newer; " + std::string(prop.name) +
                                 " is " + std::to_string(prop.major) + "." + std::to_string(prop.minor) +
                                 " (use f16 or f32)");
  }
  FD_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  FD_CUBLAS_CHECK(cublasCreate(&blas));
  FD_CUBLAS_CHECK(cublasSetStream(blas, stream));
  FD_CUBLAS_CHECK(cublasSetMathMode(blas, o.allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  // A fixed cuBLAS workspace: no allocation inside GEMM calls (and what graph capture requires).
  blas_workspace_bytes = std::size_t{32} << 20;
  // Outside the arena: it lives as long as the context and must not count against memory_cap.
  void* ws = nullptr;
  FD_CUDA_CHECK(cudaMalloc(&ws, blas_workspace_bytes));
  blas_workspace = static_cast<std::byte*>(ws);
  FD_CUBLAS_CHECK(cublasSetWorkspace(blas, blas_workspace, blas_workspace_bytes));
  FD_CUDNN_CHECK(cudnnCreate(&dnn));
  FD_CUDNN_CHECK(cudnnSetStream(dnn, stream));
}

Context::~Context() {
  cudaSetDevice(device);
  if (stream) cudaStreamSynchronize(stream);
  for (auto& [key, p] : conv_plans) {
    cudnnDestroyTensorDescriptor(p.x);
    cudnnDestroyTensorDescriptor(p.y);
    cudnnDestroyFilterDescriptor(p.w);
    cudnnDestroyConvolutionDescriptor(p.conv);
  }
  if (dnn) cudnnDestroy(dnn);
  if (blas) cublasDestroy(blas);
  if (blas_workspace) cudaFree(blas_workspace);
  arena.trim();
  if (stream) cudaStreamDestroy(stream);
}

void Context::activate() const {
  int cur = -1;
  if (cudaGetDevice(&cur) != cudaSuccess || cur != device) FD_CUDA_CHECK(cudaSetDevice(device));
}

std::shared_ptr<std::byte> Context::scratch(std::size_t bytes) {
  std::size_t const r = Arena::round(bytes);
  std::byte* p = arena.acquire(r);
  std::shared_ptr<Context> keep = self.lock();
  return std::shared_ptr<std::byte>(p, [keep, r](std::byte* q) { keep->arena.release(q, r); });
}

}  // namespace cuda_detail

// ---- Cuda -----------------------------------------------------------------------------------------

Cuda::Cuda(CudaOptions options) : ctx_(std::make_shared<cuda_detail::Context>(options)) { ctx_->self = ctx_; }

bool Cuda::available() noexcept { return device_count() > 0; }

int Cuda::device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

std::shared_ptr<std::byte> Cuda::allocate(std::size_t bytes) const {
  ctx_->activate();
  if (cuda_detail::GraphPool* g = cuda_detail::t_graph) {
    std::size_t const r = cuda_detail::Arena::round(bytes);
    std::byte* p = g->acquire(r);
    std::shared_ptr<cuda_detail::GraphPool> keep = g->shared_from_this();
    return std::shared_ptr<std::byte>(p, [keep, r](std::byte* q) { keep->release(q, r); });
  }
  return ctx_->scratch(bytes);
}

void Cuda::synchronize() const {
  if (cuda_detail::t_graph) return;  // inside a captured region the graph's launch is the sync point
  ctx_->activate();
  FD_CUDA_CHECK(cudaStreamSynchronize(ctx_->stream));
}

void Cuda::copy_from_host(void* dst, void const* src, std::size_t bytes) const {
  if (bytes == 0) return;
  ctx_->activate();
  if (cuda_detail::GraphPool* g = cuda_detail::t_graph) {
    // Captured regions copy from pinned slots; a replay refreshes the slot and issues nothing.
    void* slot = g->upload_slot(bytes);
    std::memcpy(slot, src, bytes);
    if (!g->replaying) FD_CUDA_CHECK(cudaMemcpyAsync(dst, slot, bytes, cudaMemcpyHostToDevice, ctx_->stream));
    return;
  }
  // Pageable source: the call returns once the bytes are staged, so the caller may free src at once.
  FD_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx_->stream));
}

void Cuda::copy_to_host(void* dst, void const* src, std::size_t bytes) const {
  if (bytes == 0) return;
  if (cuda_detail::t_graph) {
    fail(Errc::kUnsupported, "cuda graph: a captured region cannot copy device data to the host (" +
                                 std::to_string(bytes) + " bytes); read results after the region");
  }
  ctx_->activate();
  FD_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx_->stream));
  FD_CUDA_CHECK(cudaStreamSynchronize(ctx_->stream));
}

void Cuda::copy(void* dst, void const* src, std::size_t bytes) const {
  if (bytes == 0 || cuda_detail::replaying()) return;
  ctx_->activate();
  FD_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx_->stream));
}

DType Cuda::dtype() const noexcept { return ctx_->opt.dtype; }
CudaOptions const& Cuda::options() const noexcept { return ctx_->opt; }

std::string Cuda::device_name() const {
  return std::string(ctx_->prop.name) + " (sm_" + std::to_string(compute_capability()) + ")";
}

int Cuda::compute_capability() const noexcept { return ctx_->prop.major * 10 + ctx_->prop.minor; }

CudaMemoryStats Cuda::memory() const {
  ctx_->activate();
  return ctx_->arena.stats();
}
void Cuda::reset_peak() const noexcept { ctx_->arena.reset_peak(); }
void Cuda::trim_pool() const {
  ctx_->activate();
  FD_CUDA_CHECK(cudaStreamSynchronize(ctx_->stream));
  ctx_->arena.trim();
}

std::uint64_t Cuda::flops() const noexcept { return ctx_->flops.load(std::memory_order_relaxed); }
void Cuda::reset_flops() const noexcept { ctx_->flops.store(0, std::memory_order_relaxed); }
void Cuda::add_flops(std::uint64_t n) const noexcept { ctx_->flops.fetch_add(n, std::memory_order_relaxed); }

}  // namespace fd::backend
