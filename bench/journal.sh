#!/usr/bin/env bash
# Sustained 4 KiB random writes that do not fit the upload buffer, on one throwaway
# radosgw, 1 MiB blocks/chunks, caches as large as the volume and the same limit on
# dirty data for all three:
#   s3backer   --blockCacheMaxDirty=BUFFER blocks (writers wait for whole-block uploads)
#   ferry      upload-buffer=BUFFER, journal=false (writers wait for whole-chunk uploads)
#   ferry      upload-buffer=BUFFER, journal=true  (changed pages go to the journal)
# Each runs fio randwrite 4k qd32 for RUNTIME seconds over the whole volume, counted
# until the store holds everything (s3backer: until it has exited after the unmount;
# Ferry: until a checkpoint returns): IOPS = writes / (write time + drain time).
#   bench/journal.sh [VOLUME_MB=256] [BUFFER_MB=32] [RUNTIME=20] [CACHE_MB]
# CACHE_MB: every cache that size (s3backer blocks, Ferry cache-size) instead of as
# large as the volume (Ferry: twice): the writes then do not fit the cache either.
# ONLY=journal runs the journal=true variant alone (with OTHER_PLUGIN, and that build's).
# Each Ferry variant deletes its volume when done (the throwaway store holds 8 GiB).
# OTHER_PLUGIN=path.so also runs the journal variant on that build of the plugin.
# READS=SECONDS: after the writes, 4 KiB random reads at qd32 for that long (most
# chunks then are evicted with their changes in the journal, with CACHE_MB), before the
# drain; prints their IOPS and what they downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MB=${1:-256}
BUFFER_MB=${2:-32}
RUNTIME=${3:-20}
S3B_CACHE=${4:-$MB}
FERRY_CACHE=${4:-$((MB * 2))}
OTHER_PLUGIN=${OTHER_PLUGIN:+$(realpath "$OTHER_PLUGIN")}
ONLY=${ONLY:-}
READS=${READS:-}
HAVE_S3B=1
{ command -v s3backer >/dev/null && [ -e /dev/fuse ]; } || HAVE_S3B=0
[ "$ONLY" = journal ] && HAVE_S3B=0
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"
BENCH_MOUNT="$W/mnt"
"$BASE" "s3://s3backer?endpoint=$EP&create_bucket=1" 4 16 1M >/dev/null   # bucket + warm-up
mkdir -p "$W/mnt"

fio_write() {  # URI-or-file args... -> total write ios
  fio --name=w "$@" --rw=randwrite --bs=4k --iodepth=32 --size="${MB}M" --runtime="$RUNTIME" --time_based \
    --norandommap --output-format=json 2>/dev/null | fio_val write total_ios
}

S3B_W=0
if [ "$HAVE_S3B" = 1 ]; then
  s3backer --baseURL="$EP/" --accessId=TESTKEY --accessKey=TESTSECRET --authVersion=aws4 --blockSize=1M \
    --size="${MB}M" --blockCacheSize="$S3B_CACHE" --blockCacheMaxDirty="$BUFFER_MB" --listBlocks --force s3backer "$W/mnt" \
    >>"$W/s3backer.log" 2>&1
  pid=$(pgrep -f "s3backer --baseURL=$EP/" | head -1 || true)
  t0=$(now)
  ios=$(fio_write --filename="$W/mnt/file" --ioengine=libaio --direct=1)
  tw=$(now)
  umount "$W/mnt"
  while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  t1=$(now)
  S3B_W=$(python3 -c "print(round($ios/($t1-$t0)))")
  echo "s3backer:      $(python3 -c "print('%d writes in %.1f s + drain %.1f s' % ($ios, $tw-$t0, $t1-$tw))")"
fi

