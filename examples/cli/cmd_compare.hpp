#pragma once
// `fasterdiffusion compare`: checks tensors of one safetensors file against a reference file, by name,
// with a tolerance relative to each reference tensor's largest magnitude (the fixtures' criterion).

#include <cmath>

#include <CLI/CLI.hpp>

#include "cli_common.hpp"

namespace fdcli {

struct CompareArgs {
  std::string actual, reference;
  std::vector<std::string> names;
  double rtol = 1e-4;
  std::string reference_prefix;
};

inline void add_compare_command(CLI::App& app, CompareArgs& a, std::function<void()>& run, int& exit_code) {
  auto* cmd = app.add_subcommand("compare", "Compare tensors of two safetensors files (max|a-b| <= rtol * max|ref|)");
  cmd->add_option("actual", a.actual, "file to check")->required()->check(CLI::ExistingFile);
  cmd->add_option("reference", a.reference, "reference file")->required()->check(CLI::ExistingFile);
  cmd->add_option("--names", a.names, "tensors to compare (default: every tensor of `actual` also in `reference`)");
  cmd->add_option("--rtol", a.rtol, "tolerance relative to max|ref|")->capture_default_str();
  cmd->add_option("--reference-prefix", a.reference_prefix,
                  "prefix of the reference names, e.g. fd. to check `latents` against `fd.latents`");
  cmd->callback([&run, &a, &exit_code] {
    run = [&a, &exit_code] {
      Backend be{{.threads = 1}};
      auto act = fd::io::SafeTensorsFile::open(a.actual);
      auto ref = fd::io::SafeTensorsFile::open(a.reference);
      std::vector<std::string> names = a.names;
      if (names.empty()) {
        for (auto const& n : act.names()) {
          if (ref.contains(a.reference_prefix + n)) names.push_back(n);
        }
      }
      if (names.empty()) fd::fail(fd::Errc::kMissingTensor, "compare: no tensor name in common");
      int failures = 0;
      double worst = 0;
      for (auto const& n : names) {
        if (!act.contains(n)) fd::fail(fd::Errc::kMissingTensor, a.actual + ": no tensor '" + n + "'");
        std::string const rn = a.reference_prefix + n;
        if (!ref.contains(rn)) fd::fail(fd::Errc::kMissingTensor, a.reference + ": no tensor '" + rn + "'");
        if (!(act.info(n).shape == ref.info(rn).shape)) {
          std::printf("%-16s FAIL shape %s vs reference %s\n", n.c_str(), act.info(n).shape.str().c_str(),
                      ref.info(rn).shape.str().c_str());
          ++failures;
          continue;
        }
        auto x = act.load(be, n).to_vector_f32(be);
        auto y = ref.load(be, rn).to_vector_f32(be);
        double max_ref = 0, max_diff = 0;
        bool finite = true;
        for (std::size_t i = 0; i < x.size(); ++i) {
          finite = finite && std::isfinite(x[i]);
          max_ref = std::max(max_ref, std::fabs(static_cast<double>(y[i])));
          max_diff = std::max(max_diff, std::fabs(static_cast<double>(x[i]) - y[i]));
        }
        double const rel = max_ref > 0 ? max_diff / max_ref : max_diff;
        bool const ok = finite && rel <= a.rtol;
        worst = std::max(worst, rel);
        failures += ok ? 0 : 1;
        std::printf("%-16s %s  max|diff| %.3e  max|ref| %.3e  rel %.3e\n", n.c_str(), ok ? "ok  " : "FAIL", max_diff,
                    max_ref, rel);
      }
      std::printf("%zu tensors compared, %d failed, worst rel %.3e (rtol %.1e)\n", names.size(), failures, worst,
                  a.rtol);
      exit_code = failures == 0 ? 0 : 3;
    };
  });
}

}  // namespace fdcli
