#!/usr/bin/env bash
# One SD 1.5 UNet forward at real shapes (random weights, batch 2, 64x64 latent, 77x768 context) on the
# CPU: fasterdiffusion, then the same network in PyTorch (Debian's python3-torch), in one run, so the
# ratio is measured under the same machine conditions. Also the GEMM comparison (ours, Eigen, the
# system BLAS). Takes about 10 minutes on 2 cores (PyTorch's forward is the slow part).
#
# Usage: scripts/bench-unet.sh [--threads N] [--repeat N] [--skip-torch]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"
threads=$(nproc) repeat=3 torch=1
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --skip-torch) torch=0; shift ;;
    *) echo "bench-unet.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
bash scripts/install-deps.sh --bench
build_dir="${FD_BUILD_DIR:-build}"
cmake -S . -B "${build_dir}" -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "${build_dir}" -j"$(nproc)" --target fasterdiffusion fd_bench_sgemm fd_bench_ops

echo "== machine"
lscpu | grep -E "Model name|^CPU\(s\)|Flags" | sed 's/Flags:.*avx512f.*/Flags: ... avx512f ... (AVX-512 present)/'
echo "== fasterdiffusion (threads ${threads})"
ours=$("${build_dir}/examples/cli/fasterdiffusion" bench --config sd15 --threads "${threads}" --warmup 1 --repeat "${repeat}")
echo "${ours}"
if [ "${torch}" = 1 ]; then
  echo "== PyTorch (threads ${threads})"
  theirs=$(/usr/bin/python3 tests/bench/torch_unet.py --threads "${threads}" --repeat "${repeat}" --warmup 1)
  echo "${theirs}"
  ours_s=$(echo "${ours}" | sed -n 's/.*: median \([0-9.]*\) s.*/\1/p' | head -1)
  theirs_s=$(echo "${theirs}" | sed -n 's/torch unet forward: median \([0-9.]*\) s.*/\1/p')
  echo "== ratio: PyTorch median / fasterdiffusion median = $(awk -v a="${theirs_s}" -v b="${ours_s}" 'BEGIN { printf "%.2f", a / b }')"
fi
echo "== GEMM: ours vs Eigen vs system BLAS (GFLOP/s, 2 threads)"
"${build_dir}/tests/bench/fd_bench_sgemm" --benchmark_filter=compare --benchmark_min_time=0.5 2>/dev/null | grep compare
