#pragma once
/// @file
/// DecodeTap: an observer of a decoder's named intermediate tensors (the fixtures' debug names).

#include <functional>
#include <string>

#include "fd/core/tensor.hpp"

namespace fd::models {

/// Receives named intermediate tensors of a decode, for parity checks. Empty = no observation (and the
/// decoders keep their fused fast paths).
template <class B>
using DecodeTap = std::function<void(std::string const& name, Tensor<B> const& value)>;

}  // namespace fd::models
