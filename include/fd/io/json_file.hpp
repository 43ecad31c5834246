#pragma once
/// @file
/// fd::io::read_json_file: a config file (config.json, model_index.json, scheduler_config.json) parsed,
/// with errors that name the file.

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "fd/error.hpp"

namespace fd::io {

/// Reads and parses `path`; kIo "<path>: cannot open <what>" when unreadable, kConfig "<path>: not
/// valid JSON" when it does not parse.
inline nlohmann::json read_json_file(std::filesystem::path const& path, std::string const& what) {
  std::ifstream in(path);
  if (!in) fail(Errc::kIo, path.string() + ": cannot open " + what);
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, false);
  if (j.is_discarded()) fail(Errc::kConfig, path.string() + ": not valid JSON");
  return j;
}

}  // namespace fd::io
