#pragma once
/// @file
/// Every op of the CUDA backend, with the same names, arguments and semantics as the CPU ops
/// (fd/backend/cpu/ops_*.hpp), found by argument-dependent lookup from model code. Defined in the
/// compiled library FasterDiffusion::cuda.
///
/// Dtypes: matrix products, convolutions and normalisations compute in the dtype of their weights
/// (the backend's parameter dtype) and cast other operands to it; elementwise ops keep the dtype of
/// the tensor they write. Every op accumulates in fp32.

#include <span>

#include "fd/backend/cuda/backend.hpp"
#include "fd/backend/cuda/graph.hpp"
#include "fd/backend/op_params.hpp"
#include "fd/core/tensor.hpp"

namespace fd::backend {

using CudaTensor = Tensor<Cuda>;

// Matrix products (cuBLAS).
CudaTensor linear(Cuda const& be, CudaTensor const& x, CudaTensor const& w, CudaTensor const& bias = {},
                  CudaTensor const& residual = {});
CudaTensor channels_to_tokens(Cuda const& be, CudaTensor const& x, CudaTensor const& w, CudaTensor const& bias);
CudaTensor tokens_to_channels(Cuda const& be, CudaTensor const& t, CudaTensor const& w, CudaTensor const& bias,
                              CudaTensor const& residual);
CudaTensor attention(Cuda const& be, CudaTensor const& q, CudaTensor const& k, CudaTensor const& v, int heads,
                     float scale, AttentionMask mask = AttentionMask::kNone);

// Convolution (cuDNN) with the UNet's epilogues.
CudaTensor conv2d(Cuda const& be, CudaTensor const& x, CudaTensor const& w, CudaTensor const& bias, Conv2dParams p,
                  Conv2dEpilogue<Cuda> const& epi = {});

// Normalisation.
CudaTensor group_norm(Cuda const& be, CudaTensor const& x, int groups, CudaTensor const& gamma, CudaTensor const& beta,
                      float eps, Activation act = Activation::kNone);
CudaTensor layer_norm(Cuda const& be, CudaTensor const& x, CudaTensor const& gamma, CudaTensor const& beta, float eps);

// Elementwise and data movement.
void silu_(Cuda const& be, CudaTensor& x);
CudaTensor silu(Cuda const& be, CudaTensor const& x);
void gelu_(Cuda const& be, CudaTensor& x);
void quick_gelu_(Cuda const& be, CudaTensor& x);
void relu_(Cuda const& be, CudaTensor& x);
void tanh_clamp_(Cuda const& be, CudaTensor& x, float magnitude);
void clamp_(Cuda const& be, CudaTensor& x, float lo, float hi);
void scale_(Cuda const& be, CudaTensor& x, float s);
void add_scalar_(Cuda const& be, CudaTensor& x, float s);
void add_(Cuda const& be, CudaTensor& a, CudaTensor const& b, float alpha = 1.0f);
CudaTensor add(Cuda const& be, CudaTensor const& a, CudaTensor const& b);
CudaTensor geglu(Cuda const& be, CudaTensor const& x);
CudaTensor embedding(Cuda const& be, CudaTensor const& table, std::span<std::int64_t const> ids, std::int64_t batch,
                     CudaTensor const& positions = {});
CudaTensor concat_channels(Cuda const& be, CudaTensor const& a, CudaTensor const& b);
CudaTensor upsample_nearest(Cuda const& be, CudaTensor const& x, std::int64_t out_h, std::int64_t out_w);
CudaTensor tile_halves(Cuda const& be, CudaTensor const& x, int halves, int times);
CudaTensor timestep_embedding(Cuda const& be, std::span<float const> timesteps, int dim, bool flip_sin_to_cos,
                              float downscale_freq_shift, float max_period = 10000.0f);
void add_rows_(Cuda const& be, CudaTensor& x, CudaTensor const& bias);
void modulate_silu_(Cuda const& be, CudaTensor& x, CudaTensor const& mod);
void composite_tile_(Cuda const& be, CudaTensor& dst, CudaTensor const& tile, std::int64_t y0, std::int64_t x0,
                     std::int64_t ramp_top, std::int64_t ramp_left);

/// Casts x to dtype on the device (a copy; x itself when it already has that dtype).
CudaTensor cast(Cuda const& be, CudaTensor const& x, DType dtype);

}  // namespace fd::backend
