#pragma once
/// @file
/// fd::progress::bar(): a StepCallback drawing a progress bar on a terminal, in the spirit of tqdm:
///   `Faster Diffusion  23/50 [##########----------]  46%  12.3 it/s  ETA 2.2 s  (decoder)`

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include <unistd.h>

#include "fd/pipelines/sampler.hpp"

namespace fd::progress {

struct BarOptions {
  std::FILE* out = stderr;
  std::string label{};
  int width = 24;
  /// Draw even when `out` is not a terminal (a log then gets one line per redraw).
  bool force = false;
};

/// A StepCallback that redraws one line per step and ends it after the last step. Silent when the
/// stream is not a terminal (unless forced), so logs and test output stay clean.
inline StepCallback bar(BarOptions opt = {}) {
  struct State {
    BarOptions opt;
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    bool active = false;
  };
  auto st = std::make_shared<State>();
  st->opt = std::move(opt);
  st->active = st->opt.force || ::isatty(::fileno(st->opt.out)) == 1;
  return [st](StepInfo const& s) {
    if (!st->active) return true;
    if (s.index == 0) st->start = std::chrono::steady_clock::now();
    int const done = s.index + 1;
    double const secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - st->start).count();
    double const rate = secs > 0 ? done / secs : 0.0;
    double const eta = rate > 0 ? (s.total - done) / rate : 0.0;
    int const filled = s.total > 0 ? done * st->opt.width / s.total : 0;
    std::string barline(static_cast<std::size_t>(filled), '#');
    barline.append(static_cast<std::size_t>(st->opt.width - filled), '-');
    std::fprintf(st->opt.out, "\r%s%s%3d/%-3d [%s] %3d%%  %6.2f it/s  ETA %5.1f s  %s", st->opt.label.c_str(),
                 st->opt.label.empty() ? "" : "  ", done, s.total, barline.c_str(), s.total ? 100 * done / s.total : 100,
                 rate, eta, s.key ? "(full)   " : "(decoder)");
    if (done >= s.total) std::fputc('\n', st->opt.out);
    std::fflush(st->opt.out);
    return true;
  };
}

}  // namespace fd::progress
