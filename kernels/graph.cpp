// fd::backend::CudaGraphs: capture a region's device work once, replay it with refreshed uploads.

#include <map>
#include <mutex>

#include "fd/backend/cuda/graph.hpp"
#include "fd/backend/cuda/ops.hpp"
#include "cuda_context.hpp"

namespace fd::backend {
namespace cuda_detail {

struct CapturedRegion {
  ~CapturedRegion() {
    if (exec) cudaGraphExecDestroy(exec);
    if (done) cudaEventDestroy(done);
  }
  int seen = 0;
  std::vector<Tensor<Cuda>> inputs, outputs;  // fixed addresses the graph reads and writes
  std::shared_ptr<GraphPool> pool;
  cudaGraphExec_t exec = nullptr;
  cudaEvent_t done = nullptr;
};

struct GraphCache {
  explicit GraphCache(Cuda const& b) : be(b) {}
  Cuda be;
  std::mutex mu;
  std::map<std::string, std::unique_ptr<CapturedRegion>> regions;
  CudaGraphs::Stats stats;
};

namespace {

std::string key_of(std::string const& name, CudaGraphs::Tensors const& inputs) {
  std::string k = name;
  for (auto const& t : inputs) {
    k += '|';
    k += t.defined() ? t.shape().str() + std::string(dtype_name(t.dtype())) : "-";
  }
  return k;
}

// Sets the calling thread's graph pool for the duration of a scope.
struct PoolScope {
  explicit PoolScope(GraphPool* g) { t_graph = g; }
  ~PoolScope() { t_graph = nullptr; }
};

CudaGraphs::Tensors clone_all(Cuda const& be, CudaGraphs::Tensors const& ts) {
  CudaGraphs::Tensors out;
  out.reserve(ts.size());
  for (auto const& t : ts) out.push_back(t.defined() ? t.clone(be) : t);
  return out;
}

}  // namespace
}  // namespace cuda_detail

CudaGraphs::CudaGraphs(Cuda const& be) : cache_(std::make_shared<cuda_detail::GraphCache>(be)) {}

CudaGraphs::Tensors CudaGraphs::run(std::string const& name, Tensors const& inputs, Region const& region) const {
  using namespace cuda_detail;
  Cuda const& be = cache_->be;
  Context& cx = be.context();
  cx.activate();
  if (t_graph) return region(inputs);  // nested in a region being recorded or replayed: part of it
  std::unique_lock<std::mutex> lock(cache_->mu);
  auto& slot = cache_->regions[key_of(name, inputs)];
  if (!slot) slot = std::make_unique<CapturedRegion>();
  CapturedRegion& r = *slot;

  if (r.seen == 0) {  // warm-up: plans, heuristics and arena blocks outside any capture
    ++r.seen;
    ++cache_->stats.eager;
    lock.unlock();
    return region(inputs);
  }

  if (!r.exec) {  // capture
    r.inputs = clone_all(be, inputs);
    auto pool = std::make_shared<GraphPool>();
    FD_CUDA_CHECK(cudaStreamBeginCapture(cx.stream, cudaStreamCaptureModeRelaxed));
    Tensors outs;
    try {
      PoolScope scope(pool.get());
      outs = region(r.inputs);
    } catch (...) {
      cudaGraph_t g = nullptr;
      cudaStreamEndCapture(cx.stream, &g);
      if (g) cudaGraphDestroy(g);
      cudaGetLastError();
      r.inputs.clear();
      throw;
    }
    cudaGraph_t graph = nullptr;
    FD_CUDA_CHECK(cudaStreamEndCapture(cx.stream, &graph));
    cudaError_t const inst = cudaGraphInstantiate(&r.exec, graph, 0);
    cudaGraphDestroy(graph);
    FD_CUDA_CHECK(inst);
    FD_CUDA_CHECK(cudaEventCreateWithFlags(&r.done, cudaEventDisableTiming));
    pool->frozen = true;
    r.pool = std::move(pool);
    r.outputs = std::move(outs);
    ++cache_->stats.captures;
  } else {  // replay: refresh uploads, check allocations, issue nothing
    FD_CUDA_CHECK(cudaEventSynchronize(r.done));  // the last launch has read the pinned slots
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      if (inputs[i].defined()) inputs[i].copy_to(be, r.inputs[i]);
    }
    GraphPool& pool = *r.pool;
    pool.replaying = true;
    pool.cursor = pool.slot_cursor = 0;
    Tensors outs;
    try {
      PoolScope scope(&pool);
      outs = region(r.inputs);
    } catch (...) {
      pool.replaying = false;
      throw;
    }
    pool.replaying = false;
    bool same = pool.cursor == pool.tape.size() && pool.slot_cursor == pool.slots.size() &&
                outs.size() == r.outputs.size();
    for (std::size_t i = 0; same && i < outs.size(); ++i) same = outs[i].raw() == r.outputs[i].raw();
    if (!same) {
      fail(Errc::kBackend, "cuda graph: replay of region '" + name + "' did not repeat its capture (" +
                               std::to_string(pool.cursor) + "/" + std::to_string(pool.tape.size()) +
                               " allocations, " + std::to_string(pool.slot_cursor) + "/" +
                               std::to_string(pool.slots.size()) + " uploads)");
    }
    ++cache_->stats.replays;
  }
  FD_CUDA_CHECK(cudaGraphLaunch(r.exec, cx.stream));
  FD_CUDA_CHECK(cudaEventRecord(r.done, cx.stream));
  return clone_all(be, r.outputs);
}

CudaGraphs::Stats CudaGraphs::stats() const {
  std::lock_guard<std::mutex> lock(cache_->mu);
  return cache_->stats;
}

void CudaGraphs::clear() const {
  std::lock_guard<std::mutex> lock(cache_->mu);
  cache_->be.synchronize();
  cache_->regions.clear();
}

}  // namespace fd::backend
