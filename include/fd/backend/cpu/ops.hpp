#pragma once
/// @file
/// Every op of the CPU backend. Ops are free functions taking `Cpu const&` first, found by
/// argument-dependent lookup from model code (`conv2d(be, x, w, b, {})`).

#include "fd/backend/cpu/backend.hpp"
#include "fd/backend/cpu/ops_attention.hpp"
#include "fd/backend/cpu/ops_conv.hpp"
#include "fd/backend/cpu/ops_elementwise.hpp"
#include "fd/backend/cpu/ops_image.hpp"
#include "fd/backend/cpu/ops_linear.hpp"
#include "fd/backend/cpu/ops_norm.hpp"
