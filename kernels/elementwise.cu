// Elementwise and data-movement kernels of the CUDA backend (grid-stride loops, fp32 arithmetic).

#include "kernel_common.cuh"
#include "launch.hpp"

namespace fd::backend::cuda_kernels {

namespace {

template <class T>
__global__ void unary_k(T* x, i64 n, Unary op, float a, float b) {
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < n; i += i64{gridDim.x} * blockDim.x) {
    float v = ld(x + i);
    switch (op) {
      case Unary::kSilu: v = silu_f(v); break;
      case Unary::kGelu: v = gelu_f(v); break;
      case Unary::kQuickGelu: v = v / (1.0f + expf(-1.702f * v)); break;
      case Unary::kRelu: v = fmaxf(v, 0.0f); break;
      case Unary::kScale: v = v * a; break;
      case Unary::kAddScalar: v = v + a; break;
      case Unary::kTanhClamp: v = tanhf(v / a) * a; break;
      case Unary::kClamp: v = fminf(fmaxf(v, a), b); break;
    }
    st(x + i, v);
  }
}

template <class S, class D>
__global__ void cast_k(S const* src, D* dst, i64 n) {
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < n; i += i64{gridDim.x} * blockDim.x) {
    st(dst + i, ld(src + i));
  }
}

template <class T>
__global__ void axpy_k(T* a, T const* b, float alpha, i64 n) {
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < n; i += i64{gridDim.x} * blockDim.x) {
    st(a + i, ld(a + i) + alpha * ld(b + i));
  }
}

template <class T>
__global__ void geglu_k(T const* x, T* y, i64 rows, i64 d) {
  i64 const n = rows * d;
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < n; i += i64{gridDim.x} * blockDim.x) {
    i64 const r = i / d, j = i % d;
    T const* row = x + r * 2 * d;
    st(y + i, ld(row + j) * gelu_f(ld(row + d + j)));
  }
}

template <class T>
__global__ void embedding_k(T const* table, i64 const* ids, T const* pos, T* y, i64 n, i64 len, i64 d) {
  i64 const total = n * d;
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < total; i += i64{gridDim.x} * blockDim.x) {
    i64 const r = i / d, j = i % d;
    float v = ld(table + ids[r] * d + j);
    if (pos) v += ld(pos + (r % len) * d + j);
    st(y + i, v);
  }
}

template <class T>
__global__ void concat_k(T const* a, T const* b, T* y, i64 n, i64 sa, i64 sb) {
  i64 const row = sa + sb, total = n * row;
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < total; i += i64{gridDim.x} * blockDim.x) {
    i64 const r = i / row, j = i % row;
    y[i] = j < sa ? a[r * sa + j] : b[r * sb + (j - sa)];
  }
}

template <class T>
__global__ void upsample_k(T const* x, T* y, i64 planes, i64 h, i64 w, i64 oh, i64 ow, float sh, float sw) {
  i64 const total = planes * oh * ow;
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < total; i += i64{gridDim.x} * blockDim.x) {
    i64 const p = i / (oh * ow), rem = i % (oh * ow), oy = rem / ow, ox = rem % ow;
    i64 const iy = min(static_cast<i64>(floorf(static_cast<float>(oy) * sh)), h - 1);
    i64 const ix = min(static_cast<i64>(floorf(static_cast<float>(ox) * sw)), w - 1);
    y[i] = x[(p * h + iy) * w + ix];
  }
}

template <class T>
__global__ void channel_epilogue_k(T* y, T const* bias, T const* sample_bias, T const* residual, i64 n, i64 c,
                                   i64 spatial) {
  i64 const total = n * c * spatial;
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < total; i += i64{gridDim.x} * blockDim.x) {
    i64 const nc = i / spatial, ch = nc % c;
    float v = ld(y + i);
    if (sample_bias) {
      v += ld(sample_bias + nc);
    } else if (bias) {
      v += ld(bias + ch);
    }
    if (residual) v += ld(residual + i);
    st(y + i, v);
  }
}

template <class T>
__global__ void row_epilogue_k(T* y, T const* bias, T const* residual, i64 rows, i64 cols) {
  i64 const total = rows * cols;
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < total; i += i64{gridDim.x} * blockDim.x) {
    float v = ld(y + i);
    if (bias) v += ld(bias + i % cols);
    if (residual) v += ld(residual + i);
    st(y + i, v);
  }
}

