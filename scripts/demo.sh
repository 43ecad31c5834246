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
# Replace the placeholder below with the demo's run commands; ${cli} is the built CLI.
"${cli}" --help
# END DEMO COMMANDS -----------------------------------------------------------------------------
