// fd_cuda_tests: the CUDA backend against the CPU backend and the golden fixtures.
//   fd_cuda_tests [catch args]   GPU tests; exits 77 (ctest: skipped) when no CUDA device is present
//   fd_cuda_tests --no-device    checks the clear error a machine without a device gets (runs anywhere)
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstring>
#include <string>

#include "fd/backend/cuda/backend.hpp"
#include "fd/error.hpp"

namespace {

int check_no_device() {
  if (fd::backend::Cuda::available()) {
    // With a device, the same entry point checks the invalid-device error instead.
    try {
      fd::backend::Cuda g{{.device = fd::backend::Cuda::device_count()}};
    } catch (fd::error const& e) {
      std::printf("invalid device index: %s\n", e.what());
      return e.code() == fd::Errc::kInvalidArgument ? 0 : 1;
    }
    std::printf("FAIL: an out-of-range device index was accepted\n");
    return 1;
  }
  try {
    fd::backend::Cuda g;
  } catch (fd::error const& e) {
    std::printf("no device: %s\n", e.what());
    bool const ok = e.code() == fd::Errc::kUnsupported && std::strstr(e.what(), "no CUDA device") != nullptr;
    std::printf("%s\n", ok ? "1 passed, 0 failed" : "0 passed, 1 failed");
    return ok ? 0 : 1;
  }
  std::printf("FAIL: the CUDA backend opened without a device\n");
  return 1;
}

}  // namespace

int main(int argc, char* argv[]) {
  if (argc > 1 && std::string(argv[1]) == "--no-device") return check_no_device();
  if (!fd::backend::Cuda::available()) {
    std::printf("fd_cuda_tests: no CUDA device is present; skipping the GPU tests\n");
    return 77;
  }
  {
    fd::backend::Cuda g;
    std::printf("fd_cuda_tests on %s\n", g.device_name().c_str());
  }
  return Catch::Session().run(argc, argv);
}
