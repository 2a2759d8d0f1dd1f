#!/usr/bin/env bash
# Ferry side by side with s3backer (Debian's, FUSE), the closest open peer, on the same
# throwaway radosgw, same 1 MiB block size and cache size:
#   1. sustained 4 KiB random writes (qd32) for RUNTIME seconds, counted until the
#      store holds everything (s3backer: until its unmount returns; Ferry: until a
#      checkpoint returns): IOPS = writes / (write time + drain time)
#   2. cold 4 KiB random reads (qd32) after a remount / on a fresh gateway
# (s3backer picks virtual-host URLs when given --region; without it, path style and
# us-east-1, which radosgw on loopback needs.)
# s3backer is driven by fio with direct=1 (libaio) on its file, Ferry by fio's nbd engine.
#   bench/s3backer_vs_ferry.sh [VOLUME_MB=1024] [RUNTIME=20] [COLD_IOS=1000]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MB=${1:-1024}
RUNTIME=${2:-20}
COLD_IOS=${3:-1000}
CACHE_BLOCKS=$MB  # both caches hold the whole volume, in 1 MiB blocks
command -v s3backer >/dev/null || { echo "s3backer is missing: apt-get install s3backer" >&2; exit 1; }
[ -e /dev/fuse ] || { echo "no /dev/fuse: cannot run s3backer here" >&2; exit 1; }
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"
BENCH_MOUNT="$W/mnt"
"$BASE" "s3://s3backer?endpoint=$EP&create_bucket=1" 4 16 1M >/dev/null   # bucket + warm-up
STORE="s3://ferry/gw?endpoint=$EP&region=us-east-1&create_bucket=1"
mkdir -p "$W/mnt"

mount_s3b() {
  s3backer --baseURL="$EP/" --accessId=TESTKEY --accessKey=TESTSECRET --authVersion=aws4 \
    --blockSize=1M --size="${MB}M" --blockCacheSize="$CACHE_BLOCKS" --listBlocks --force s3backer "$W/mnt" \
    >>"$W/s3backer.log" 2>&1
}
# The kernel lets go of a FUSE mount before the daemon has finished writing back:
# wait for the s3backer process itself to exit.
umount_s3b() {
  local pid
  pid=$(pgrep -f "s3backer --baseURL=$EP/" | head -1 || true)
  umount "$W/mnt"
  while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
}
start() { start_ferry "$1" "$STORE" create="vol:${MB}M" cache-size=$((MB * 2))M upload-buffer=${MB}M; }

# --- sustained random writes
mount_s3b
t0=$(now)
S3B_IOS=$(fio --name=w --filename="$W/mnt/file" --ioengine=libaio --direct=1 --rw=randwrite --bs=4k --iodepth=32 \
  --size="${MB}M" --runtime="$RUNTIME" --time_based --norandommap --output-format=json 2>/dev/null | fio_val write total_ios)
tw=$(now)
umount_s3b        # returns once s3backer has written every dirty block and exited
t1=$(now)
S3B_W=$(python3 -c "print(round($S3B_IOS/($t1-$t0)))")
S3B_DETAIL=$(python3 -c "print('%d writes in %.1f s + drain %.1f s' % ($S3B_IOS, $tw-$t0, $t1-$tw))")

start "$W/f1"
t0=$(now)
FERRY_IOS=$(fio --name=w --ioengine=nbd --uri="nbd+unix:///vol?socket=$W/n.sock" --rw=randwrite --bs=4k --iodepth=32 \
  --size="${MB}M" --runtime="$RUNTIME" --time_based --norandommap --output-format=json 2>/dev/null | fio_val write total_ios)
tw=$(now)
admin "$W/f1/admin.sock" '{"op":"checkpoint","name":"vol","timeout":900}' | grep -q '"ok":true'
t1=$(now)
FERRY_W=$(python3 -c "print(round($FERRY_IOS/($t1-$t0)))")
FERRY_DETAIL=$(python3 -c "print('%d writes in %.1f s + drain %.1f s' % ($FERRY_IOS, $tw-$t0, $t1-$tw))")
stop_ferry

# --- cold random reads
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
mount_s3b
S3B_R=$(fio --name=r --filename="$W/mnt/file" --ioengine=libaio --direct=1 --rw=randread --bs=4k --iodepth=32 \
  --size="${MB}M" --number_ios="$COLD_IOS" --norandommap --output-format=json 2>/dev/null | fio_val read iops)
umount_s3b
start "$W/f2"
FERRY_R=$(fio --name=r --ioengine=nbd --uri="nbd+unix:///vol?socket=$W/n.sock" --rw=randread --bs=4k --iodepth=32 \
  --size="${MB}M" --number_ios="$COLD_IOS" --norandommap --output-format=json 2>/dev/null | fio_val read iops)
stop_ferry

printf '%-44s %10s %10s %7s\n' measure s3backer ferry ratio
printf '%-44s %10s %10s %7.1f\n' "sustained 4K random write IOPS (incl. drain)" "$S3B_W" "$FERRY_W" "$(python3 -c "print($FERRY_W/$S3B_W)")"
printf '%-44s %10.0f %10.0f %7.1f\n' "cold 4K random read IOPS (qd32)" "$S3B_R" "$FERRY_R" "$(python3 -c "print($FERRY_R/$S3B_R)")"
echo "s3backer: $S3B_DETAIL"
echo "ferry:    $FERRY_DETAIL"
