#pragma once
/// @file
/// Backend-neutral parameter types of the ops every backend implements.

#include "fd/core/tensor.hpp"

namespace fd::backend {

struct Conv2dParams {
  int stride = 1;
  int padding = 0;
};

/// What a convolution folds into its output before storing it.
template <class B>
struct Conv2dEpilogue {
  /// [N, Cout]: added per sample and channel in place of the layer bias (bias + projected time
  /// embedding in a ResNet block). Undefined = use the bias argument.
  Tensor<B> sample_bias{};
  /// Same shape as the output: added to it (a ResNet block's shortcut). Undefined = none.
  Tensor<B> residual{};
};

/// An activation applied in the same pass as a normalisation.
enum class Activation { kNone, kSilu };

/// Which keys a query may attend to (attention op).
enum class AttentionMask {
  kNone,    ///< every key
  kCausal,  ///< keys j <= i for query i (CLIP's text encoder)
};

}  // namespace fd::backend
