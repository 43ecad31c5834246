#pragma once
/// @file
/// Umbrella header for users. Library code includes the specific headers it needs.

#include "fd/config.hpp"
#include "fd/error.hpp"
#include "fd/core/dtype.hpp"
#include "fd/core/shape.hpp"
#include "fd/core/tensor.hpp"
#include "fd/core/xtensor.hpp"
#include "fd/backend/traits.hpp"
#include "fd/backend/cpu/ops.hpp"
#include "fd/io/safetensors.hpp"
#include "fd/io/checkpoint.hpp"
#include "fd/io/ldm_checkpoint.hpp"
#include "fd/models/unet/unet.hpp"
#include "fd/models/vae/image_decoder.hpp"
#include "fd/image/postprocess.hpp"
