#!/usr/bin/env bash
# Issue #3's control-farm targets, measured: one ferry-control holding N idle gateway
# channels (RSS per channel), push latency p50/p99 at RATE requests/s direct (through
# the server holding the channel) and forwarded (through its peer), and the time for
# the farm to absorb every gateway reconnecting after the holding server is killed.
# Two servers on one SQLite database; the load generator (bench/channel_load.cc) is a
# separate process spreading its source addresses over 127.0.0.0/8.
#   bench/channels.sh [N=10000] [RATE=100] [SECONDS=20]
# Targets: < 64 KiB RSS per channel; push p99 < 20 ms direct, < 50 ms forwarded;
# reconnection absorbed in < 30 s.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-10000}
RATE=${2:-100}
SECS=${3:-20}
B="$ROOT/build"
[ -x "$B/bench/channel_load" ] && [ -x "$B/server/ferry-control" ] || {
  echo "build first: cmake -S . -B build && cmake --build build" >&2
  exit 1
}
W=$(mktemp -d "$B/bench-channels-XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # The servers' logs of the last run stay for a look.
  rm -rf "$B/bench-channels-last" && mkdir -p "$B/bench-channels-last"
  cp "$W"/a/log "$B/bench-channels-last/a.log" 2>/dev/null || true
  cp "$W"/b/log "$B/bench-channels-last/b.log" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

start_server() {  # NAME EXTRA-CONFIG
  mkdir -p "$W/$1"
  cat >"$W/$1/control.properties" <<EOF
database = sqlite://$W/control.db
state.dir = $W/$1/state
api.host = 127.0.0.1
api.port = 0
channel.port = 0
internal.port = 0
server.id = $1
server.heartbeat_seconds = 1
server.stale_seconds = 3
$2
EOF
  "$B/server/ferry-control" --config="$W/$1/control.properties" >"$W/$1/log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do grep -q "API on" "$W/$1/log" && return 0; sleep 0.1; done
  cat "$W/$1/log" >&2
  exit 1
}

start_server a ""
PID_A=${PIDS[0]}
start_server b "tls.ca_dir = $W/a/state/ca"
API_A=$(sed -n 's/.*API on https:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$W/a/log")
API_B=$(sed -n 's/.*API on https:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$W/b/log")
CH_A=$(sed -n 's/.*channel on wss:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$W/a/log")
CH_B=$(sed -n 's/.*channel on wss:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$W/b/log")

echo "preparing $N gateways (keys, activation, certificates)..." >&2
"$B/bench/channel_load" prepare --db "sqlite://$W/control.db" --ca-dir "$W/a/state/ca" --count "$N" --out "$W/ids.jsonl"
echo "holding $N channels on server a, pushing $RATE/s for ${SECS}s direct and forwarded, then killing a..." >&2
RESULT=$("$B/bench/channel_load" run --identities "$W/ids.jsonl" --ports "$CH_A,$CH_B" --ca "$W/a/state/ca/ca.crt" \
  --api-a "$API_A" --api-b "$API_B" --server-pid "$PID_A" --kill-pid "$PID_A" --rate "$RATE" --seconds "$SECS")
echo "$RESULT"
python3 - "$RESULT" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
def ok(c): return "met" if c else "NOT met"
print(f"channels held        : {r['connected']} of {r['channels']} (connected in {r['connect_seconds']:.1f} s)")
print(f"registrations done   : {r['settle_seconds']:.1f} s after the last handshake (the server's database backlog)")
print(f"RSS per channel      : {r['rss_per_channel_kib']:.1f} KiB (target < 64): {ok(r['rss_per_channel_kib'] < 64)}")
d, f = r['push_direct'], r['push_forwarded']
print(f"push direct          : p50 {d['p50_ms']:.2f} ms, p99 {d['p99_ms']:.2f} ms ({d['arrived']}/{d['sent']}) (target p99 < 20): {ok(0 <= d['p99_ms'] < 20)}")
print(f"push forwarded       : p50 {f['p50_ms']:.2f} ms, p99 {f['p99_ms']:.2f} ms ({f['arrived']}/{f['sent']}) (target p99 < 50): {ok(0 <= f['p99_ms'] < 50)}")
print(f"reconnected          : {r['reconnect_seconds']:.1f} s for {r['reconnected']} gateways (every channel up again)")
a = r['reconnect_registered_seconds']
if a < 0:
    print("reconnection absorbed: unknown (B has no ferry_control_channel_db_backlog gauge or did not answer): NOT met")
else:
    print(f"reconnection absorbed: {a:.1f} s (every one registered too) (target < 30): {ok(a < 30)}")
PY
