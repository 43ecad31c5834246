#!/usr/bin/env bash
# Installs the Debian (bookworm) packages that building and testing FasterDiffusion needs.
# Idempotent: only missing packages are installed, and apt-get update runs only when something is
# missing, so a second run changes nothing.
#
# Usage: scripts/install-deps.sh [--bench]
#   --bench  also install PyTorch, NumPy, Eigen and OpenBLAS for the comparison benchmarks.
set -euo pipefail

log() { printf 'install-deps: %s\n' "$*"; }
die() {
  printf 'install-deps: error: %s\n' "$*" >&2
  exit 1
}

# libopencv-dev is optional for the library: the CLI and examples use its imgproc (Canny) when found; the
# tests check our canny path against it.
# OpenMP needs nothing extra with g++: omp.h and libgomp come with gcc itself (libgcc-12-dev).
# xtl-dev arrives with xtensor-dev anyway; it is listed because fd's CMake package config finds
# xtensor, which finds xtl. libxsimd-dev is only a Recommends of xtensor-dev, hence listed too.
packages=(
  cmake
  g++
  make
  pkg-config
  nlohmann-json3-dev
  xtensor-dev
  xtl-dev
  libxsimd-dev
  catch2
  libcli11-dev
  libbenchmark-dev
  libpng-dev
  libjpeg-dev
  libicu-dev
  libopencv-dev
)
bench_packages=(python3 python3-torch python3-numpy libeigen3-dev libopenblas-dev)

for arg in "$@"; do
  case "${arg}" in
    --bench) packages+=("${bench_packages[@]}") ;;
    -h | --help)
      sed -n '2,8s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
      exit 0
      ;;
    *) die "unknown argument '${arg}' (expected --bench or --help)" ;;
  esac
done

command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: this script supports Debian/Ubuntu only"
command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script supports Debian/Ubuntu only"

is_installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

missing=()
for pkg in "${packages[@]}"; do
  if ! is_installed "${pkg}"; then
    missing+=("${pkg}")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  log "all ${#packages[@]} required packages are already installed"
  exit 0
fi
log "missing: ${missing[*]}"

as_root=()
if [[ ${EUID} -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 || die "not running as root and sudo is not available; install as root: ${missing[*]}"
  as_root=(sudo)
fi
# `env` rather than a VAR=value prefix: sudo may strip variables given on its own command line.
apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q)

log "running apt-get update"
"${apt[@]}" update || die "apt-get update failed (exit $?)"

log "running apt-get install -y --no-install-recommends ${missing[*]}"
"${apt[@]}" install -y --no-install-recommends "${missing[@]}" || die "apt-get install failed (exit $?)"

still_missing=()
for pkg in "${missing[@]}"; do
  if ! is_installed "${pkg}"; then
    still_missing+=("${pkg}")
  fi
done
[[ ${#still_missing[@]} -eq 0 ]] || die "apt-get reported success but these are still not installed: ${still_missing[*]}"
log "installed ${#missing[@]} package(s): ${missing[*]}"
