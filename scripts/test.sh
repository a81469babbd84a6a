#!/usr/bin/env bash
# Runs every test: the regular build's ctest suite (unit, fuzz corpus replay,
# end-to-end recordings of real Python programs with every CPython 3.11+
# found, CPython's own test_asyncio under astrace), then the same C code
# under AddressSanitizer+UBSan (unit tests, the fuzz corpus, and the
# end-to-end tests driving the sanitized recorder), then a short libFuzzer
# run on the trace reader.
#
#   scripts/test.sh             (after scripts/setup.sh)
#
# Environment: FUZZ_SECONDS (default 30; 0 skips the libFuzzer run).
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS=${FUZZ_SECONDS:-30}

echo "== regular build"
cmake -S . -B build -DASTRACE_WERROR=ON >/dev/null
cmake --build build -j2
(cd build && ctest --output-on-failure -j2)

echo "== AddressSanitizer + UBSan build"
cmake -S . -B build-asan -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DASTRACE_SANITIZE=ON \
  -DASTRACE_FUZZ=ON -DASTRACE_WERROR=ON >/dev/null
cmake --build build-asan -j2
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=99
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# CPython's test_asyncio under astrace ran in the regular pass; here only the
# recorder is sanitized (the runtime inside Python is not), so it is skipped.
(cd build-asan && ASTRACE_SKIP_CPYTHON_SUITE=1 ctest --output-on-failure -j2)

if [[ "$FUZZ_SECONDS" != 0 ]]; then
  echo "== libFuzzer: trace reader, ${FUZZ_SECONDS}s"
  work=$(mktemp -d)
  cp tests/fuzz/corpus/* "$work"/
  build-asan/tests/fuzz_reader -max_total_time="$FUZZ_SECONDS" -max_len=65536 -timeout=10 \
    -rss_limit_mb=2048 "$work" 2>&1 | tail -3
  rm -rf "$work"
fi
echo "all tests passed"
