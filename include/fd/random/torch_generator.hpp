#pragma once
/// @file
/// PyTorch-compatible CPU random numbers: one seed gives the same standard-normal tensor as
/// `torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)`,
/// which is how diffusers draws initial latents (and the noise of ancestral steps) with a CPU
/// generator. See docs/random.md.
///
/// What has to match (PyTorch 1.13 and 2.x CPU generator):
///   - The engine is the 32-bit Mersenne Twister (MT19937) seeded with the low 32 bits of the seed,
///     exactly as std::mt19937; `random64()` joins two outputs, the first one as the high word.
///   - float uniforms take the low 24 bits of one output: (x & (2^24 - 1)) * 2^-24, in [0, 1);
///     double uniforms the low 53 bits of random64().
///   - randn of n >= 16 float values fills all n with uniforms, then replaces each block of 16 in place
///     by Box-Muller in float: u1 = 1 - v[j], u2 = v[j + 8], r = sqrt(-2 log u1), theta = 2 pi u2,
///     v[j] = r cos(theta), v[j + 8] = r sin(theta) (j < 8). A tail that is not a whole block is
///     handled by drawing 16 fresh uniforms into the LAST 16 slots and transforming those, so the
///     tail overwrites part of the last whole block and the stream moves on by n + 16 words.
///   - randn of n < 16 values takes them one at a time from a double Box-Muller pair (two random64()
///     uniforms u1, u2: r = sqrt(-2 log(1 - u2)), theta = 2 pi u1; returns r cos(theta) and keeps
///     r sin(theta) for the next single value). That cached value lives in the generator: it survives
///     across calls (also across n >= 16 draws, which neither use nor clear it) and is dropped only
///     by manual_seed.
/// The float block is computed with the log and sincos of PyTorch's x86-64 (AVX2) kernel
/// (fd/random/torch_math.hpp), so results are bit-identical to torch.randn on such builds (the
/// fixture: all 8 cases). PyTorch builds that take the generic path (e.g. ARM) use the C library's
/// functions and an angle formed in double; they differ from these values by about one float ulp.
///
/// @code
///   fd::random::TorchCpuGenerator gen(42);
///   auto latents = fd::random::randn(be, {1, 4, 64, 64}, gen);  // == torch.randn(..., generator=g.manual_seed(42))
/// @endcode

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numbers>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "fd/backend/traits.hpp"
#include "fd/core/shape.hpp"
#include "fd/core/tensor.hpp"
#include "fd/error.hpp"
#include "fd/random/torch_math.hpp"

namespace fd::random {

/// The 32-bit Mersenne Twister (Matsumoto & Nishimura 1998) with PyTorch's seeding: the same
/// sequence as std::mt19937 seeded with `seed mod 2^32`. Kept separate from std::mt19937 so that the
/// state layout is ours (bulk generation, no library-dependent result_type).
class Mt19937 {
 public:
  static constexpr std::size_t kStateSize = 624;

  explicit Mt19937(std::uint64_t seed = 5489) { seed_with(seed); }

  /// Knuth's initialisation (as std::mt19937 and torch): only the low 32 bits of `seed` are used.
  void seed_with(std::uint64_t seed) noexcept {
    seed_ = seed;
    state_[0] = static_cast<std::uint32_t>(seed & 0xffffffffu);
    for (std::size_t i = 1; i < kStateSize; ++i) {
      std::uint32_t const prev = state_[i - 1];
      state_[i] = 1812433253u * (prev ^ (prev >> 30)) + static_cast<std::uint32_t>(i);
    }
    next_ = kStateSize;  // regenerate the block on the first draw
  }

  /// The seed given last (all 64 bits, as torch's initial_seed()).
  std::uint64_t seed() const noexcept { return seed_; }

  std::uint32_t operator()() noexcept {
    if (next_ >= kStateSize) twist();
    std::uint32_t y = state_[next_++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
  }

 private:
  // Regenerates all 624 words; split in three runs so that no index needs a modulo.
  void twist() noexcept {
    constexpr std::size_t kShift = 397;
    auto mix = [](std::uint32_t upper, std::uint32_t lower, std::uint32_t far) noexcept {
      std::uint32_t const y = (upper & 0x80000000u) | (lower & 0x7fffffffu);
      return far ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
    };
    std::size_t i = 0;
    for (; i < kStateSize - kShift; ++i) state_[i] = mix(state_[i], state_[i + 1], state_[i + kShift]);
    for (; i < kStateSize - 1; ++i) state_[i] = mix(state_[i], state_[i + 1], state_[i + kShift - kStateSize]);
    state_[kStateSize - 1] = mix(state_[kStateSize - 1], state_[0], state_[kShift - 1]);
    next_ = 0;
  }

  std::array<std::uint32_t, kStateSize> state_{};
  std::size_t next_ = kStateSize;
  std::uint64_t seed_ = 5489;
};

/// A `torch.Generator("cpu")`: the MT19937 engine plus the cached second value of the double
/// Box-Muller pair. Not thread-safe (one generator per image or per thread).
class TorchCpuGenerator {
 public:
  /// torch's default seed for a fresh generator (`torch.Generator().initial_seed()`).
  static constexpr std::uint64_t kDefaultSeed = 67280421310721ull;