run_ferry() {  # NAME JOURNAL -> sets FERRY_W
  local name=$1 journal=$2
  start_ferry "$W/$name" "s3://ferry/$name?endpoint=$EP&region=us-east-1&create_bucket=1" create="vol:${MB}M" \
    cache-size="${FERRY_CACHE}M" upload-buffer="${BUFFER_MB}M" journal="$journal" recovery-interval=0
  local t0 tw t1 ios
  t0=$(now)
  ios=$(fio_write --ioengine=nbd --uri="nbd+unix:///vol?socket=$W/n.sock")
  tw=$(now)
  local stats drain_base
  stats=$(admin "$W/$name/admin.sock" '{"op":"stats"}')
  drain_base=$stats
  if [ -n "$READS" ]; then
    local reads
    reads=$(fio --name=r --ioengine=nbd --uri="nbd+unix:///vol?socket=$W/n.sock" --rw=randread --bs=4k --iodepth=32 \
      --size="${MB}M" --runtime="$READS" --time_based --norandommap --output-format=json 2>/dev/null | fio_val read iops)
    local read_stats
    read_stats=$(admin "$W/$name/admin.sock" '{"op":"stats"}')
    echo "ferry $name reads: $reads IOPS; $(python3 -c 'import json,sys; a=json.loads(sys.argv[1])["volumes"][0]; b=json.loads(sys.argv[2])["volumes"][0]
ga=json.loads(sys.argv[1]); gb=json.loads(sys.argv[2])
print("%d MiB downloaded, %d range GETs of segments, %d cache hits, %d misses, %d chunks stored whole; %d upload requests held back for the reads (%.1f s in all); %d chunks evicted into the journal and %d patched at the end" % ((b["downloaded_bytes"]-a["downloaded_bytes"])>>20,
      b.get("journal_reads", 0)-a.get("journal_reads", 0), b["read_hits"]-a["read_hits"], b["read_misses"]-a["read_misses"], b["uploads"]-a["uploads"],
      gb.get("uploads_held_back", 0)-ga.get("uploads_held_back", 0), gb.get("uploads_held_back_seconds", 0)-ga.get("uploads_held_back_seconds", 0),
      b.get("journal_only_chunks", 0), b.get("patched_chunks", 0)))' "$stats" "$read_stats")"
    drain_base=$read_stats
  fi
  echo 5 >"/proc/$NPID/clear_refs" 2>/dev/null || true  # the peak RSS from here: the drain's
  admin "$W/$name/admin.sock" '{"op":"checkpoint","name":"vol","timeout":900}' | grep -q '"ok":true'
  t1=$(now)
  local peak
  peak=$(awk '/^VmHWM/ {print int($2 / 1024)}' "/proc/$NPID/status")
  local drained
  drained=$(admin "$W/$name/admin.sock" '{"op":"stats"}')
  # Its objects go: the throwaway store holds 8 GiB, and the next variant's segments
  # need the room.
  admin "$W/$name/admin.sock" '{"op":"delete","name":"vol","force":true}' | grep -q '"ok":true'
  stop_ferry
  FERRY_W=$(python3 -c "print(round($ios/($t1-$t0)))")
  echo "ferry $name: $(python3 -c "print('%d writes in %.1f s + drain %.1f s' % ($ios, $tw-$t0, $t1-$tw))");" \
    "$(python3 -c 'import json,sys; v=json.loads(sys.argv[1])["volumes"][0]
print("%d journal segments, %d MiB of pages (%.0f KB a segment), %d MiB uploaded and %d MiB downloaded in all; at the end of the writes %d chunks evicted with their changes in the journal, %d patched" % (v["journal_writes"],
      v["journal_bytes"]>>20, v["journal_bytes"]/max(v["journal_writes"],1)/1000, v["uploaded_bytes"]>>20, v["downloaded_bytes"]>>20,
      v.get("journal_only_chunks", 0), v.get("patched_chunks", 0)))' "$stats")"
  echo "  the drain: $(python3 -c 'import json,sys; a=json.loads(sys.argv[1])["volumes"][0]; b=json.loads(sys.argv[2])["volumes"][0]
print("%d MiB downloaded, %d range GETs of segments, %d MiB uploaded" % ((b["downloaded_bytes"]-a["downloaded_bytes"])>>20,
      b.get("journal_reads", 0)-a.get("journal_reads", 0), (b["uploaded_bytes"]-a["uploaded_bytes"])>>20))' "$drain_base" "$drained"), peak RSS ${peak} MiB"
}
if [ "$ONLY" = journal ]; then
  run_ferry journal true
  if [ -n "$OTHER_PLUGIN" ]; then
    JOURNAL_W=$FERRY_W
    PLUGIN=$OTHER_PLUGIN
    run_ferry other true
    printf 'journal %s, other build %s IOPS: %.2f\n' "$JOURNAL_W" "$FERRY_W" "$(python3 -c "print($JOURNAL_W/max($FERRY_W,1))")"
  fi
  exit 0
fi
run_ferry whole false
WHOLE_W=$FERRY_W
run_ferry journal true
JOURNAL_W=$FERRY_W
OTHER_W=
if [ -n "$OTHER_PLUGIN" ]; then
  SAVED_PLUGIN=$PLUGIN
  PLUGIN=$OTHER_PLUGIN
  run_ferry other true
  OTHER_W=$FERRY_W
  PLUGIN=$SAVED_PLUGIN
fi

printf '%-34s %10s\n' "sustained 4K random write IOPS" "(incl. drain)"
[ "$HAVE_S3B" = 1 ] && printf '%-34s %10s\n' "s3backer (maxDirty=${BUFFER_MB})" "$S3B_W"
printf '%-34s %10s\n' "ferry, whole-chunk uploads" "$WHOLE_W"
printf '%-34s %10s\n' "ferry, journal=true" "$JOURNAL_W"
[ -n "$OTHER_W" ] && printf '%-34s %10s\n' "ferry, journal=true, other build" "$OTHER_W"
[ -n "$OTHER_W" ] && printf 'journal / other build: %.2f\n' "$(python3 -c "print($JOURNAL_W/max($OTHER_W,1))")"
printf 'journal / whole: %.1f\n' "$(python3 -c "print($JOURNAL_W/$WHOLE_W)")"
[ "$HAVE_S3B" = 1 ] && printf 'journal / s3backer: %.1f\n' "$(python3 -c "print($JOURNAL_W/max($S3B_W,1))")"
exit 0
