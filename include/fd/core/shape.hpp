#pragma once
/// @file
/// Shape: a small fixed-capacity list of extents (also used for strides, in elements).

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>

#include "fd/error.hpp"

namespace fd {

class Shape {
 public:
  static constexpr int kMaxRank = 8;

  constexpr Shape() = default;
  constexpr Shape(std::initializer_list<std::int64_t> dims) { assign(dims.begin(), dims.end()); }
  constexpr explicit Shape(std::span<std::int64_t const> dims) { assign(dims.begin(), dims.end()); }

  constexpr int rank() const noexcept { return rank_; }
  constexpr std::int64_t operator[](int i) const noexcept { return d_[static_cast<std::size_t>(i)]; }
  constexpr std::int64_t& operator[](int i) noexcept { return d_[static_cast<std::size_t>(i)]; }
  /// Extent i, counting negative i from the end (-1 = last).
  constexpr std::int64_t at(int i) const {
    int const j = i < 0 ? i + rank_ : i;
    if (j < 0 || j >= rank_) {
      fail(Errc::kInvalidArgument, "dimension " + std::to_string(i) + " out of range for shape " + str());
    }
    return d_[static_cast<std::size_t>(j)];
  }

  /// @post numel() == product of all extents (1 for rank 0).
  constexpr std::int64_t numel() const noexcept {
    std::int64_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= d_[static_cast<std::size_t>(i)];
    return n;
  }

  constexpr void push_back(std::int64_t v) {
    if (rank_ == kMaxRank) fail(Errc::kInvalidArgument, "shape rank above " + std::to_string(kMaxRank));
    d_[static_cast<std::size_t>(rank_++)] = v;
  }

  constexpr std::int64_t const* begin() const noexcept { return d_.data(); }
  constexpr std::int64_t const* end() const noexcept { return d_.data() + rank_; }

  friend constexpr bool operator==(Shape const& a, Shape const& b) noexcept {
    return a.rank_ == b.rank_ && std::equal(a.begin(), a.end(), b.begin());
  }

  /// "[2, 4, 16, 16]"
  std::string str() const {
    std::string s = "[";
    for (int i = 0; i < rank_; ++i) {
      if (i) s += ", ";
      s += std::to_string(d_[static_cast<std::size_t>(i)]);
    }
    return s + "]";
  }

 private:
  template <class It>
  constexpr void assign(It first, It last) {
    for (; first != last; ++first) push_back(static_cast<std::int64_t>(*first));
  }

  std::array<std::int64_t, kMaxRank> d_{};
  int rank_ = 0;
};

/// Row-major (C order) strides in elements.
/// @post s[rank-1] == 1 and s[i] == s[i+1] * shape[i+1].
constexpr Shape contiguous_strides(Shape const& shape) {
  Shape s = shape;
  std::int64_t acc = 1;
  for (int i = shape.rank() - 1; i >= 0; --i) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

}  // namespace fd
