#!/usr/bin/env bash
# The appliance end to end, slow (labelled "slow" in CTest, not in CI): the packages
# from the build dir (cpack), the image (image/build.sh), then its boot test under
# qemu (image/boot_test.sh). As root; downloads Debian packages into OUT/cache the
# first time.
#   bench/image_boot.sh [OUT=build/image]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${1:-$ROOT/build/image}
[ -x "$ROOT/build/appliance/ferry-agent" ] || { echo "build first: cmake -S . -B build && cmake --build build" >&2; exit 1; }
(cd "$ROOT/build" && cpack -G DEB >/dev/null)
DEB=$(ls "$ROOT"/build/ferry-gateway_*_amd64.deb)
start=$(date +%s)
bash image/build.sh "$OUT" --deb "$DEB"
built=$(date +%s)
FERRY_BUILD_DIR="$ROOT/build" bash image/boot_test.sh "$OUT/ferry-appliance.qcow2"
echo "image_boot: image built in $((built - start)) s, boot test passed in $(($(date +%s) - built)) s"
