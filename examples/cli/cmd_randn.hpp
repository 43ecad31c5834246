#pragma once
// `fasterdiffusion randn`: torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed)) into a
// safetensors file, so initial latents can be made, checked against PyTorch and fed to `sample`.
// With --seeds, one generator per image (diffusers' list of generators), concatenated.

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli_common.hpp"
#include "fd/random/torch_noise.hpp"

namespace fdcli {

struct RandnArgs {
  std::uint64_t seed = 0;
  std::vector<std::uint64_t> seeds;
  std::vector<std::int64_t> shape;
  std::string output;
  std::string name = "x";
  int repeat = 0;
};

inline void add_randn_command(CLI::App& app, RandnArgs& a, std::function<void()>& run) {
  auto* cmd = app.add_subcommand("randn", "Draw torch-compatible N(0,1) noise (CPU torch.Generator) to a safetensors file");
  auto* seed = cmd->add_option("--seed", a.seed, "seed of the one generator (torch manual_seed)");
  auto* seeds = cmd->add_option("--seeds", a.seeds, "one seed per image: S1,S2,... (diffusers' list of generators)")
                    ->delimiter(',');
  seed->excludes(seeds);
  seeds->excludes(seed);
  cmd->add_option("--shape", a.shape, "tensor shape, e.g. 1,4,64,64")->required()->delimiter(',');
  cmd->add_option("--output", a.output, "safetensors file to write")->required();
  cmd->add_option("--name", a.name, "tensor name in the output")->capture_default_str();
  cmd->add_option("--repeat", a.repeat, "time N more draws (fresh generators) and print the median")
      ->check(CLI::NonNegativeNumber);
  cmd->callback([&run, &a, seeds] {
    run = [&a, per_image = seeds->count() > 0] {
      Backend be{{.threads = 1}};
      fd::Shape shape;
      for (std::int64_t d : a.shape) {
        if (d < 0) fd::fail(fd::Errc::kInvalidArgument, "randn: --shape has a negative extent " + std::to_string(d));
        shape.push_back(d);
      }
      std::vector<std::uint64_t> const seed_list = per_image ? a.seeds : std::vector<std::uint64_t>{a.seed};
      auto draw = [&] {
        fd::random::TorchNoise noise(seed_list);
        return noise.randn(be, shape);
      };
      Tensor x = draw();
      if (a.repeat > 0) {
        std::vector<double> ms;
        for (int r = 0; r < a.repeat; ++r) {
          double const t0 = now_ms();
          x = draw();
          ms.push_back(now_ms() - t0);
        }
        Timing const t = summarize(ms);
        std::printf("randn %s: median %.3f ms, min %.3f ms over %d runs\n", shape.str().c_str(), t.median_ms,
                    t.min_ms, a.repeat);
      }
      fd::io::save_safetensors(be, a.output, {{a.name, x}});
    };
  });
}

}  // namespace fdcli
