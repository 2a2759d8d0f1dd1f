#!/usr/bin/env bash
# Where the CPU goes during cold 4 KiB random reads (phase 4 of s3_vs_store.sh): one
# throwaway radosgw, a volume filled and uploaded, then RUNS fresh gateways each
# reading VOLUME_MB random 4 KiB blocks at qd32 with fio, next to the store's own 4 KiB
# GETs at 32 threads measured just before. Prints per run: fio's IOPS, the baseline,
# and CPU seconds of fio, nbdkit, radosgw and ceph-osd over the fio run.
#   bench/cold_random_cpu.sh [VOLUME_MB=1024] [RUNS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MB=${1:-1024}
RUNS=${2:-3}
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"
STORE="s3://bench/cpu?endpoint=$EP&region=us-east-1&create_bucket=1"
URI="nbd+unix:///vol?socket=$W/n.sock"
start() { local st=$1; shift; start_ferry "$st" "$STORE" create="vol:${MB}M" cache-size=4G upload-buffer=2G "$@"; }
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }  # utime+stime in clock ticks
secs() { python3 -c "print('%.2f' % (($2-$1)/100))"; }

"$BASE" "$STORE" 8 64 1M >/dev/null
start "$W/fill" upload-delay=3600000
fio --name=fill --ioengine=nbd --uri="$URI" --rw=write --bs=1M --iodepth=8 --size="${MB}M" --output-format=terse >/dev/null
admin "$W/fill/admin.sock" '{"op":"checkpoint","name":"vol","timeout":600}' | grep -q '"ok":true'
stop_ferry
RGW_PID=$(pgrep -x radosgw | head -1)
OSD_PID=$(pgrep -x ceph-osd | head -1)
printf '%-4s %8s %9s %6s %7s %8s %6s %6s\n' run "ferry" "4K GETs" fio nbdkit radosgw osd wall
for i in $(seq 1 "$RUNS"); do
  read -r _ small < <("$BASE" "$STORE" 32 4096 4K)
  start "$W/c$i"
  r0=$(cpu "$RGW_PID"); o0=$(cpu "$OSD_PID"); n0=$(cpu "$NPID"); t0=$(now)
  /usr/bin/time -f "%U %S" -o "$W/fio.time" fio --name=coldrand --ioengine=nbd --uri="$URI" --rw=randread --bs=4k \
    --iodepth=32 --size="${MB}M" --number_ios="$MB" --norandommap --output-format=json >"$W/fio.json" 2>/dev/null
  t1=$(now); r1=$(cpu "$RGW_PID"); o1=$(cpu "$OSD_PID"); n1=$(cpu "$NPID")
  iops=$(fio_val read iops <"$W/fio.json")
  fio_cpu=$(awk '{printf "%.2f", $1+$2}' "$W/fio.time")
  printf '%-4s %8s %9s %6s %7s %8s %6s %6s\n' "$i" "$iops" "$(python3 -c "print(round($small*1e6/4096))")" \
    "$fio_cpu" "$(secs "$n0" "$n1")" "$(secs "$r0" "$r1")" "$(secs "$o0" "$o1")" "$(python3 -c "print('%.2f' % ($t1-$t0))")"
  stop_ferry
done
