#pragma once
/// @file
/// Basic layers with checkpoint-named parameters: Conv2d, Linear, GroupNorm, LayerNorm.

#include <string>

#include "fd/backend/op_params.hpp"
#include "fd/nn/parameter.hpp"

namespace fd::nn {

/// torch.nn.Conv2d with square kernel, zero padding. Parameters: weight [out, in, k, k], bias [out].
template <class B>
struct Conv2d {
  int in_channels = 0, out_channels = 0, kernel = 1, stride = 1, padding = 0;
  bool has_bias = true;
  Tensor<B> weight, bias;

  Conv2d() = default;
  Conv2d(B const& be, int in, int out, int k, int stride_ = 1, int padding_ = 0, bool with_bias = true)
      : in_channels(in), out_channels(out), kernel(k), stride(stride_), padding(padding_), has_bias(with_bias) {
    weight = parameter(be, {out, in, k, k});
    if (has_bias) bias = parameter(be, {out});
  }

  template <class V>
  void visit(V&& v, std::string const& p) {
    v(p + "weight", weight);
    if (has_bias) v(p + "bias", bias);
  }

  Tensor<B> operator()(B const& be, Tensor<B> const& x, backend::Conv2dEpilogue<B> const& epi = {}) const {
    return conv2d(be, x, weight, bias, backend::Conv2dParams{stride, padding}, epi);  // [N, out, Ho, Wo]
  }
};

/// torch.nn.Linear. Parameters: weight [out, in], bias [out] (optional).
template <class B>
struct Linear {
  int in_features = 0, out_features = 0;
  bool has_bias = true;
  Tensor<B> weight, bias;

  Linear() = default;
  Linear(B const& be, int in, int out, bool with_bias = true)
      : in_features(in), out_features(out), has_bias(with_bias) {
    weight = parameter(be, {out, in});
    if (has_bias) bias = parameter(be, {out});
  }
  /// A Linear whose weight (and bias) are views into storage owned elsewhere (fused projections).
  static Linear view_of(Tensor<B> w, Tensor<B> b = {}) {
    Linear l;
    l.in_features = static_cast<int>(w.dim(1));
    l.out_features = static_cast<int>(w.dim(0));
    l.has_bias = b.defined();
    l.weight = w;
    l.bias = b;
    return l;
  }

  template <class V>
  void visit(V&& v, std::string const& p) {
    v(p + "weight", weight);
    if (has_bias) v(p + "bias", bias);
  }

  /// y[..., out] = x[..., in] W^T + b (+ residual).
  Tensor<B> operator()(B const& be, Tensor<B> const& x, Tensor<B> const& residual = {}) const {
    return linear(be, x, weight, bias, residual);
  }
};

/// torch.nn.GroupNorm(groups, channels, eps), affine.
template <class B>
struct GroupNorm {
  int groups = 32, channels = 0;
  float eps = 1e-5f;
  Tensor<B> weight, bias;

  GroupNorm() = default;
  GroupNorm(B const& be, int groups_, int channels_, float eps_) : groups(groups_), channels(channels_), eps(eps_) {
    weight = parameter(be, {channels});
    bias = parameter(be, {channels});
  }

  template <class V>
  void visit(V&& v, std::string const& p) {
    v(p + "weight", weight);
    v(p + "bias", bias);
  }

  Tensor<B> operator()(B const& be, Tensor<B> const& x, backend::Activation act = backend::Activation::kNone) const {
    return group_norm(be, x, groups, weight, bias, eps, act);
  }
};

/// torch.nn.LayerNorm(channels, eps) over the last dimension, affine.
template <class B>
struct LayerNorm {
  int channels = 0;
  float eps = 1e-5f;
  Tensor<B> weight, bias;

  LayerNorm() = default;
  LayerNorm(B const& be, int channels_, float eps_) : channels(channels_), eps(eps_) {
    weight = parameter(be, {channels});
    bias = parameter(be, {channels});
  }

  template <class V>
  void visit(V&& v, std::string const& p) {
    v(p + "weight", weight);
    v(p + "bias", bias);
  }

  Tensor<B> operator()(B const& be, Tensor<B> const& x) const { return layer_norm(be, x, weight, bias, eps); }
};

}  // namespace fd::nn
