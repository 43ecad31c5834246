#pragma once
// --backend cpu|cuda and --dtype f32|f16|bf16 for the commands that run models: one template body per
// command, instantiated for each backend this build has.

#include <cctype>
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include <fd/backend/cpu/ops.hpp>
#include <fd/error.hpp>
#if defined(FD_WITH_CUDA)
#include <fd/backend/cuda/ops.hpp>
#endif

namespace fdcli {

struct BackendArgs {
  std::string backend = "cpu";
  std::string dtype;  ///< empty: f32 on the CPU, f16 on the GPU
  int threads = 0;
};

inline void add_backend_options(CLI::App* cmd, BackendArgs& b) {
  cmd->add_option("--backend", b.backend, "cpu | cuda")->capture_default_str();
  cmd->add_option("--dtype", b.dtype, "storage dtype of weights and activations: f32 | f16 | bf16 (default: f32 on the "
                                      "CPU, f16 on the GPU; the CPU computes in f32 only)");
  cmd->add_option("--threads", b.threads, "CPU threads (0 = all)")->check(CLI::NonNegativeNumber);
}

/// Calls f(be) with the backend the arguments ask for.
template <class F>
void with_backend(BackendArgs const& b, F&& f) {
  fd::DType dt = fd::DType::kF32;
  if (!b.dtype.empty()) {
    std::string upper = b.dtype;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (!fd::parse_dtype(upper, dt) || (dt != fd::DType::kF32 && dt != fd::DType::kF16 && dt != fd::DType::kBF16)) {
      fd::fail(fd::Errc::kInvalidArgument, "--dtype '" + b.dtype + "': expected f32, f16 or bf16");
    }
  }
  if (b.backend == "cpu") {
    if (dt != fd::DType::kF32) {
      fd::fail(fd::Errc::kUnsupported, "--dtype " + b.dtype +
                                           ": the CPU backend computes in f32 (f16/bf16 weights are converted when "
                                           "loaded); use --backend cuda for f16/bf16 storage");
    }
    fd::backend::Cpu be{{.threads = b.threads}};
    f(be);
    return;
  }
  if (b.backend == "cuda") {
#if defined(FD_WITH_CUDA)
    fd::backend::Cuda be{{.dtype = b.dtype.empty() ? fd::DType::kF16 : dt}};
    std::fprintf(stderr, "backend: %s, %s\n", be.device_name().c_str(), std::string(fd::dtype_name(be.dtype())).c_str());
    f(be);
    return;
#else
    fd::fail(fd::Errc::kUnsupported, "--backend cuda: this fasterdiffusion was built without the CUDA backend "
                                     "(it needs nvcc, cuBLAS and cuDNN at configure time; FD_WITH_CUDA)");
#endif
  }
  fd::fail(fd::Errc::kInvalidArgument, "--backend '" + b.backend + "': expected cpu or cuda");
}

}  // namespace fdcli
