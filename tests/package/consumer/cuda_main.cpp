// The CUDA backend through the package (built when it has the cuda component): opens the device when
// one is present, and otherwise checks the error a machine without one gets.
#include <cstdio>
#include <cstring>

#include <fd/backend/cuda/ops.hpp>
#include <fd/error.hpp>

int main() {
  if (fd::backend::Cuda::available()) {
    fd::backend::Cuda gpu{{.dtype = fd::DType::kF16}};
    auto x = fd::Tensor<fd::backend::Cuda>::zeros(gpu, {2, 3});
    fd::backend::add_scalar_(gpu, x, 1.5f);
    auto v = x.to_vector_f32(gpu);
    std::printf("cuda consumer ok: %s, %g\n", gpu.device_name().c_str(), static_cast<double>(v[5]));
    return v[5] == 1.5f ? 0 : 1;
  }
  try {
    fd::backend::Cuda gpu;
  } catch (fd::error const& e) {
    bool const ok = e.code() == fd::Errc::kUnsupported && std::strstr(e.what(), "no CUDA device") != nullptr;
    std::printf("cuda consumer ok (no device): %s\n", e.what());
    return ok ? 0 : 1;
  }
  return 1;
}
