# Shared by the S3 benchmarks (sourced, not run): a work dir, a throwaway radosgw,
# one nbdkit ferry at a time, the admin socket, fio's JSON.
# Needs before sourcing: ROOT (the checkout). Sets: W, RGW, EP, PLUGIN, BASE, NPID.

PLUGIN=${PLUGIN:-$ROOT/build/plugins/ferry/nbdkit-ferry-plugin.so}  # or another build, to compare
BASE="$ROOT/build/bench/s3_baseline"
[ -x "$BASE" ] && [ -f "$PLUGIN" ] || { echo "build first: cmake -S . -B build && cmake --build build" >&2; exit 1; }

W=$(mktemp -d "$ROOT/build/bench-XXXXXX")
RGW="$W/rgw"
NPID=
# STORE_LINK=RATE (tc's units: 1gbit, 500mbit): radosgw runs in a network namespace of
# its own, reached over a veth pair whose two ends send at most RATE each way (tbf),
# as a gateway reaches a store over a link. Unset: radosgw on loopback, as the tests.
LINK_NS=
bench_cleanup() {
  if [ -n "${BENCH_MOUNT:-}" ] && mountpoint -q "$BENCH_MOUNT"; then umount "$BENCH_MOUNT" || true; fi
  [ -n "${NPID:-}" ] && kill "$NPID" 2>/dev/null || true
  wait 2>/dev/null || true
  bash "$ROOT/tests/rgw/rgw-stop.sh" "$RGW" >/dev/null 2>&1 || true
  if [ -n "$LINK_NS" ]; then
    ip link del "$LINK_NS-h" 2>/dev/null || true
    ip netns del "$LINK_NS" 2>/dev/null || true
  fi
  rm -rf "$W"
}
trap bench_cleanup EXIT
RGW_RUN=()
if [ -n "${STORE_LINK:-}" ]; then
  LINK_NS="fbl$$"
  # A /30 of 10.201.0.0/16 picked from the pid, so two benches do not collide.
  net=$((($$ % 16000) * 4))
  host_addr="10.201.$((net / 256)).$((net % 256 + 1))"
  store_addr="10.201.$((net / 256)).$((net % 256 + 2))"
  ip netns add "$LINK_NS"
  ip link add "$LINK_NS-h" type veth peer name "$LINK_NS-s"
  ip link set "$LINK_NS-s" netns "$LINK_NS"
  ip addr add "$host_addr/30" dev "$LINK_NS-h"
  ip link set "$LINK_NS-h" up
  ip netns exec "$LINK_NS" ip addr add "$store_addr/30" dev "$LINK_NS-s"
  ip netns exec "$LINK_NS" ip link set "$LINK_NS-s" up
  ip netns exec "$LINK_NS" ip link set lo up
  # burst 256 KB: ~2 ms at 1 Gbit/s, several 64 KiB GSO segments (veth passes them whole).
  tc qdisc add dev "$LINK_NS-h" root tbf rate "$STORE_LINK" burst 256kb latency 20ms
  ip netns exec "$LINK_NS" tc qdisc add dev "$LINK_NS-s" root tbf rate "$STORE_LINK" burst 256kb latency 20ms
  RGW_RUN=(ip netns exec "$LINK_NS" env RGW_ADDR="$store_addr")
  echo "store behind a $STORE_LINK link (veth $LINK_NS-h, tbf each way): radosgw at $store_addr" >&2
fi
# 8 GiB of RAM for the store: bench/journal.sh 512 32 20 64 writes over 3 GiB of
# journal segments before its drain deletes them, and filled 4 GiB (OSD_FULL) once.
EP=$("${RGW_RUN[@]}" env RGW_MEMSTORE_BYTES="${RGW_MEMSTORE_BYTES:-8589934592}" bash "$ROOT/tests/rgw/rgw-start.sh" "$RGW" | tail -1)
export AWS_ACCESS_KEY_ID=TESTKEY AWS_SECRET_ACCESS_KEY=TESTSECRET

now() { date +%s.%N; }

# admin SOCKET JSON -> the answer line
admin() {
  python3 -c 'import socket,sys
s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.argv[2].encode()+b"\n")
print(s.makefile().readline().strip())' "$1" "$2"
}

# fio ... --output-format=json | fio_val read|write FIELD [DIVISOR]
fio_val() {
  python3 -c 'import json,sys
t=sys.stdin.read(); r=json.loads(t[t.index("{"):])["jobs"][0][sys.argv[1]]
d=float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
print(round(r[sys.argv[2]]/d, 1))' "$@"
}

# start_ferry STATE_DIR STORE_URL EXTRA_PARAMS... : nbdkit ferry on $W/n.sock, volume "vol"
start_ferry() {
  local st=$1 store=$2
  shift 2
  rm -f "$W/n.sock"
  nbdkit -f -t "${NBDKIT_THREADS:-16}" -U "$W/n.sock" "$PLUGIN" state="$st" store="$store" "$@" 2>>"$W/nbdkit.log" &
  NPID=$!
  # START_WAIT: seconds it may take (a start that applies a journal takes longer).
  for _ in $(seq 1 $((${START_WAIT:-20} * 10))); do [ -S "$W/n.sock" ] && return 0; sleep 0.1; done
  echo "nbdkit did not start:" >&2
  tail -20 "$W/nbdkit.log" >&2
  exit 1
}
# sync: no phase pays for the previous one's writeback
stop_ferry() { kill "$NPID"; wait "$NPID" || true; NPID=; sync; }
