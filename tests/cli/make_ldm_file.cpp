// Writes the tiny single-file SD checkpoint (tests/common/ldm_files.hpp) and a config patch for it
// (the fixtures' norm groups differ from SD 1.x's), for the CLI tests of single-file loading.
// Usage: fd_make_ldm_file OUT.safetensors PATCH.json

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/ldm_files.hpp"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: fd_make_ldm_file OUT.safetensors PATCH.json\n");
    return 2;
  }
  try {
    std::filesystem::create_directories(std::filesystem::path(argv[1]).parent_path());
    fdtest::write_file(argv[1], fdtest::tiny_ldm_tensors());
    std::ofstream(argv[2]) << R"({"unet": {"norm_num_groups": 8}, "vae": {"norm_num_groups": 16}, )"
                           << R"("text_encoder": {"num_attention_heads": 4}})" << "\n";
  } catch (std::exception const& e) {
    std::fprintf(stderr, "fd_make_ldm_file: %s\n", e.what());
    return 1;
  }
  return 0;
}
