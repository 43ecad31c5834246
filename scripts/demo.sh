#!/usr/bin/env bash
# Installs the dependencies, builds the `fasterdiffusion` CLI (Release) and runs the demo.
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
cmake -S . -B "${build_dir}" -DCMAKE_BUILD_TYPE=Release
echo "demo.sh: building the fasterdiffusion CLI with ${jobs} jobs"
cmake --build "${build_dir}" -j"${jobs}" --target fasterdiffusion

cli="${build_dir}/examples/cli/fasterdiffusion"

# DEMO COMMANDS ---------------------------------------------------------------------------------
fixtures="${FD_FIXTURES_DIR:-${root}/../shared/fixtures}"
model="${fixtures}/unet_tiny_sd"
out="${build_dir}/demo_unet_out.safetensors"
echo "demo.sh: UNet forward, encoder/decoder split and a 3-timestep parallel decoder call on ${model}"
"${cli}" unet --model "${model}" --inputs "${model}/unet_tiny_sd_io.safetensors" --output "${out}" --repeat 5
echo "demo.sh: parity with diffusers 0.23 (golden fixture), tolerance 1e-4 of each tensor's max"
"${cli}" compare "${out}" "${model}/unet_tiny_sd_io.safetensors" --rtol 1e-4
# END DEMO COMMANDS -----------------------------------------------------------------------------