template <class T>
__global__ void modulate_silu_k(T* x, T const* mod, i64 n, i64 c, i64 spatial) {
  i64 const total = n * c * spatial;
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < total; i += i64{gridDim.x} * blockDim.x) {
    i64 const nc = i / spatial, b = nc / c, ch = nc % c;
    float const sc = 1.0f + ld(mod + b * 2 * c + ch), sh = ld(mod + b * 2 * c + c + ch);
    st(x + i, silu_f(ld(x + i) * sc + sh));
  }
}

__device__ __forceinline__ float ramp(i64 i, i64 len) {
  return i < len ? static_cast<float>(i + 1) / static_cast<float>(len + 1) : 1.0f;
}

template <class T>
__global__ void composite_k(T* dst, T const* tile, i64 planes, i64 H, i64 W, i64 h, i64 w, i64 y0, i64 x0,
                            i64 ramp_top, i64 ramp_left) {
  i64 const total = planes * h * w;
  for (i64 i = blockIdx.x * i64{blockDim.x} + threadIdx.x; i < total; i += i64{gridDim.x} * blockDim.x) {
    i64 const p = i / (h * w), rem = i % (h * w), y = rem / w, x = rem % w;
    float const a = ramp(y, ramp_top) * ramp(x, ramp_left);
    T* d = dst + (p * H + y0 + y) * W + x0 + x;
    float const s = ld(tile + i);
    st(d, a == 1.0f ? s : ld(d) * (1.0f - a) + s * a);
  }
}

}  // namespace

void unary(DType dt, void* x, i64 n, Unary op, float a, float b, cudaStream_t s) {
  if (cuda_detail::replaying()) return;  // a graph replay issues no device work
  if (n == 0) return;
  dispatch(dt, "elementwise", [&](auto t) {
    using T = decltype(t);
    unary_k<T><<<blocks_for(n), kThreads, 0, s>>>(static_cast<T*>(x), n, op, a, b);
  });
  FD_CUDA_LAUNCHED("unary_k");
}

void cast(DType from, void const* src, DType to, void* dst, i64 n, cudaStream_t s) {
  if (cuda_detail::replaying()) return;  // a graph replay issues no device work
  if (n == 0) return;
  dispatch(from, "cast", [&](auto fs) {
    using S = decltype(fs);
    dispatch(to, "cast", [&](auto fd_) {
      using D = decltype(fd_);
      cast_k<S, D><<<blocks_for(n), kThreads, 0, s>>>(static_cast<S const*>(src), static_cast<D*>(dst), n);
    });
  });
  FD_CUDA_LAUNCHED("cast_k");
}

void axpy(DType dt, void* a, void const* b, float alpha, i64 n, cudaStream_t s) {
  if (cuda_detail::replaying()) return;  // a graph replay issues no device work
  if (n == 0) return;
  dispatch(dt, "add", [&](auto t) {
    using T = decltype(t);
    axpy_k<T><<<blocks_for(n), kThreads, 0, s>>>(static_cast<T*>(a), static_cast<T const*>(b), alpha, n);
  });
  FD_CUDA_LAUNCHED("axpy_k");
}

void geglu(DType dt, void const* x, void* y, i64 rows, i64 d, cudaStream_t s) {
  if (cuda_detail::replaying()) return;  // a graph replay issues no device work
  if (rows * d == 0) return;
  dispatch(dt, "geglu", [&](auto t) {
    using T = decltype(t);
    geglu_k<T><<<blocks_for(rows * d), kThreads, 0, s>>>(static_cast<T const*>(x), static_cast<T*>(y), rows, d);
  });
  FD_CUDA_LAUNCHED("geglu_k");
}

void embedding(DType dt, void const* table, i64 const* ids, void const* pos, void* y, i64 n, i64 len, i64 d,
               cudaStream_t s) {
  if (cuda_detail::replaying()) return;  // a graph replay issues no device work
  if (n * d == 0) return;
  dispatch(dt, "embedding", [&](auto t) {
    using T = decltype(t);
    embedding_k<T><<<blocks_for(n * d), kThreads, 0, s>>>(static_cast<T const*>(table), ids,
                                                          static_cast<T const*>(pos), static_cast<T*>(y), n, len, d);
  });
  FD_CUDA_LAUNCHED("embedding_k");
}

