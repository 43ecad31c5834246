#!/usr/bin/env bash
# Installs the dependencies, builds FasterDiffusion (Release, tests on) and runs the whole ctest suite.
# The exit status is ctest's.
#
# Usage: scripts/test.sh [extra cmake configure arguments...]
# Environment: FD_BUILD_DIR (default: build), FD_JOBS (default: nproc).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"
build_dir="${FD_BUILD_DIR:-build}"
jobs="${FD_JOBS:-$(nproc)}"

bash scripts/install-deps.sh

echo "test.sh: configuring ${build_dir} (Release, FD_BUILD_TESTS=ON)"
cmake -S . -B "${build_dir}" -DCMAKE_BUILD_TYPE=Release -DFD_BUILD_TESTS=ON "$@"

echo "test.sh: building with ${jobs} jobs"
cmake --build "${build_dir}" -j"${jobs}"

echo "test.sh: running ctest"
rc=0
# The timeout bounds a hung test well inside the CI budget instead of ctest's 25-minute default.
# Tests run one at a time: each uses every core through OpenMP, and two processes sharing the cores
# stall each other at every barrier (a 1 s test can take 40 s that way).
ctest --test-dir "${build_dir}" --output-on-failure --timeout 900 || rc=$?
echo "test.sh: ctest exited with ${rc}"
exit "${rc}"
