#pragma once
/// @file
/// Version, contract macros and feature switches shared by every fd header.

#define FD_VERSION_MAJOR 0
#define FD_VERSION_MINOR 1
#define FD_VERSION_PATCH 0

#if defined(NDEBUG) && !defined(FD_ENABLE_ASSERTS)
#define FD_EXPECTS(cond) ((void)0)
#define FD_ASSERT(cond) ((void)0)
#else
#include <cstdio>
#include <cstdlib>
// Internal invariants only: user-facing conditions throw fd::error instead (see error.hpp).
#define FD_EXPECTS(cond)                                                                              \
  ((cond) ? (void)0                                                                                   \
          : (std::fprintf(stderr, "%s:%d: fd precondition failed: %s\n", __FILE__, __LINE__, #cond), \
             std::abort()))
#define FD_ASSERT(cond) FD_EXPECTS(cond)
#endif

namespace fd {

inline constexpr int kVersionMajor = FD_VERSION_MAJOR;
inline constexpr int kVersionMinor = FD_VERSION_MINOR;
inline constexpr int kVersionPatch = FD_VERSION_PATCH;

/// Lets a static_assert in a primary template fire only when that template is instantiated.
template <class...>
inline constexpr bool dependent_false = false;

}  // namespace fd
