#!/usr/bin/env bash
# Ferry against nbdkit's file plugin, same disk, same run, interleaved:
# 4 KiB random read / write at iodepth 32, 1 MiB sequential read / write, through
# fio's nbd engine. Warm cache: both targets are filled first. Prints one line per
# workload with the two results and their ratio (ferry / file).
#   bench/fio_vs_file.sh [SIZE=1G] [RUNTIME=10] [ROUNDS=2]
#   FERRY_ARGS="upload-delay=…"         extra nbdkit ferry parameters
#   FERRY_WORKLOADS=randwrite:4k:32:iops  a subset (rw:bs:iodepth:iops|bw, comma-separated)
#   PLUGIN=path/to/nbdkit-ferry-plugin.so  another build (an older commit's, to compare)
# Results go to docs/PERFORMANCE.md by hand, with the command line used.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SIZE=${1:-1G}
RUNTIME=${2:-10}
ROUNDS=${3:-2}
PLUGIN=${PLUGIN:-$ROOT/build/plugins/ferry/nbdkit-ferry-plugin.so}
[ -f "$PLUGIN" ] || { echo "build first: cmake -S . -B build && cmake --build build" >&2; exit 1; }
command -v fio >/dev/null || { echo "fio is missing: scripts/deps.sh" >&2; exit 1; }

W=$(mktemp -d "$ROOT/build/bench-XXXXXX")
cleanup() {
  [ -n "${FILE_PID:-}" ] && kill "$FILE_PID" 2>/dev/null || true
  [ -n "${FERRY_PID:-}" ] && kill "$FERRY_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

mkdir -p "$W/store" "$W/state"
truncate -s "$SIZE" "$W/file.img"
nbdkit -f -U "$W/file.sock" file "$W/file.img" 2>"$W/file.log" &
FILE_PID=$!
nbdkit -f -U "$W/ferry.sock" "$PLUGIN" state="$W/state" store="file://$W/store" \
  create="vol:$SIZE" cache-size=4G upload-buffer=2G ${FERRY_ARGS:-} 2>"$W/ferry.log" &
FERRY_PID=$!
for _ in $(seq 1 100); do [ -S "$W/file.sock" ] && [ -S "$W/ferry.sock" ] && break; sleep 0.1; done

FILE_URI="nbd+unix:///?socket=$W/file.sock"
FERRY_URI="nbd+unix:///vol?socket=$W/ferry.sock"

# run URI NAME RW BS DEPTH -> prints "iops bw_bytes"
run() {
  fio --name="$2" --ioengine=nbd --uri="$1" --rw="$3" --bs="$4" --iodepth="$5" \
    --size="$SIZE" --runtime="$RUNTIME" --time_based --invalidate=0 --norandommap \
    --randrepeat=0 --output-format=json 2>/dev/null |
    python3 -c 'import json,sys
t=sys.stdin.read(); j=json.loads(t[t.index("{"):])["jobs"][0]
r=j["read"] if j["read"]["io_bytes"] else j["write"]
print(r["iops"], r["bw_bytes"])'
}

echo "fill both targets (sequential 1 MiB writes) ..."
for uri in "$FILE_URI" "$FERRY_URI"; do
  fio --name=fill --ioengine=nbd --uri="$uri" --rw=write --bs=1M --iodepth=8 --size="$SIZE" \
    --output-format=terse >/dev/null 2>&1
done

printf '%-22s %14s %14s %8s\n' workload file ferry ratio
IFS=, read -r -a WORKLOADS <<<"${FERRY_WORKLOADS:-randread:4k:32:iops,randwrite:4k:32:iops,read:1M:8:bw,write:1M:8:bw}"
for spec in "${WORKLOADS[@]}"; do
  IFS=: read -r -a spec <<<"$spec"
  set -- "${spec[@]}"
  f_tot=0; y_tot=0
  for _ in $(seq 1 "$ROUNDS"); do
    f=$(run "$FILE_URI" file "$1" "$2" "$3"); y=$(run "$FERRY_URI" ferry "$1" "$2" "$3")
    if [ "$4" = iops ]; then f=${f% *}; y=${y% *}; else f=${f#* }; y=${y#* }; fi
    f_tot=$(python3 -c "print($f_tot+$f)"); y_tot=$(python3 -c "print($y_tot+$y)")
  done
  python3 - "$1/$2/qd$3" "$f_tot" "$y_tot" "$4" "$ROUNDS" <<'PY'
import sys
name, unit, n = sys.argv[1], sys.argv[4], int(sys.argv[5])
f, y = float(sys.argv[2]) / n, float(sys.argv[3]) / n
fmt = (lambda v: f"{v:,.0f} IOPS") if unit == "iops" else (lambda v: f"{v/1e6:,.0f} MB/s")
print(f"{name:<22} {fmt(f):>14} {fmt(y):>14} {y/f:8.2f}")
PY
done