  TorchCpuGenerator() : TorchCpuGenerator(kDefaultSeed) {}
  explicit TorchCpuGenerator(std::uint64_t seed) : engine_(seed) {}

  /// `generator.manual_seed(seed)`: restarts the engine and forgets the cached normal value.
  void manual_seed(std::uint64_t seed) noexcept {
    engine_.seed_with(seed);
    next_double_normal_.reset();
  }

  /// `generator.initial_seed()`.
  std::uint64_t initial_seed() const noexcept { return engine_.seed(); }

  /// One 32-bit engine output (torch's CPUGeneratorImpl::random()).
  std::uint32_t random() noexcept { return engine_(); }

  /// Two engine outputs, the first one in the high word (CPUGeneratorImpl::random64()).
  std::uint64_t random64() noexcept {
    std::uint64_t const hi = engine_();
    std::uint64_t const lo = engine_();
    return (hi << 32) | lo;
  }

  /// A float in [0, 1) from the low 24 bits of one output (torch's uniform_real_distribution<float>).
  float uniform_float() noexcept {
    return static_cast<float>(random() & ((1u << 24) - 1u)) * (1.0f / static_cast<float>(1u << 24));
  }

  /// A double in [0, 1) from the low 53 bits of random64() (uniform_real_distribution<double>).
  double uniform_double() noexcept {
    constexpr std::uint64_t kMask = (std::uint64_t{1} << 53) - 1u;
    return static_cast<double>(random64() & kMask) * (1.0 / static_cast<double>(std::uint64_t{1} << 53));
  }

  /// One N(0, 1) double the way torch's scalar path draws it (at::normal_distribution<double>):
  /// the cached sine half of the previous pair if there is one, else a new pair.
  double normal_double() {
    if (next_double_normal_) {
      double const v = *next_double_normal_;
      next_double_normal_.reset();
      return v;
    }
    double const u1 = uniform_double();
    double const u2 = uniform_double();
    // 1 - u2 is exact (u2 is a multiple of 2^-53), so log(1 - u2) equals PyTorch 2's log1p(-u2).
    double const r = std::sqrt(-2.0 * std::log(1.0 - u2));
    double const theta = 2.0 * std::numbers::pi * u1;
    next_double_normal_ = r * std::sin(theta);
    return r * std::cos(theta);
  }

  /// Whether a cached normal value is waiting (the next scalar-path value uses it).
  bool has_cached_normal() const noexcept { return next_double_normal_.has_value(); }

  /// `torch.randn(out.size(), generator=this, dtype=torch.float32)`, continuing the stream as torch
  /// does across calls. A tensor's draw depends only on its element count, not on its shape.
  void randn(std::span<float> out) {
    std::size_t const n = out.size();
    if (n < kBlock) {
      for (float& v : out) v = static_cast<float>(normal_double());
      return;
    }
    for (float& v : out) v = uniform_float();
    for (std::size_t i = 0; i + kBlock <= n; i += kBlock) box_muller_block(out.data() + i);
    if (n % kBlock != 0) {
      float* const tail = out.data() + (n - kBlock);
      for (std::size_t i = 0; i < kBlock; ++i) tail[i] = uniform_float();
      box_muller_block(tail);
    }
  }

  /// The same draw into a new vector.
  std::vector<float> randn(std::size_t n) {
    std::vector<float> v(n);
    randn(std::span<float>(v));
    return v;
  }

 private:
  static constexpr std::size_t kBlock = 16;
  static constexpr float kTwoPi = static_cast<float>(2.0 * std::numbers::pi);

  // Block of 16 uniforms -> 16 normals, all in float, rounded as PyTorch's x86-64 (AVX2) kernel:
  // its log and sincos (detail::torch_logf / torch_sincosf, not the C library's) and the angle
  // float(2 pi) * u2 formed in float.
  static void box_muller_block(float* v) noexcept {
    constexpr std::size_t kHalf = kBlock / 2;
    for (std::size_t j = 0; j < kHalf; ++j) {
      float const u1 = 1.0f - v[j];  // [0, 1) -> (0, 1] for the log
      float const u2 = v[j + kHalf];
      float const radius = std::sqrt(-2.0f * detail::torch_logf(u1));
      float sin_t = 0.0f, cos_t = 0.0f;
      detail::torch_sincosf(kTwoPi * u2, sin_t, cos_t);
      v[j] = radius * cos_t;
      v[j + kHalf] = radius * sin_t;
    }
  }

  Mt19937 engine_;
  std::optional<double> next_double_normal_;
};

/// `torch.randn(shape, generator=gen, dtype=torch.float32)` as a new float32 tensor on `be`.
template <class B>
Tensor<B> randn(B const& be, Shape const& shape, TorchCpuGenerator& gen) {
  static_assert(backend::Backend<B>, "fd::random::randn: B is not an fd backend (see docs/extending.md#backends)");
  for (int i = 0; i < shape.rank(); ++i) {
    if (shape[i] < 0) fail(Errc::kInvalidArgument, "randn: negative extent in shape " + shape.str());
  }
  std::vector<float> host = gen.randn(static_cast<std::size_t>(shape.numel()));
  return Tensor<B>::from_host(be, shape, host);
}

}  // namespace fd::random