void concat_rows(DType dt, void const* a, void const* b, void* y, i64 n, i64 sa, i64 sb, cudaStream_t s) {
  if (cuda_detail::replaying()) return;  // a graph replay issues no device work
  if (n * (sa + sb) == 0) return;
  dispatch(dt, "concat", [&](auto t) {
    using T = decltype(t);
    concat_k<T><<<blocks_for(n * (sa + sb)), kThreads, 0, s>>>(static_cast<T const*>(a), static_cast<T const*>(b),
                                                               static_cast<T*>(y), n, sa, sb);
  });
  FD_CUDA_LAUNCHED("concat_k");
}

void upsample_nearest(DType dt, void const* x, void* y, i64 planes, i64 h, i64 w, i64 oh, i64 ow, cudaStream_t s) {
  if (cuda_detail::replaying()) return;  // a graph replay issues no device work
  if (planes * oh * ow == 0) return;
  float const sh = static_cast<float>(h) / static_cast<float>(oh), sw = static_cast<float>(w) / static_cast<float>(ow);
  dispatch(dt, "upsample_nearest", [&](auto t) {
    using T = decltype(t);
    upsample_k<T><<<blocks_for(planes * oh * ow), kThreads, 0, s>>>(static_cast<T const*>(x), static_cast<T*>(y),
                                                                    planes, h, w, oh, ow, sh, sw);
  });
  FD_CUDA_LAUNCHED("upsample_k");
}

void channel_epilogue(DType dt, void* y, void const* bias, void const* sample_bias, void const* residual, i64 n, i64 c,
                      i64 spatial, cudaStream_t s) {
  if (cuda_detail::replaying()) return;  // a graph replay issues no device work
  if (n * c * spatial == 0 || (!bias && !sample_bias && !residual)) return;
  dispatch(dt, "conv2d epilogue", [&](auto t) {
    using T = decltype(t);
    channel_epilogue_k<T><<<blocks_for(n * c * spatial), kThreads, 0, s>>>(
        static_cast<T*>(y), static_cast<T const*>(bias), static_cast<T const*>(sample_bias),
        static_cast<T const*>(residual), n, c, spatial);
  });
  FD_CUDA_LAUNCHED("channel_epilogue_k");
}

void row_epilogue(DType dt, void* y, void const* bias, void const* residual, i64 rows, i64 cols, cudaStream_t s) {
  if (cuda_detail::replaying()) return;  // a graph replay issues no device work
  if (rows * cols == 0 || (!bias && !residual)) return;
  dispatch(dt, "linear epilogue", [&](auto t) {
    using T = decltype(t);
    row_epilogue_k<T><<<blocks_for(rows * cols), kThreads, 0, s>>>(static_cast<T*>(y), static_cast<T const*>(bias),
                                                                   static_cast<T const*>(residual), rows, cols);
  });
  FD_CUDA_LAUNCHED("row_epilogue_k");
}

void modulate_silu(DType dt, void* x, void const* mod, i64 n, i64 c, i64 spatial, cudaStream_t s) {
  if (cuda_detail::replaying()) return;  // a graph replay issues no device work
  if (n * c * spatial == 0) return;
  dispatch(dt, "modulate", [&](auto t) {
    using T = decltype(t);
    modulate_silu_k<T><<<blocks_for(n * c * spatial), kThreads, 0, s>>>(static_cast<T*>(x),
                                                                        static_cast<T const*>(mod), n, c, spatial);
  });
  FD_CUDA_LAUNCHED("modulate_silu_k");
}

void composite_tile(DType dt, void* dst, void const* tile, i64 planes, i64 H, i64 W, i64 h, i64 w, i64 y0, i64 x0,
                    i64 ramp_top, i64 ramp_left, cudaStream_t s) {
  if (cuda_detail::replaying()) return;  // a graph replay issues no device work
  if (planes * h * w == 0) return;
  dispatch(dt, "composite_tile", [&](auto t) {
    using T = decltype(t);
    composite_k<T><<<blocks_for(planes * h * w), kThreads, 0, s>>>(static_cast<T*>(dst), static_cast<T const*>(tile),
                                                                   planes, H, W, h, w, y0, x0, ramp_top, ramp_left);
  });
  FD_CUDA_LAUNCHED("composite_k");
}

}  // namespace fd::backend::cuda_kernels
