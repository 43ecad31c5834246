// Uses FasterDiffusion as an outside project would, through the installed headers only.
// To cover more of the package, add a check_* function per header and call it from main.

#include <cstdlib>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <iostream>
#include <string_view>
#include <vector>

#include <fd/backend/cpu/backend.hpp>
#include <fd/core/tensor.hpp>
#include <fd/io/png.hpp>
#include <fd/random/torch_generator.hpp>

namespace {

using Tensor = fd::Tensor<fd::backend::Cpu>;

int failures = 0;

void check(bool ok, std::string_view what) {
  if (!ok) {
    std::cerr << "consumer: check failed: " << what << '\n';
    ++failures;
  }
}

void check_cpu_backend() {
  fd::backend::Cpu cpu{{.threads = 1}};
  check(cpu.threads() == 1, "Cpu{{.threads = 1}}.threads() == 1");
}

void check_tensor_views() {
  fd::backend::Cpu cpu{{.threads = 1}};
  Tensor x = Tensor::zeros(cpu, {2, 3});
  check(x.numel() == 6, "zeros({2, 3}).numel() == 6");
  check(x.dtype() == fd::DType::kF32, "zeros defaults to F32");

  Tensor r = x.reshape({3, 2});
  check(r.dim(0) == 3 && r.dim(1) == 2, "reshape({3, 2}) has shape {3, 2}");
  check(r.shares_storage_with(x), "reshape is a view");

  Tensor y = Tensor::from_host(cpu, {2, 3}, std::vector<float>{0, 1, 2, 3, 4, 5});
  Tensor last_col = y.slice(1, 2, 3);
  check(last_col.numel() == 2 && !last_col.is_contiguous(), "slice(1, 2, 3) is a strided {2, 1} view");
  check(last_col.to_vector_f32(cpu) == std::vector<float>{2, 5}, "slice(1, 2, 3) holds {2, 5}");
}

// libpng must come through the target (PNG::PNG): write and read back a tiny image.
void check_png_and_rng() {
  auto const p = std::filesystem::temp_directory_path() / "fd_consumer_check.png";
  std::vector<std::uint8_t> const px{1, 2, 3, 4, 5, 6};
  fd::io::write_png(p, px, 2, 1, 3, {{"k", "v"}});
  auto const img = fd::io::read_png(p);
  std::filesystem::remove(p);
  check(img.pixels == px && img.text.size() == 1, "write_png/read_png round trip");
  fd::random::TorchCpuGenerator gen(5489);
  check(gen.random() == 3499211612u, "TorchCpuGenerator(5489).random() is mt19937's first output");
}

}  // namespace

int main() {
  try {
    check_cpu_backend();
    check_tensor_views();
    check_png_and_rng();
  } catch (std::exception const& e) {
    std::cerr << "consumer: unexpected exception: " << e.what() << '\n';
    return EXIT_FAILURE;
  }
  if (failures != 0) {
    return EXIT_FAILURE;
  }
  std::cout << "consumer ok\n";
  return EXIT_SUCCESS;
}
