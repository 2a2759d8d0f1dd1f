#!/usr/bin/env bash
# Ferry against what the S3 store itself accepts, same run: a throwaway radosgw on
# loopback (tests/rgw/rgw-start.sh), then
#   1. baseline: THREADS parallel PUTs, then GETs, of 1 MiB objects (bench/s3_baseline)
#   2. upload drain: fill a volume with the uploader held back, then time the drain
#   3. cold sequential read: a fresh gateway on the same store reads the volume (fio 1M qd8)
#   4. cold 4 KiB random reads at qd32 on another fresh gateway
# Prints MB/s for each and the ratios ferry/store.
#   bench/s3_vs_store.sh [VOLUME_MB=512] [THREADS=8]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MB=${1:-512}
THREADS=${2:-8}
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"
STORE="s3://bench/gw?endpoint=$EP&region=us-east-1&create_bucket=1"
start() { local st=$1; shift; start_ferry "$st" "$STORE" create="vol:${MB}M" cache-size=4G upload-buffer=2G upload-threads="$THREADS" "$@"; }
stop() { stop_ferry; }

# Warm radosgw up first (its data pool is created on the first write), then measure.
"$BASE" "$STORE" "$THREADS" 64 1M >/dev/null
read -r PUT GET < <("$BASE" "$STORE" "$THREADS" "$MB" 1M)

start "$W/s1" upload-delay=3600000
fio --name=fill --ioengine=nbd --uri="nbd+unix:///vol?socket=$W/n.sock" --rw=write --bs=1M --iodepth=8 \
  --size="${MB}M" --output-format=terse >/dev/null
t0=$(now)
admin "$W/s1/admin.sock" '{"op":"checkpoint","name":"vol","timeout":600}' | grep -q '"ok":true'
t1=$(now)
DRAIN=$(python3 -c "print(round($MB*1048576/($t1-$t0)/1e6,1))")
stop

start "$W/s2"
COLD=$(fio --name=cold --ioengine=nbd --uri="nbd+unix:///vol?socket=$W/n.sock" --rw=read --bs=1M --iodepth=8 \
  --size="${MB}M" --output-format=json 2>/dev/null | fio_val read bw_bytes 1e6)
stop

# Cold random reads: as many 4 KiB reads as the volume has chunks, so most of them
# are first touches of a chunk (range GETs), as on a large cold volume.
start "$W/s3"
RIOPS=$(fio --name=coldrand --ioengine=nbd --uri="nbd+unix:///vol?socket=$W/n.sock" --rw=randread --bs=4k \
  --iodepth=32 --size="${MB}M" --number_ios="$MB" --norandommap --output-format=json 2>/dev/null | fio_val read iops)
RSTATS=$(admin "$W/s3/admin.sock" '{"op":"stats","name":"vol"}' | python3 -c 'import json,sys
v=json.load(sys.stdin)["volumes"][0]; print("range reads %d, whole-chunk misses %d, hits %d" % (v["range_reads"], v["read_misses"]-v["range_reads"], v["read_hits"]))')
stop

# The baseline again, now that the store holds the volume too: the store's rate at
# the end of the run, next to the one at the start.
read -r PUT2 GET2 < <("$BASE" "$STORE" "$THREADS" "$MB" 1M)
echo "store baseline at start: PUT $PUT GET $GET MB/s; at end: PUT $PUT2 GET $GET2 MB/s"

printf '%-34s %10s %10s %7s\n' measure store ferry ratio
printf '%-34s %10s %10s %7.2f\n' "upload drain vs parallel PUT MB/s" "$PUT" "$DRAIN" "$(python3 -c "print($DRAIN/$PUT)")"
printf '%-34s %10s %10s %7.2f\n' "cold seq read vs parallel GET MB/s" "$GET" "$COLD" "$(python3 -c "print($COLD/$GET)")"
printf '%-34s %10s %10s   (%s)\n' "cold 4K random read IOPS (qd32)" "-" "$RIOPS" "$RSTATS"
