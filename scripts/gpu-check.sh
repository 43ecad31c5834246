#!/usr/bin/env bash
# The one device check of the CUDA backend, in two halves so that the lent GPU's minutes go to the GPU:
#
#   bash scripts/gpu-check.sh --prepare   here (no GPU needed): builds fd_cuda_tests and fd_cuda_bench for
#                                          sm_90 and copies them, their library and the fixtures they read
#                                          into .gpu/ (ignored by git)
#   bash scripts/gpu-check.sh             on the GPU machine (device tool: carry [".gpu"]): runs the CUDA
#                                          tests and the GPU benchmarks, PyTorch side by side where it is
#                                          installed, and prints a short table last. Logs go to $OUT.
#
# The GPU machine has no Debian packages: the binaries are linked --as-needed (no libpng/ICU), the CUDA
# runtime is static, and cuBLAS/cuDNN are found there in the CUDA toolkit or Python's nvidia-* packages.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
GPU=$ROOT/.gpu

if [[ "${1:-}" == "--prepare" ]]; then
  set -e
  BUILD=${FD_GPU_BUILD_DIR:-$ROOT/build-gpu}
  FIXTURES=${FD_FIXTURES_DIR:-$ROOT/../shared/fixtures}
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DFD_WITH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
        -DFD_NATIVE=OFF -DFD_BUILD_EXAMPLES=OFF -DFD_BUILD_BENCHMARKS=OFF -DFD_INSTALL=OFF -DFD_BUILD_TESTS=ON \
        -DFD_FIXTURES_DIR="$FIXTURES" >/dev/null
  cmake --build "$BUILD" --target fd_cuda_tests fd_cuda_bench -j "$(nproc)"
  rm -rf "$GPU"
  mkdir -p "$GPU/bin" "$GPU/fixtures"
  cp "$BUILD/tests/cuda/fd_cuda_tests" "$BUILD/tests/cuda/fd_cuda_bench" "$GPU/bin/"
  cp -L "$BUILD"/kernels/libfasterdiffusion_cuda.so* "$GPU/bin/"
  for f in unet_tiny_sd fd_tiny_sd controlnet_tiny; do
    [[ -d "$FIXTURES/$f" ]] && cp -r "$FIXTURES/$f" "$GPU/fixtures/"
  done
  cp "$FIXTURES/README.md" "$GPU/fixtures/"
  if command -v cuobjdump >/dev/null; then cuobjdump --list-elf "$GPU/bin/libfasterdiffusion_cuda.so" | sed 's/^/  /'; fi
  echo "prepared $(du -sh "$GPU" | cut -f1) in .gpu/: device call: bash scripts/gpu-check.sh (carry .gpu)"
  exit 0
fi

OUT=${OUT:-$ROOT/out/gpu-check}
mkdir -p "$OUT"
[[ -x "$GPU/bin/fd_cuda_tests" ]] || { echo "gpu-check: .gpu/ missing: run 'bash scripts/gpu-check.sh --prepare' here and carry .gpu"; exit 2; }

# cuBLAS / cuDNN: the toolkit's lib folders, then every lib folder of Python's nvidia-* packages.
libs="$GPU/bin"
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
  [[ -d $d ]] && libs="$libs:$d"
done
py_libs=$(python3 - 2>/dev/null <<'PY'
import glob, os
try:
    import nvidia
    print(":".join(sorted(glob.glob(os.path.join(list(nvidia.__path__)[0], "*", "lib")))))
except Exception:
    pass
PY
)
[[ -n "$py_libs" ]] && libs="$libs:$py_libs"
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export FD_FIXTURES_DIR=$GPU/fixtures

nvidia-smi -L 2>/dev/null | tee "$OUT/device.txt"
missing=$(ldd "$GPU/bin/fd_cuda_tests" "$GPU/bin/libfasterdiffusion_cuda.so" | grep "not found" | sort -u)
[[ -n "$missing" ]] && echo "gpu-check: unresolved libraries: $missing"

echo "== CUDA tests"
t0=$(date +%s)
timeout 300 "$GPU/bin/fd_cuda_tests" 2>&1 | tee "$OUT/tests.log"
tests_rc=${PIPESTATUS[0]}
echo "== CUDA tests: exit $tests_rc in $(( $(date +%s) - t0 )) s"

echo "== GPU benchmark (fp16)"
timeout 240 "$GPU/bin/fd_cuda_bench" --dtype f16 --steps 50 --repeat 20 --loops 3 2>&1 | tee "$OUT/bench_f16.log"
bench_rc=${PIPESTATUS[0]}

echo "== UNet forward without graphs / with the unfused attention (what each one buys)"
timeout 120 "$GPU/bin/fd_cuda_bench" --dtype f16 --loops 0 --no-graphs 2>&1 | tee "$OUT/bench_nographs.log"
timeout 120 "$GPU/bin/fd_cuda_bench" --dtype f16 --loops 0 --unfused-attention 2>&1 | tee "$OUT/bench_unfused.log"
timeout 120 "$GPU/bin/fd_cuda_bench" --dtype bf16 --loops 0 2>&1 | tee "$OUT/bench_bf16.log"

torch_line="not run (no PyTorch with CUDA)"
torch_sdpa="not run"
if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "== PyTorch fp16, same UNet (random weights)"
  timeout 120 python3 tests/bench/torch_unet.py --device cuda --dtype fp16 --batch 2 --size 64 --repeat 20 --warmup 3 \
    2>&1 | tee "$OUT/torch_f16.log"
  timeout 120 python3 tests/bench/torch_unet.py --device cuda --dtype fp16 --batch 2 --size 64 --repeat 20 --warmup 3 \
    --sdpa 2>&1 | tee "$OUT/torch_f16_sdpa.log"
  torch_line=$(grep -o "median [0-9.]* s" "$OUT/torch_f16.log" | head -1)
  torch_sdpa=$(grep -o "median [0-9.]* s" "$OUT/torch_f16_sdpa.log" | head -1)
fi

echo
device=$(head -1 "$OUT/device.txt" 2>/dev/null)
echo "== gpu-check summary (${device:-no GPU listed by nvidia-smi})"
tests_summary=$(grep -E "All tests passed|test cases:|skipping the GPU tests" "$OUT/tests.log" | tail -1)
echo "| check | result |"
echo "|---|---|"
echo "| fd_cuda_tests (exit $tests_rc) | ${tests_summary:-see tests.log} |"
grep -iE "^  cuda (f32|f16|bf16)" "$OUT/tests.log" | grep -E "out |fd:|baseline:" | head -8 | sed 's/^ */| /; s/$/ |/'
if [[ $bench_rc -eq 0 ]]; then
  grep -E "^\| (UNet|DDIM|speed-up)" "$OUT/bench_f16.log"
else
  echo "| fd_cuda_bench | exit $bench_rc (see bench_f16.log) |"
fi
grep -h -E "^\| UNet forward" "$OUT/bench_nographs.log" "$OUT/bench_unfused.log" 2>/dev/null
grep -h -E "^\| UNet forward" "$OUT/bench_bf16.log" 2>/dev/null | sed 's/^| UNet/| bf16 UNet/'
echo "| PyTorch fp16 UNet forward, batch 2 (baddbmm attention) | $torch_line |"
echo "| PyTorch fp16 UNet forward, batch 2 (SDPA attention) | $torch_sdpa |"
[[ $tests_rc -eq 0 || $tests_rc -eq 77 ]] && [[ $bench_rc -eq 0 || $bench_rc -eq 77 ]]
