// conv2d of the CUDA backend on cuDNN (NCHW). Descriptors and the algorithm are chosen once per shape
// and cached in the context; the bias (per channel, or per sample and channel) and the residual run
// in one epilogue kernel, since cuDNN's fused bias path has no per-sample bias.

#include <vector>

#include "ops_common.hpp"

namespace fd::backend {

using namespace cuda_detail;
namespace k = cuda_kernels;

namespace {

cudnnDataType_t dnn_type(DType d) {
  switch (d) {
    case DType::kF32: return CUDNN_DATA_FLOAT;
    case DType::kF16: return CUDNN_DATA_HALF;
    case DType::kBF16: return CUDNN_DATA_BFLOAT16;
    default: fail(Errc::kDTypeMismatch, "conv2d: dtype " + std::string(dtype_name(d)) + " has no cuDNN type");
  }
}

ConvPlan const& plan_for(Context& cx, ConvKey const& key, DType dt) {
  std::lock_guard<std::mutex> lock(cx.plans_mu);
  auto it = cx.conv_plans.find(key);
  if (it != cx.conv_plans.end()) return it->second;
  ConvPlan p;
  cudnnDataType_t const t = dnn_type(dt);
  i64 const ho = (key.h + 2 * key.pad - key.r) / key.stride + 1, wo = (key.w + 2 * key.pad - key.s) / key.stride + 1;
  FD_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p.x));
  FD_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p.y));
  FD_CUDNN_CHECK(cudnnCreateFilterDescriptor(&p.w));
  FD_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p.conv));
  FD_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p.x, CUDNN_TENSOR_NCHW, t, static_cast<int>(key.n), static_cast<int>(key.c),
                                            static_cast<int>(key.h), static_cast<int>(key.w)));
  FD_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p.y, CUDNN_TENSOR_NCHW, t, static_cast<int>(key.n), static_cast<int>(key.k),
                                            static_cast<int>(ho), static_cast<int>(wo)));
  FD_CUDNN_CHECK(cudnnSetFilter4dDescriptor(p.w, t, CUDNN_TENSOR_NCHW, static_cast<int>(key.k), static_cast<int>(key.c),
                                            static_cast<int>(key.r), static_cast<int>(key.s)));
  FD_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(p.conv, key.pad, key.pad, key.stride, key.stride, 1, 1,
                                                 CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  cudnnMathType_t const math = dt != DType::kF32 ? CUDNN_TENSOR_OP_MATH
                               : cx.opt.allow_tf32 ? CUDNN_DEFAULT_MATH
                                                   : CUDNN_FMA_MATH;
  FD_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, math));
  int max_algos = 0;
  FD_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(cx.dnn, &max_algos));
  std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(static_cast<std::size_t>(std::max(max_algos, 1)));
  int found = 0;
  FD_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(cx.dnn, p.x, p.w, p.conv, p.y, max_algos, &found, perf.data()));
  // Heuristic order; skip algorithms that need more than 1 GiB of workspace or would change the math.
  bool chosen = false;
  for (int i = 0; i < found && !chosen; ++i) {
    auto const& r = perf[static_cast<std::size_t>(i)];
    if (r.status != CUDNN_STATUS_SUCCESS || r.memory > (std::size_t{1} << 30)) continue;
    if (dt == DType::kF32 && !cx.opt.allow_tf32 && r.mathType == CUDNN_TENSOR_OP_MATH) continue;
    p.algo = r.algo;
    p.workspace = r.memory;
    chosen = true;
  }
  if (!chosen) {
    fail(Errc::kUnsupported, "conv2d: cuDNN has no algorithm for input [" + std::to_string(key.n) + ", " +
                                 std::to_string(key.c) + ", " + std::to_string(key.h) + ", " + std::to_string(key.w) +
                                 "] with kernel " + std::to_string(key.r) + "x" + std::to_string(key.s) + " in " +
                                 std::string(dtype_name(dt)));
  }
  return cx.conv_plans.emplace(key, p).first->second;
}

}  // namespace

CudaTensor conv2d(Cuda const& be, CudaTensor const& x, CudaTensor const& w, CudaTensor const& bias, Conv2dParams p,
                  Conv2dEpilogue<Cuda> const& epi) {
  require_contiguous("conv2d", "input", x);
  require_contiguous("conv2d", "weight", w);
  require_rank("conv2d", "input", x, 4);
  require_rank("conv2d", "weight", w, 4);
  i64 const n = x.dim(0), cin = x.dim(1), h = x.dim(2), wd = x.dim(3);
  i64 const cout = w.dim(0), kh = w.dim(2), kw = w.dim(3);
  if (w.dim(1) != cin) {
    fail(Errc::kShapeMismatch, "conv2d: input has " + std::to_string(cin) + " channels, weight " + w.shape().str());
  }
  if (p.stride < 1 || p.padding < 0) fail(Errc::kInvalidArgument, "conv2d: bad stride/padding");
  if (h + 2 * p.padding < kh || wd + 2 * p.padding < kw) {
    fail(Errc::kShapeMismatch, "conv2d: input " + x.shape().str() + " too small for kernel " + w.shape().str());
  }
  i64 const ho = (h + 2 * p.padding - kh) / p.stride + 1, wo = (wd + 2 * p.padding - kw) / p.stride + 1;
  if (bias.defined()) {
    require_contiguous("conv2d", "bias", bias);
    require_numel("conv2d", "bias", bias, cout);
  }
  if (epi.sample_bias.defined()) {
    require_contiguous("conv2d", "sample bias", epi.sample_bias);
    require_numel("conv2d", "sample bias", epi.sample_bias, n * cout);
  }
  DType const dt = w.dtype();
  CudaTensor out = CudaTensor::empty(be, {n, cout, ho, wo}, dt);
  CudaTensor res;
  if (epi.residual.defined()) {
    require_contiguous("conv2d", "residual", epi.residual);
    if (!(epi.residual.shape() == out.shape())) {
      fail(Errc::kShapeMismatch, "conv2d: residual " + epi.residual.shape().str() + " vs output " + out.shape().str());
    }
    res = as_dtype(be, epi.residual, dt);
  }
  if (n == 0 || cout == 0) return out;
  CudaTensor const xs = as_dtype(be, x, dt), bs = as_dtype(be, bias, dt), sb = as_dtype(be, epi.sample_bias, dt);
  Context& cx = ctx(be);
  ConvKey const key{n, cin, h, wd, cout, kh, kw, p.stride, p.padding, static_cast<int>(dt)};
  ConvPlan const& plan = plan_for(cx, key, dt);
  if (replaying()) return out;  // a graph replay issues no device work (allocations above still count)
  std::shared_ptr<std::byte> ws = plan.workspace ? be.allocate(plan.workspace) : nullptr;
  float const one = 1.0f, zero = 0.0f;
  be.add_flops(static_cast<std::uint64_t>(2 * n * cout * ho * wo * cin * kh * kw));
  FD_CUDNN_CHECK(cudnnConvolutionForward(cx.dnn, &one, plan.x, xs.raw(), plan.w, w.raw(), plan.conv, plan.algo,
                                         ws.get(), plan.workspace, &zero, plan.y, out.raw()));
  k::channel_epilogue(dt, out.raw(), ptr(bs), ptr(sb), ptr(res), n, cout, ho * wo, cx.stream);
  return out;
}

}  // namespace fd::backend
