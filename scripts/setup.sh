#!/usr/bin/env bash
# Installs what astrace needs on Debian bookworm, builds it with CMake into
# build/, and records the bundled example. Safe to run again.
#
#   scripts/setup.sh            (as root, or with sudo available)
#
# Environment: BUILD_DIR (default build), SKIP_APT=1 to skip package install,
# SKIP_PYTHONS=1 to skip installing CPython 3.14/3.15 into /opt/pythons.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}

PACKAGES=(
  build-essential cmake pkg-config clang libclang-rt-14-dev
  protobuf-c-compiler libprotobuf-c-dev libzstd-dev zlib1g-dev libunwind-dev
  python3 python3-dev procps
)

if [[ "${SKIP_APT:-0}" != 1 ]]; then
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; fi
  missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

# CPython 3.14 and 3.15 (Debian unstable's builds, test suite included), so
# the tests cover every interpreter astrace supports. Needs ../shared and root.
if [[ "${SKIP_PYTHONS:-0}" != 1 ]]; then
  tool=../shared/tools/debian-python.sh
  if [[ -x $tool || -f $tool ]] && [[ $(id -u) -eq 0 ]]; then
    bash "$tool" 3.14 3.15
  else
    echo "setup: not installing CPython 3.14/3.15 ($tool missing or not root); their tests will be skipped"
  fi
fi

cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DASTRACE_WERROR=ON >/dev/null
cmake --build "$BUILD_DIR" -j2

echo "setup: recording examples/hello_asyncio.py"
out="$BUILD_DIR/hello.pftrace"
"$BUILD_DIR/astrace" record --force -o "$out" -- python3 examples/hello_asyncio.py
"$BUILD_DIR/astrace" dump "$out"
echo "setup: done. Open $out at https://ui.perfetto.dev"
