#pragma once
/// @file
/// fd::random::TorchNoise: the NoiseSource of a pipeline that reproduces diffusers' CPU-generator
/// draws, for the initial latents and for every noise draw of a stochastic scheduler (DDIM eta > 0,
/// DDPM, Euler ancestral), from the SAME generator streams in the same order.
///
/// diffusers' `randn_tensor(shape, generator=...)` has two modes, both reproduced here:
///   - one generator (or a list of one): one draw of the whole shape;
///   - a list of N generators for a batch of N: image i's slice [1, ...] is drawn from generator i,
///     then the slices are concatenated. Each image is then reproducible from its own seed alone,
///     whatever the batch it was made in.
/// (Generators are torch.Generator("cpu"); CUDA generators produce different numbers.)
///
/// @code
///   fd::random::TorchNoise noise({1234, 1235});                // two images, one seed each
///   auto x = noise.randn(be, {2, 4, 64, 64});                  // initial latents
///   x = sched.step(be, eps, i, x, &noise);                     // ancestral steps continue the streams
/// @endcode

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "fd/backend/traits.hpp"
#include "fd/core/shape.hpp"
#include "fd/core/tensor.hpp"
#include "fd/error.hpp"
#include "fd/random/torch_generator.hpp"
#include "fd/schedulers/scheduler.hpp"

namespace fd::random {

class TorchNoise : public NoiseSource {
 public:
  /// One generator: every draw is one torch.randn of the whole shape.
  explicit TorchNoise(std::uint64_t seed) : gens_{TorchCpuGenerator(seed)} {}

  /// One generator per image (seeds.size() == batch size), or a single seed (same as above).
  /// @pre !seeds.empty() (kInvalidArgument otherwise).
  explicit TorchNoise(std::vector<std::uint64_t> const& seeds) {
    if (seeds.empty()) fail(Errc::kInvalidArgument, "TorchNoise: at least one seed is needed");
    gens_.reserve(seeds.size());
    for (std::uint64_t s : seeds) gens_.emplace_back(s);
  }

  /// Number of generators (1, or the batch size).
  std::size_t size() const noexcept { return gens_.size(); }
  /// Generator i (e.g. to inspect or re-seed it).
  TorchCpuGenerator& generator(std::size_t i) { return gens_.at(i); }

  /// Fills `out`, the values of a tensor whose leading extent equals size() when there are several
  /// generators: chunk i (out.size() / size() values) comes from generator i.
  /// @pre out.size() divisible by size() (kShapeMismatch otherwise).
  void fill_normal(std::span<float> out) override {
    std::size_t const n = gens_.size();
    if (n == 1) {
      gens_[0].randn(out);
      return;
    }
    if (out.size() % n != 0) {
      fail(Errc::kShapeMismatch, "TorchNoise: a draw of " + std::to_string(out.size()) +
                                     " values cannot be split between " + std::to_string(n) +
                                     " per-image generators (the batch must have one image per seed)");
    }
    std::size_t const per = out.size() / n;
    for (std::size_t i = 0; i < n; ++i) gens_[i].randn(out.subspan(i * per, per));
  }

  /// diffusers' `randn_tensor(shape, generator=...)` as a float32 tensor.
  /// @pre with several generators, shape[0] == size() (kShapeMismatch otherwise).
  template <class B>
  Tensor<B> randn(B const& be, Shape const& shape) {
    static_assert(backend::Backend<B>, "TorchNoise::randn: B is not an fd backend (see docs/extending.md#backends)");
    for (int i = 0; i < shape.rank(); ++i) {
      if (shape[i] < 0) fail(Errc::kInvalidArgument, "TorchNoise::randn: negative extent in shape " + shape.str());
    }
    if (gens_.size() > 1 && (shape.rank() == 0 || shape[0] != static_cast<std::int64_t>(gens_.size()))) {
      fail(Errc::kShapeMismatch, "TorchNoise::randn: " + std::to_string(gens_.size()) +
                                     " per-image generators, but the shape " + shape.str() +
                                     " does not have that many images");
    }
    std::vector<float> host(static_cast<std::size_t>(shape.numel()));
    fill_normal(host);
    return Tensor<B>::from_host(be, shape, host);
  }

 private:
  std::vector<TorchCpuGenerator> gens_;
};

}  // namespace fd::random
