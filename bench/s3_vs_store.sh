#!/usr/bin/env bash
# Ferry against what the S3 store itself does, same run: a throwaway radosgw on
# loopback (tests/rgw/rgw-start.sh), then
#   1. upload drain: fill a volume with the uploader held back, then time the drain,
#      against THREADS parallel PUTs of 1 MiB objects (bench/s3_baseline) just before
#   2. cold sequential read, 1 MiB at qd8, on a fresh gateway (new state dir), against
#      THREADS parallel GETs of 1 MiB measured just before and just after it (the
#      store's speed changes as it fills)
#   3. cold sequential read, 128 KiB at qd1 (dd, a file copy), with read-ahead and
#      with read-ahead=0
#   4. cold 4 KiB random reads at qd32, against 32 parallel GETs of 4 KiB objects, and
#      against 32 parallel 4 KiB range GETs of 1 MiB objects (what Ferry asks)
# Prints the rates and the ratios ferry/store.
#   bench/s3_vs_store.sh [VOLUME_MB=512] [THREADS=8]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MB=${1:-512}
THREADS=${2:-8}
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"
STORE="s3://bench/gw?endpoint=$EP&region=us-east-1&create_bucket=1"
URI="nbd+unix:///vol?socket=$W/n.sock"
start() { local st=$1; shift; start_ferry "$st" "$STORE" create="vol:${MB}M" cache-size=4G upload-buffer=2G upload-threads="$THREADS" "$@"; }
ratio() { python3 -c "print('%.2f' % ($1/$2))"; }
mean() { python3 -c "print(round(($1+$2)/2,1))"; }
fio_read() {  # NAME RW BS QD [extra fio args] -> MB/s
  local name=$1 rw=$2 bs=$3 qd=$4; shift 4
  fio --name="$name" --ioengine=nbd --uri="$URI" --rw="$rw" --bs="$bs" --iodepth="$qd" --size="${MB}M" \
    --output-format=json "$@" 2>/dev/null | fio_val read bw_bytes 1e6
}

# Warm radosgw up first (its data pool is created on the first write), then measure.
"$BASE" "$STORE" "$THREADS" 64 1M >/dev/null
read -r PUT _ < <("$BASE" "$STORE" "$THREADS" "$MB" 1M)

start "$W/s1" upload-delay=3600000
fio --name=fill --ioengine=nbd --uri="$URI" --rw=write --bs=1M --iodepth=8 --size="${MB}M" --output-format=terse >/dev/null
t0=$(now)
admin "$W/s1/admin.sock" '{"op":"checkpoint","name":"vol","timeout":600}' | grep -q '"ok":true'
t1=$(now)
DRAIN=$(python3 -c "print(round($MB*1048576/($t1-$t0)/1e6,1))")
stop_ferry

read -r _ GET1 < <("$BASE" "$STORE" "$THREADS" "$MB" 1M)
start "$W/s2"
COLD=$(fio_read cold read 1M 8)
stop_ferry
read -r _ GET2 < <("$BASE" "$STORE" "$THREADS" "$MB" 1M)
GET=$(mean "$GET1" "$GET2")

start "$W/s3"
DD=$(fio_read dd read 128k 1)
RA=$(admin "$W/s3/admin.sock" '{"op":"stats","name":"vol"}' | python3 -c 'import json,sys
v=json.load(sys.stdin)["volumes"][0]; print("%d fetched ahead, %d reads served from them" % (v["read_ahead_fetches"], v["read_ahead_hits"]))')
stop_ferry
start "$W/s4" read-ahead=0
DD0=$(fio_read dd0 read 128k 1)
stop_ferry

# Cold random reads: as many 4 KiB reads as the volume has chunks, so most of them
# are first touches of a chunk (range GETs), as on a large cold volume.
read -r _ SMALL < <("$BASE" "$STORE" 32 4096 4K)
SMALL_IOPS=$(python3 -c "print(round($SMALL*1e6/4096))")
read -r _ RANGED < <("$BASE" "$STORE" 32 256 1M 4K 4096)
RANGE_IOPS=$(python3 -c "print(round($RANGED*1e6/4096))")
start "$W/s5"
RIOPS=$(fio --name=coldrand --ioengine=nbd --uri="$URI" --rw=randread --bs=4k --iodepth=32 --size="${MB}M" \
  --number_ios="$MB" --norandommap --output-format=json 2>/dev/null | fio_val read iops)
RSTATS=$(admin "$W/s5/admin.sock" '{"op":"stats","name":"vol"}' | python3 -c 'import json,sys
v=json.load(sys.stdin)["volumes"][0]; print("range reads %d, whole-chunk misses %d, hits %d" % (v["range_reads"], v["read_misses"]-v["range_reads"], v["read_hits"]))')
stop_ferry

echo "store: PUT $PUT MB/s; GET $GET1 MB/s before the cold read, $GET2 after; 4 KiB GETs at 32 threads $SMALL_IOPS/s, 4 KiB range GETs of 1 MiB objects $RANGE_IOPS/s"
echo "read-ahead in the dd run: $RA; cold random: $RSTATS"
printf '%-40s %10s %10s %7s\n' measure store ferry ratio
printf '%-40s %10s %10s %7s\n' "upload drain vs parallel PUT (MB/s)" "$PUT" "$DRAIN" "$(ratio "$DRAIN" "$PUT")"
printf '%-40s %10s %10s %7s\n' "cold seq 1M qd8 vs parallel GET (MB/s)" "$GET" "$COLD" "$(ratio "$COLD" "$GET")"
printf '%-40s %10s %10s %7s\n' "cold seq 128K qd1: read-ahead vs off" "$DD0" "$DD" "$(ratio "$DD" "$DD0")"
printf '%-40s %10s %10s %7s\n' "cold 4K random qd32 vs 4K GETs (IOPS)" "$SMALL_IOPS" "$RIOPS" "$(ratio "$RIOPS" "$SMALL_IOPS")"
printf '%-40s %10s %10s %7s\n' "  vs 4K range GETs of 1M objects (IOPS)" "$RANGE_IOPS" "$RIOPS" "$(ratio "$RIOPS" "$RANGE_IOPS")"
