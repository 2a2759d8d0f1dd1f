#!/usr/bin/env bash
# Snapshots, volumes made from them and hydration, against a throwaway radosgw on
# loopback (tests/rgw/rgw-start.sh), same run:
#   1. write stall: fio 4 KiB random writes at qd16 for RUNTIME s, once alone and
#      once while SNAPS snapshots are taken; completion latency p99 and max of both,
#      and their ratios (with / without)
#   2. snapshot latency (the admin op, request to answer) and the writers' pause (the
#      freeze's critical section) under that load
#   3. time to first byte of a volume made from a snapshot: the create, then the first
#      4 KiB read, against one 1 MiB GET of the store
#   4. hydration: the volume made from the snapshot copied into its own objects, MB/s,
#      against the store's parallel GET rate with as many threads (bench/s3_baseline)
#   bench/snapshot.sh [VOLUME_MB=512] [RUNTIME=20] [SNAPS=5] [HYDRATE_THREADS=4]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MB=${1:-512}
RUNTIME=${2:-20}
SNAPS=${3:-5}
HT=${4:-4}
PY=/usr/bin/python3  # Debian's, with python3-libnbd
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"
STORE="s3://bench/gw?endpoint=$EP&region=us-east-1&create_bucket=1"
SOCK="$W/n.sock"
ratio() { python3 -c "print('%.2f' % ($1/$2))"; }
ms() { python3 -c "print(round(($2-$1)*1000,1))"; }

"$BASE" "$STORE" "$HT" 64 1M >/dev/null  # warm radosgw up (its pools are made on first use)
start_ferry "$W/s" "$STORE" create="vol:${MB}M" cache-size=4G upload-buffer=1G recovery-interval=0 \
  hydrate-threads="$HT"
URI="nbd+unix:///vol?socket=$SOCK"
fio --name=fill --ioengine=nbd --uri="$URI" --rw=write --bs=1M --iodepth=8 --size="${MB}M" --output-format=terse \
  >/dev/null
admin "$W/s/admin.sock" '{"op":"checkpoint","name":"vol","timeout":600}' | grep -q '"ok":true'

# fio random writes for RUNTIME s -> "p99_ms max_ms iops"
randwrite() {
  fio --name=rw --ioengine=nbd --uri="$URI" --rw=randwrite --bs=4k --iodepth=16 --size="${MB}M" \
    --runtime="$RUNTIME" --time_based --norandommap --randrepeat=0 --output-format=json 2>/dev/null |
    python3 -c 'import json,sys
t=sys.stdin.read(); w=json.loads(t[t.index("{"):])["jobs"][0]["write"]
c=w["clat_ns"]
print(round(c["percentile"]["99.000000"]/1e6,2), round(c["max"]/1e6,2), round(w["iops"]))'
}

