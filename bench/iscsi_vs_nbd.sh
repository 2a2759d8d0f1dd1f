#!/usr/bin/env bash
# iSCSI against NBD on the same Ferry volume, same run, interleaved rounds. The iSCSI
# path is the agent's (docs/iscsi.md): nbdkit ferry on TCP, nbdfuse showing the
# volume as a file, tgtd serving that file — set up here with the same commands
# appliance/iscsi_targets.cc runs. One client for both protocols, qemu-img bench
# (qemu's own NBD and iSCSI drivers), so the difference is the protocol path.
# Workloads: 64 KiB sequential write / read and 4 KiB sequential write / read, queue
# depth 16. Warm cache: the volume is written once first. Prints MiB/s per protocol
# and the ratio iSCSI / NBD.
#   bench/iscsi_vs_nbd.sh [SIZE=1G] [ROUNDS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SIZE=${1:-1G}
ROUNDS=${2:-3}
PLUGIN="$ROOT/build/plugins/ferry/nbdkit-ferry-plugin.so"
[ -f "$PLUGIN" ] || { echo "build first: cmake -S . -B build && cmake --build build" >&2; exit 1; }
for p in tgtd tgtadm nbdfuse fusermount3 qemu-img; do
  command -v "$p" >/dev/null || { echo "$p is missing: scripts/deps.sh" >&2; exit 1; }
done

W=$(mktemp -d "$ROOT/build/bench-XXXXXX")
NBD_PORT=$((20000 + RANDOM % 20000))
ISCSI_PORT=$((NBD_PORT + 1))
CTL=$((1000 + RANDOM % 30000))
IQN=iqn.2026-11.io.ferry:vol
cleanup() {
  tgtadm -C "$CTL" --lld iscsi --op delete --mode target --tid 1 --force >/dev/null 2>&1 || true
  tgtadm -C "$CTL" --op delete --mode system >/dev/null 2>&1 || true
  fusermount3 -u "$W/mnt" 2>/dev/null || true
  [ -n "${NPID:-}" ] && kill "$NPID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

mkdir -p "$W/store" "$W/state" "$W/mnt"
nbdkit -f -i 127.0.0.1 -p "$NBD_PORT" "$PLUGIN" state="$W/state" store="file://$W/store" \
  create="vol:$SIZE" cache-size=4G upload-buffer=2G 2>"$W/ferry.log" &
NPID=$!
for _ in $(seq 1 100); do nbdinfo "nbd://127.0.0.1:$NBD_PORT/vol" >/dev/null 2>&1 && break; sleep 0.1; done
nbdfuse "$W/mnt/disk" "nbd://127.0.0.1:$NBD_PORT/vol" 2>"$W/nbdfuse.log" &
for _ in $(seq 1 100); do [ -s "$W/mnt/disk" ] && break; sleep 0.1; done
tgtd -f -C "$CTL" --iscsi portal="127.0.0.1:$ISCSI_PORT" >"$W/tgtd.log" 2>&1 &
for _ in $(seq 1 100); do tgtadm -C "$CTL" --op show --mode sys >/dev/null 2>&1 && break; sleep 0.1; done
tgtadm -C "$CTL" --lld iscsi --op new --mode target --tid 1 -T "$IQN"
tgtadm -C "$CTL" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 --bstype rdwr --bsoflags direct -b "$W/mnt/disk"
tgtadm -C "$CTL" --lld iscsi --op bind --mode target --tid 1 -I ALL

NBD="driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$NBD_PORT,export=vol"
ISCSI="driver=iscsi,transport=tcp,portal=127.0.0.1:$ISCSI_PORT,target=$IQN,lun=1"
BYTES=$(numfmt --from=iec "$SIZE")

# bench OPTS BLOCK WRITE? -> MiB/s over the whole volume
bench() {
  local opts=$1 bs=$2 rw=$3 n
  n=$((BYTES / $(numfmt --from=iec "$bs")))
  local t0 t1
  t0=$(date +%s.%N)
  qemu-img bench -t none --image-opts "$opts" -c "$n" -s "$bs" -d 16 $rw >/dev/null
  t1=$(date +%s.%N)
  python3 -c "print(round($BYTES / 1048576 / ($t1 - $t0), 1))"
}

bench "$NBD" 1M -w >/dev/null  # warm: every chunk written and cached
echo "iSCSI vs NBD, Ferry volume of $SIZE, qemu-img bench depth 16, $ROUNDS rounds (MiB/s, median)"
printf '%-18s %10s %10s %8s\n' workload nbd iscsi ratio
for w in "64K -w:64K write" "64K :64K read" "4K -w:4K write" "4K :4K read"; do
  args=${w%%:*}
  name=${w#*:}
  bs=${args%% *}
  rw=${args#* }
  [ "$rw" = "$bs" ] && rw=""
  nbd=() iscsi=()
  for _ in $(seq 1 "$ROUNDS"); do
    nbd+=("$(bench "$NBD" "$bs" "$rw")")
    iscsi+=("$(bench "$ISCSI" "$bs" "$rw")")
  done
  python3 - "$name" "${nbd[*]}" "${iscsi[*]}" <<'PY'
import statistics, sys
name, a, b = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
ma, mb = statistics.median(a), statistics.median(b)
print(f"{name:<18} {ma:>10.1f} {mb:>10.1f} {mb / ma:>8.2f}   (nbd {a}, iscsi {b})")
PY
done
