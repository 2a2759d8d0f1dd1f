#!/usr/bin/env bash
# Installs what is missing, builds Ferry, and runs the whole test suite: the regular
# build (unit + integration, radosgw started by the suite itself), then an ASan+UBSan
# build over the unit and integration tests. Ends with ctest's summary.
#   FERRY_SKIP_SANITIZE=1  skip the sanitizer build (quicker local runs)
#   FERRY_JOBS=N           build parallelism (default: number of cores)
#   CCACHE_DISABLE=1       compile everything again (no objects from ccache)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
JOBS=${FERRY_JOBS:-$(nproc)}

bash scripts/deps.sh

# ccache (CMakeLists.txt uses it when installed): paths under the clone are hashed
# relative to it and the build directory is left out of the hash, so a clone at another
# path (each CI run's) finds what an earlier one compiled. The objects are the same but
# for the directory their debug information names. Both builds of this tree took
# 0.55 GB of cache (compressed) on 2026-12-03; 12 GB leaves room for many trees.
export CCACHE_BASEDIR="$ROOT" CCACHE_NOHASHDIR=1 CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-12G}"

echo "== build (RelWithDebInfo)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$JOBS"

status=0
echo "== tests"
# Two at a time: most tests wait on processes and the store, not on the CPU.
(cd build && ctest --output-on-failure --label-exclude slow -j2 --timeout 900) || status=1

if [ "${FERRY_SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== sanitizer build (ASan+UBSan)"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DFERRY_SANITIZE=ON -DFERRY_BENCH=OFF >/dev/null
  cmake --build build-asan -j"$JOBS"
  echo "== sanitizer tests (unit + integration)"
  # nbdkit itself is not instrumented: preload the runtime so the plugin can load.
  ASAN_LIB=$(gcc -print-file-name=libasan.so)
  UBSAN_LIB=$(gcc -print-file-name=libubsan.so)
  export FERRY_NBDKIT_PRELOAD="$ASAN_LIB:$UBSAN_LIB"
  export ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:halt_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  (cd build-asan && ctest --output-on-failure -L 'unit|integration' --label-exclude slow -j2 --timeout 900) || status=1
fi

cd "$ROOT"
if [ $status -ne 0 ]; then
  echo "test.sh: FAILED"
else
  echo "test.sh: all suites passed"
fi
exit $status