read -r P99_ALONE MAX_ALONE IOPS_ALONE < <(randwrite)
randwrite >"$W/with.txt" &
FIO=$!
FIO_T0=$(now)
EACH=()  # per snapshot: when it was asked (s after fio started), its latency, frozen, copied
GAP=$(python3 -c "print($RUNTIME/($SNAPS+1))")
LAT=()
PAUSE=()
COPIED=0
for i in $(seq 1 "$SNAPS"); do
  # Asked at i × GAP after fio started, or as soon as the one before is answered: the
  # first, with every chunk dirty, can take longer than GAP.
  sleep "$(python3 -c "print(max(0, $FIO_T0 + $i * $GAP - $(now)))")"
  t0=$(now)
  ans=$(admin "$W/s/admin.sock" "{\"op\":\"snapshot\",\"name\":\"vol\",\"snapshot\":\"s$i\",\"timeout\":600}")
  t1=$(now)
  echo "$ans" | grep -q '"ok":true' || { echo "snapshot failed: $ans" >&2; exit 1; }
  LAT+=("$(ms "$t0" "$t1")")
  PAUSE+=("$(echo "$ans" | python3 -c 'import json,sys; print(json.load(sys.stdin)["freeze"]["pause_us"])')")
  COPIED=$((COPIED + $(echo "$ans" | python3 -c 'import json,sys; print(json.load(sys.stdin)["freeze"]["copied"])')))
  EACH+=("$(echo "$ans" | python3 -c 'import json,sys; f=json.load(sys.stdin)["freeze"]
print("s%s at +%.1f s: %s ms, %d frozen, %d copied" % (sys.argv[1], float(sys.argv[2]), sys.argv[3], f["frozen"], f["copied"]))' \
    "$i" "$(python3 -c "print($t0-$FIO_T0)")" "${LAT[-1]}")")
done
wait "$FIO"
read -r P99_WITH MAX_WITH IOPS_WITH <"$W/with.txt"
LAT_MED=$(printf '%s\n' "${LAT[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
LAT_MAX=$(printf '%s\n' "${LAT[@]}" | sort -n | tail -1)
PAUSE_MAX=$(printf '%s\n' "${PAUSE[@]}" | sort -n | tail -1)

# A volume from the last snapshot: the create, then the first read.
admin "$W/s/admin.sock" '{"op":"checkpoint","name":"vol","timeout":600}' >/dev/null
t0=$(now)
# One process: the create on the admin socket, then the first read over NBD.
TTFB=$("$PY" -c 'import json,nbd,socket,sys,time
t=time.monotonic()
s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall((json.dumps({"op":"create","name":"clone","source":{"volume":"vol","snapshot":sys.argv[3]}})+"\n").encode())
a=json.loads(s.makefile().readline())
if not a.get("ok"): sys.exit("create failed: %s" % a)
h=nbd.NBD(); h.set_export_name("clone"); h.connect_unix(sys.argv[2]); h.pread(4096, 0)
print(round((time.monotonic()-t)*1000,1))' "$W/s/admin.sock" "$SOCK" "s$SNAPS")
# Hydration: until no chunk is left to copy (polled every 20 ms).
t2=$("$PY" -c 'import json,socket,sys,time
while True:
  s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
  s.sendall(b"{\"op\":\"stats\",\"name\":\"clone\"}\n")
  v=json.loads(s.makefile().readline())["volumes"][0]
  if v.get("hydration",{}).get("chunks_left",0)==0: break
  time.sleep(0.02)
print("%.3f" % time.time())' "$W/s/admin.sock")
HYD=$(python3 -c "print(round($MB*1048576/($t2-$t0)/1e6,1))")
stop_ferry
read -r _ GET < <("$BASE" "$STORE" "$HT" "$MB" 1M)
read -r _ ONE < <("$BASE" "$STORE" 1 1 1M)
ONE_GET=$(python3 -c "print(round(1.048576/$ONE*1000,1))")

echo "snapshot bench: ${MB} MiB volume, radosgw on loopback, fio 4k randwrite qd16 ${RUNTIME}s, $SNAPS snapshots"
printf '%-40s %12s %12s %8s\n' measure alone with-snaps ratio
printf '%-40s %12s %12s %8s\n' "write clat p99 (ms)" "$P99_ALONE" "$P99_WITH" "$(ratio "$P99_WITH" "$P99_ALONE")"
printf '%-40s %12s %12s %8s\n' "write clat max (ms)" "$MAX_ALONE" "$MAX_WITH" "$(ratio "$MAX_WITH" "$MAX_ALONE")"
printf '%-40s %12s %12s %8s\n' "write IOPS" "$IOPS_ALONE" "$IOPS_WITH" "$(ratio "$IOPS_WITH" "$IOPS_ALONE")"
echo "snapshot latency: median ${LAT_MED} ms, max ${LAT_MAX} ms (fio writes for the first ${RUNTIME} s; below, which" \
  "snapshot overlapped them); writers paused at most ${PAUSE_MAX} us;" \
  "$COPIED chunks copied before a rewrite"
printf '  %s\n' "${EACH[@]}"
echo "volume from a snapshot: first byte ${TTFB} ms after the request (one 1 MiB GET alone: ${ONE_GET} ms)"
echo "hydration: ${HYD} MB/s with $HT threads; store parallel GET ($HT threads, 1 MiB): ${GET} MB/s;" \
  "ratio $(ratio "$HYD" "$GET")"
