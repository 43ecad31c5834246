#!/usr/bin/env bash
# Installs the dependencies, builds the `fasterdiffusion` CLI (Release) and generates an image with the
# embedded demo model, baseline and FasterDiffusion side by side.
#
# Usage: scripts/demo.sh
# Environment: FD_BUILD_DIR (default: build), FD_JOBS (default: nproc).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"
build_dir="${FD_BUILD_DIR:-build}"
jobs="${FD_JOBS:-$(nproc)}"

bash scripts/install-deps.sh

echo "demo.sh: configuring ${build_dir} (Release)"
# Only the CLI: the tests (which need the golden fixtures) are scripts/test.sh's business. The demo runs on
# the CPU, so the CUDA backend (minutes of nvcc where a toolkit is installed) is not built here.
cmake -S . -B "${build_dir}" -DCMAKE_BUILD_TYPE=Release -DFD_BUILD_TESTS=OFF -DFD_BUILD_BENCHMARKS=OFF \
      -DFD_WITH_CUDA=OFF
echo "demo.sh: building the fasterdiffusion CLI with ${jobs} jobs"
cmake --build "${build_dir}" -j"${jobs}" --target fasterdiffusion

cli="${build_dir}/examples/cli/fasterdiffusion"

# DEMO COMMANDS ---------------------------------------------------------------------------------
# Text to image with the embedded demo model (models/tiny-shapes, 32x32 pixel space): the baseline
# DDIM-50 pipeline and FasterDiffusion (key steps 50ls, parallel decoding, prior noise injection)
# from the same seed, timed side by side, with the PSNR between the two images.
mkdir -p out
echo "demo.sh: generating with models/tiny-shapes, baseline and FasterDiffusion side by side"
"${cli}" generate -m models/tiny-shapes -p "a red circle on a blue background" -s 2023 --steps 50 \
  --sampler ddim --cfg-scale 7.5 --compare -o out/demo.png
echo "demo.sh: images in out/ (demo_origin.png, demo_faster.png); the prompt and settings are stored in each PNG"
# END DEMO COMMANDS -----------------------------------------------------------------------------
