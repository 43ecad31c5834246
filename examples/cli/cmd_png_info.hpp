#pragma once
// `fasterdiffusion png-info`: size and text chunks of a PNG, e.g. the parameters `generate` stored.

#include <cstdio>

#include <CLI/CLI.hpp>

#include <fd/io/png.hpp>

namespace fdcli {

inline void add_png_info_command(CLI::App& app, std::string& path, std::function<void()>& run) {
  auto* cmd = app.add_subcommand("png-info", "Print a PNG's size and text chunks (generation parameters)");
  cmd->add_option("png", path, "PNG file")->required();
  cmd->callback([&run, &path] {
    run = [&path] {
      fd::io::PngImage const im = fd::io::read_png(path);
      std::printf("%s: %dx%d, %d channels\n", path.c_str(), im.width, im.height, im.channels);
      for (auto const& t : im.text) std::printf("%s:\n%s\n", t.key.c_str(), t.value.c_str());
    };
  });
}

}  // namespace fdcli
