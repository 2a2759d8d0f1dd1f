#!/usr/bin/env bash
# Writes right after a crash: a gateway takes 4 KiB random writes (qd32) over a volume
# larger than its upload buffer for RUNTIME seconds, FLUSHes, is killed with kill -9,
# and is started again on the same state dir; the same writes then run for RUNTIME
# seconds more. Prints the IOPS before and after the kill, what the restarted gateway
# counted in its upload buffer as it came up, the journal segments it found, and how
# long it took to come up (until its socket is there), and how many dirty chunks it
# must store whole before they can leave the cache (cache_only_chunks). With OTHER_PLUGIN=path/to/
# nbdkit-ferry-plugin.so, the same again with that build, in the same run.
# ADOPT=1: the second gateway starts on a fresh state dir instead (takeover=true), as a
# replacement for a lost one: it applies the journal the first left to the chunks it
# adopts before it serves, so "start s" is how long that took.
# STOP=term: the first gateway is stopped cleanly instead (SIGTERM, shutdown-timeout=0:
# what is dirty stays dirty for the next start), as for a planned restart.
# STOP=none: no stop at all, the second writes go to the same gateway: the control, what
# the second RUNTIME seconds give with no restart in between.
#   bench/restart.sh [VOLUME_MB=2048] [BUFFER_MB=32] [RUNTIME=15]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MB=${1:-2048}
BUFFER=${2:-32}
RUNTIME=${3:-15}
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"
URI="nbd+unix:///vol?socket=$W/n.sock"

writes() {
  fio --name=w --ioengine=nbd --uri="$URI" --rw=randwrite --bs=4k --iodepth=32 --size="${MB}M" \
    --runtime="$RUNTIME" --time_based --norandommap --end_fsync=1 --output-format=json 2>/dev/null | fio_val write iops
}
stat_of() { admin "$1/admin.sock" '{"op":"stats"}' | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"; }
vol_stat() {
  admin "$1/admin.sock" '{"op":"stats"}' | python3 -c "import json,sys; print(json.load(sys.stdin)['volumes'][0]['$2'])"
}

run() {
  local label=$1 plugin=$2 st="$W/$1"
  local store="s3://bench/$label?endpoint=$EP&region=us-east-1&create_bucket=1"
  local args=(create="vol:${MB}M" cache-size=$((MB * 2))M upload-buffer="${BUFFER}M")
  local first=("${args[@]}")
  [ "${STOP:-}" = term ] && first+=(shutdown-timeout=0)
  PLUGIN=$plugin start_ferry "$st" "$store" "${first[@]}"
  local before after dirty
  before=$(writes)
  local t0 t1 segments unsure
  t0=$(now)
  t1=$t0
  if [ "${STOP:-}" != none ]; then
    if [ "${STOP:-}" = term ]; then kill -TERM "$NPID"; else kill -9 "$NPID"; fi
    wait "$NPID" 2>/dev/null || true
    NPID=
    if [ -n "${ADOPT:-}" ]; then
      st="$W/$label-adopt"
      args+=(takeover=true)
      export START_WAIT=900
    fi
    t0=$(now)
    PLUGIN=$plugin start_ferry "$st" "$store" "${args[@]}"
    t1=$(now)
  fi
  dirty=$(stat_of "$st" dirty_bytes)
  segments=$(vol_stat "$st" journal_segments)
  unsure=$(vol_stat "$st" cache_only_chunks 2>/dev/null || echo -)  # (older builds lack it)
  after=$(writes)
  admin "$st/admin.sock" '{"op":"checkpoint","name":"vol","timeout":900}' >/dev/null
  stop_ferry
  printf '%-8s %12s %12s %7.2f %14s %9s %9.1f %11s\n' "$label" "$before" "$after" "$(python3 -c "print($after/$before)")" \
    "$((dirty >> 20)) MiB" "$segments" "$(python3 -c "print($t1-$t0)")" "$unsure"
}

printf '%-8s %12s %12s %7s %14s %9s %9s %11s\n' build "IOPS before" "IOPS after" after/b "buffer at start" segments "start s" \
  "whole-only"
run this "$PLUGIN"
if [ -n "${OTHER_PLUGIN:-}" ]; then run other "$OTHER_PLUGIN"; fi
