// Writes the bad `unet --inputs` files the CLI tests feed to fasterdiffusion, each derived from the
// unet_tiny_sd io fixture: usage make_bad_inputs FIXTURE_IO OUT_DIR.

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "fd/backend/cpu/backend.hpp"
#include "fd/io/safetensors.hpp"

using B = fd::backend::Cpu;
using T = fd::Tensor<B>;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s FIXTURE_IO OUT_DIR\n", argv[0]);
    return 2;
  }
  B be{{.threads = 1}};
  auto io = fd::io::SafeTensorsFile::open(argv[1]);
  fs::path const out = argv[2];
  fs::create_directories(out);
  auto inputs = [&] {
    std::vector<std::pair<std::string, T>> v;
    for (auto n : {"sample", "timestep", "encoder_hidden_states", "decoder_timestep", "fdpar.timesteps"}) {
      v.emplace_back(n, io.load(be, n));
    }
    return v;
  };
  auto set = [](auto& v, std::string const& n, T t) {
    for (auto& [k, x] : v) {
      if (k == n) x = t;
    }
  };

  fd::io::save_safetensors(be, out / "good.safetensors", inputs());

  auto v = inputs();
  T s = io.load(be, "sample");
  s.data<float>()[123] = std::numeric_limits<float>::quiet_NaN();
  set(v, "sample", s);
  fd::io::save_safetensors(be, out / "nan_sample.safetensors", v);

  v = inputs();
  std::erase_if(v, [](auto const& p) { return p.first == "encoder_hidden_states"; });
  fd::io::save_safetensors(be, out / "missing_context.safetensors", v);

  v = inputs();
  set(v, "sample", io.load(be, "sample").slice(1, 0, 3).contiguous(be));
  fd::io::save_safetensors(be, out / "wrong_shape.safetensors", v);

  v = inputs();
  v.emplace_back("mystery", T::zeros(be, {1}));
  fd::io::save_safetensors(be, out / "extra_tensor.safetensors", v);

  // Truncated: the good file cut in the middle of its data.
  {
    std::ifstream in(out / "good.safetensors", std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream t(out / "truncated.safetensors", std::ios::binary);
    t.write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
  }
  // Header length past the end of the file.
  {
    std::ofstream t(out / "header_past_end.safetensors", std::ios::binary);
    unsigned char len[8] = {0x00, 0x10, 0, 0, 0, 0, 0, 0};
    t.write(reinterpret_cast<char const*>(len), 8);
    t << "{}";
  }
  std::puts("bad inputs written");
  return 0;
}
