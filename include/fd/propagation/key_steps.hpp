#pragma once
/// @file
/// Key-step policies: which step indices run the full UNet (encoder + decoder) in FasterDiffusion.
/// Index i counts model calls from 0 (the noisiest); the paper counts the other way (paper t = N - i).
///
/// A key policy is a type with `bool is_key(int i, int n) const` (n = number of model calls). One
/// KeySchedule built from it drives both the grouping of steps and the encoder calls, so the two can
/// never disagree (the reference code configures them separately; spec §8.1 item 2).

#include <charconv>
#include <cmath>
#include <concepts>
#include <string>
#include <string_view>
#include <vector>

#include "fd/error.hpp"

namespace fd::keys {

/// A compile-time list of key indices, e.g. `List<0, 1, 2, 3, 5, 10, 15, 25, 35>`. Index 0 is always key.
template <int... I>
struct List {
  static constexpr bool is_key(int i, int /*n*/) noexcept { return i == 0 || ((i == I) || ...); }
};

/// The paper's key set for SD / ControlNet / video (reference `50ls`): {0,1,2,3,5,10,15,25,35}.
using Paper50 = List<0, 1, 2, 3, 5, 10, 15, 25, 35>;
/// The paper's key set for DreamBooth / Custom Diffusion (utils_if `50ls`): Paper50 plus 40.
using Personalized50 = List<0, 1, 2, 3, 5, 10, 15, 25, 35, 40>;

/// Every step is key: the full UNet at every step (the baseline).
struct All {
  static constexpr bool is_key(int, int) noexcept { return true; }
};

/// Uniform 1:N propagation (`i % N == 0`), e.g. Every<4> for community SD 1.5 fine-tunes.
template <int N>
struct Every {
  static_assert(N >= 1, "keys::Every<N>: N must be at least 1");
  static constexpr bool is_key(int i, int) noexcept { return i % N == 0; }
};

/// A key policy chosen at run time: the reference's presets, an explicit list, or every:N.
class Runtime {
 public:
  enum class Rule { kList, kEvery, k100ls, k75ls, kS2, kPro, kAll };

  /// Parses "50ls", "50ls-personalized", "100ls", "75ls", "s2", "pro", "all", "every:N" or a list
  /// "0,1,2,3,5,10". Throws kConfig naming the text.
  static Runtime parse(std::string_view text) {
    Runtime r;
    if (text == "50ls") return r.with_list({0, 1, 2, 3, 5, 10, 15, 25, 35});
    if (text == "50ls-personalized") return r.with_list({0, 1, 2, 3, 5, 10, 15, 25, 35, 40});
    if (text == "100ls") return r.with_rule(Rule::k100ls);
    if (text == "75ls") return r.with_rule(Rule::k75ls);
    if (text == "s2") return r.with_rule(Rule::kS2);
    if (text == "pro") return r.with_rule(Rule::kPro);
    if (text == "all") return r.with_rule(Rule::kAll);
    if (text.starts_with("every:")) {
      int n = 0;
      auto const s = text.substr(6);
      auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
      if (ec != std::errc() || p != s.data() + s.size() || n < 1) {
        fail(Errc::kConfig, "key steps '" + std::string(text) + "': every:N needs a positive integer N");
      }
      r.rule_ = Rule::kEvery;
      r.every_ = n;
      return r;
    }
    std::vector<int> list;
    std::size_t pos = 0;
    while (pos <= text.size()) {
      std::size_t const comma = text.find(',', pos);
      auto const item = text.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
      int v = -1;
      auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
      if (item.empty() || ec != std::errc() || p != item.data() + item.size() || v < 0) {
        fail(Errc::kConfig, "key steps '" + std::string(text) +
                                "': expected 50ls, 50ls-personalized, 100ls, 75ls, s2, pro, all, every:N or a "
                                "comma-separated list of step indices");
      }
      list.push_back(v);
      if (comma == std::string_view::npos) break;
      pos = comma + 1;
    }
    return r.with_list(std::move(list));
  }

  bool is_key(int i, int /*n*/) const noexcept {
    if (i == 0) return true;
    switch (rule_) {
      case Rule::kAll: return true;
      case Rule::kEvery: return i % every_ == 0;
      case Rule::k100ls: return i < 10 || i > 85 || i % 5 == 0;
      case Rule::k75ls: return i < 10 || i > 65 || i % 5 == 0;
      case Rule::kS2: return i < 20 || i > 40 || i % 2 == 0;
      case Rule::kPro: {
        long const v = 9 + 8L * i;  // key iff 9 + 8i is a perfect square (i = k(k+3)/2)
        long const r = std::lround(std::sqrt(static_cast<double>(v)));
        return r * r == v;
      }
      case Rule::kList:
        for (int k : list_) {
          if (k == i) return true;
        }
        return false;
    }
    return false;
  }

 private:
  Runtime& with_list(std::vector<int> l) {
    rule_ = Rule::kList;
    list_ = std::move(l);
    return *this;
  }
  Runtime& with_rule(Rule r) {
    rule_ = r;
    return *this;
  }
  Rule rule_ = Rule::kList;
  std::vector<int> list_{0};
  int every_ = 1;
};

/// What the sampler requires of a key policy.
template <class K>
concept KeyPolicy = requires(K const& k, int i, int n) {
  { k.is_key(i, n) } -> std::convertible_to<bool>;
};

/// The key flags for n model calls and the groups they induce: each group starts at a key index and
/// runs to the next key index (exclusive). Index 0 is always key.
class KeySchedule {
 public:
  template <class K>
  KeySchedule(K const& policy, int n) : key_(static_cast<std::size_t>(n)) {
    static_assert(KeyPolicy<K>, "KeySchedule: the key policy needs `bool is_key(int step, int num_steps) const` "
                                "(see fd/propagation/key_steps.hpp for keys::List, keys::Every, keys::Runtime)");
    for (int i = 0; i < n; ++i) key_[static_cast<std::size_t>(i)] = i == 0 || policy.is_key(i, n);
    for (int i = 0; i < n; ++i) {
      if (key_[static_cast<std::size_t>(i)]) groups_.emplace_back();
      groups_.back().push_back(i);
    }
  }

  bool is_key(int i) const { return key_.at(static_cast<std::size_t>(i)); }
  int size() const noexcept { return static_cast<int>(key_.size()); }
  int num_keys() const noexcept { return static_cast<int>(groups_.size()); }
  /// Step indices per group, e.g. 50ls over 50 calls: [0] [1] [2] [3,4] [5..9] [10..14] [15..24] [25..34] [35..49].
  std::vector<std::vector<int>> const& groups() const noexcept { return groups_; }

 private:
  std::vector<bool> key_;
  std::vector<std::vector<int>> groups_;
};

}  // namespace fd::keys
