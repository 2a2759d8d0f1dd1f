#!/usr/bin/env bash
# Reads right after a machine crash: a gateway whose cache is as large as its volume
# writes the whole volume, stores it (checkpoint) and so holds it all cached and clean;
# it is then killed (kill -9), its written map stamped with another boot's id and the
# page cache dropped, as a machine crash and a reboot leave them. The gateway started
# again on the same state dir serves fio 4 KiB random reads at qd32 for RUNTIME seconds
# at once. Prints their IOPS, what the restarted gateway downloaded meanwhile, and how
# long until every distrusted clean chunk was checked (unverified_chunks 0; "-" for a
# build without checksums, which reads them all from the store again). With
# OTHER_PLUGIN=path/to/nbdkit-ferry-plugin.so, the same again with that build, in the
# same run (a build before checksums: every clean chunk leaves the cache).
#   bench/crash_cache.sh [VOLUME_MB=1024] [RUNTIME=20]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MB=${1:-1024}
RUNTIME=${2:-20}
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"
URI="nbd+unix:///vol?socket=$W/n.sock"

vol_stat() {
  admin "$1/admin.sock" '{"op":"stats"}' |
    python3 -c "import json,sys; print(json.load(sys.stdin)['volumes'][0].get('$2', '-'))"
}

run() {
  local label=$1 plugin=$2 st="$W/$1"
  local store="s3://bench/$label?endpoint=$EP&region=us-east-1&create_bucket=1"
  local args=(create="vol:${MB}M" cache-size=$((MB * 2))M upload-buffer=$((MB / 2))M)
  PLUGIN=$plugin start_ferry "$st" "$store" "${args[@]}"
  fio --name=fill --ioengine=nbd --uri="$URI" --rw=write --bs=1M --iodepth=8 --size="${MB}M" \
    --output-format=json >/dev/null 2>&1
  admin "$st/admin.sock" '{"op":"checkpoint","name":"vol","timeout":900}' >/dev/null
  local cached
  cached=$(vol_stat "$st" cached_bytes)
  sleep 2 # the rows the checkpoint left, committed (commit-interval)
  kill -9 "$NPID"
  wait "$NPID" 2>/dev/null || true
  NPID=
  # Another boot: the written map no longer tells which chunks were written last.
  printf '#' | dd of="$st/vol.written" bs=1 seek=16 conv=notrunc status=none
  sync
  echo 3 >/proc/sys/vm/drop_caches
  local t0 iops down verified failed checked=- poller=
  t0=$(now)
  PLUGIN=$plugin start_ferry "$st" "$store" "${args[@]}"
  rm -f "$W/checked"
  if [ "$(vol_stat "$st" unverified_chunks)" != - ]; then
    # How long from the start until every distrusted chunk was checked, beside the reads.
    (
      for _ in $(seq 1 6000); do
        if [ "$(vol_stat "$st" unverified_chunks)" = 0 ]; then
          python3 -c "print(round($(now) - $t0, 1))" >"$W/checked"
          break
        fi
        sleep 0.1
      done
    ) &
    poller=$!
  fi
  iops=$(fio --name=r --ioengine=nbd --uri="$URI" --rw=randread --bs=4k --iodepth=32 --size="${MB}M" \
    --runtime="$RUNTIME" --time_based --norandommap --output-format=json 2>/dev/null | fio_val read iops)
  down=$(vol_stat "$st" downloaded_bytes)
  if [ -n "$poller" ]; then
    wait "$poller" || true
    checked=$(cat "$W/checked" 2>/dev/null || echo "?")
  fi
  verified=$(vol_stat "$st" verified_chunks)
  failed=$(vol_stat "$st" verify_failures)
  stop_ferry
  printf '%-6s %12s %12s %10s %10s %9s %14s\n' "$label" "$((cached >> 20)) MiB" "$iops" "$verified" "$failed" \
    "$checked" "$((down >> 20)) MiB"
}

printf '%-6s %12s %12s %10s %10s %9s %14s\n' build "cached" "IOPS after" verified failed "checked s" "downloaded"
run this "$PLUGIN"
if [ -n "${OTHER_PLUGIN:-}" ]; then run other "$OTHER_PLUGIN"; fi
