#!/usr/bin/env bash
# Packets per second through one balancer node, for small UDP packets of many flows
# (issue 5): the XDP data plane, the nftables data plane and plain kernel forwarding,
# over the same namespaces in one run, interleaved, ROUNDS times each. Then the flows
# a backend change disturbs (balancer_disruption). Needs root; results go to stdout
# (docs/PERFORMANCE.md has the last run).
#
# The generator runs on CPU 0; the node's receive work (threaded NAPI on its veth, in
# every mode) is pinned to CPU 1, so what is measured is what one core of the node
# forwards, not what the generator's core has left after forwarding too.
#
#   gen (10.1.0.2) --veth-- lb (10.1.0.1 | 10.3.0.1) --veth-- sink (10.3.0.21-23, XDP drop)
#
#   bash bench/balancer_pps.sh [SECONDS=5] [ROUNDS=3] [FLOWS=4096]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B="$ROOT/build"
SECONDS_PER=${1:-5}
ROUNDS=${2:-3}
FLOWS=${3:-4096}
P=fbp
BAL="$B/balancer/ferry-balancer"
FLOOD="$B/bench/udp_flood"
[ -x "$BAL" ] && [ -x "$FLOOD" ] || { echo "build first: cmake --build build" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "balancer_pps: needs root" >&2; exit 1; }
W=$(mktemp -d /tmp/ferry-pps-XXXXXX)
chmod 755 "$W"

ns() { ip netns exec "$P-$1" "${@:2}"; }
cleanup() {
  for n in gen lb sink; do
    pids=$(ip netns pids "$P-$n" 2>/dev/null || true)
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
    ip netns del "$P-$n" 2>/dev/null || true
  done
  rm -rf "$W"
}
trap cleanup EXIT
cleanup
mkdir -p "$W"; chmod 755 "$W"

clang -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu -c "$ROOT/bench/xdp_sink.bpf.c" -o "$W/sink.o"
for n in gen lb sink; do ip netns add "$P-$n"; ns $n ip link set lo up; done
ip link add g0 netns $P-gen type veth peer name l0 netns $P-lb
ip link add l1 netns $P-lb type veth peer name s0 netns $P-sink
ns gen ip addr add 10.1.0.2/24 dev g0; ns gen ip link set g0 up
ns lb ip addr add 10.1.0.1/24 dev l0; ns lb ip addr add 10.3.0.1/24 dev l1
ns lb ip link set l0 up; ns lb ip link set l1 up
ns lb sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
ns sink ip addr add 10.3.0.21/24 dev s0
ns sink ip addr add 10.3.0.22/24 dev s0
ns sink ip addr add 10.3.0.23/24 dev s0
ns sink ip link set s0 up
ns sink ip route add default via 10.3.0.1
ns gen ip route add default via 10.1.0.1
# NAPI on the node's receiving veth in every mode (GRO on), in a kernel thread of its
# own that pin_napi puts on CPU 1.
ns lb ethtool -K l0 gro on >/dev/null
ns lb sh -c 'echo 1 > /sys/class/net/l0/threaded'
pin_napi() {
  local t
  for t in $(ps -eLo tid,comm | awk '$2 ~ /^napi\/l0-/ {print $1}'); do taskset -pc 1 "$t" >/dev/null; done
}
SINK_MAC=$(ns sink cat /sys/class/net/s0/address)
for i in 21 22 23; do ns lb ip neigh replace 10.3.0.$i lladdr "$SINK_MAC" dev l1 nud permanent; done
# The sink answers the node's health checks on :8080 and drops UDP at XDP (which also
# lets native XDP redirects from the node into s0 be delivered).
(cd "$W" && ns sink python3 -m http.server 8080 --bind 0.0.0.0 >"$W/http.log" 2>&1 &)
ns sink ip link set dev s0 xdpdrv obj "$W/sink.o" sec xdp
LB_MAC=$(ns lb cat /sys/class/net/l0/address)
cat >"$W/lb.json" <<EOF
{"seed": 3,
 "services": [{"name": "dns", "vip": "198.51.100.10", "port": 53, "protocol": "udp", "host_port": 18053}],
 "backends": [{"name": "s1", "address": "10.3.0.21"}, {"name": "s2", "address": "10.3.0.22"},
              {"name": "s3", "address": "10.3.0.23"}],
 "health": {"scheme": "http", "path": "/", "port": 8080, "interval_ms": 1000, "timeout_ms": 1000}}
EOF

rx_sink() { ns sink cat /sys/class/net/s0/statistics/rx_packets; }

# run MODE -> delivered pps
run() {
  local mode=$1 dst=198.51.100.10 port=53 pid=
  case $mode in
    plain) dst=10.3.0.21; port=18053 ;;
    xdp|nft)
      ip netns exec "$P-lb" "$BAL" node --config "$W/lb.json" --interface l0 --dataplane $mode \
        >"$W/node-$mode.log" 2>&1 &
      pid=$!
      for _ in $(seq 1 100); do grep -q "ferry-balancer node:" "$W/node-$mode.log" && break; sleep 0.1; done
      grep -q "ferry-balancer node:" "$W/node-$mode.log" || { cat "$W/node-$mode.log" >&2; exit 1; } ;;
  esac
  pin_napi
  local before after out
  before=$(rx_sink)
  out=$(ns gen taskset -c 0 "$FLOOD" --interface g0 --dst-mac "$LB_MAC" --src 10.1.0.2 --dst $dst --dport $port \
        --flows "$FLOWS" --seconds "$SECONDS_PER")
  sleep 0.2
  after=$(rx_sink)
  if [ -n "$pid" ]; then kill $pid; wait $pid 2>/dev/null || true; fi
  local secs sent
  secs=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["seconds"])' "$out")
  sent=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["sent"])' "$out")
  python3 -c 'import sys; d,s,t=map(float,sys.argv[1:]); print("%.0f %.0f" % (d/t, s/t))' $((after - before)) "$sent" "$secs"
}

declare -A results
for r in $(seq 1 "$ROUNDS"); do
  for mode in plain nft xdp; do
    res=$(run $mode)
    results[$mode]="${results[$mode]:-} ${res%% *}"
    echo "round $r $mode: delivered ${res%% *} pps (generator sent ${res##* } pps)"
  done
done

python3 - "${results[plain]}" "${results[nft]}" "${results[xdp]}" <<'PYEOF'
import statistics, sys
plain, nft, xdp = ([float(x) for x in a.split()] for a in sys.argv[1:])
m = {k: statistics.median(v) for k, v in (("plain", plain), ("nft", nft), ("xdp", xdp))}
print("median delivered pps: plain %.0f, nft %.0f, xdp %.0f" % (m["plain"], m["nft"], m["xdp"]))
print("xdp / nft = %.2f (target >= 3), xdp / plain = %.2f (target >= 1)" % (m["xdp"] / m["nft"], m["xdp"] / m["plain"]))
PYEOF

echo "== flows disturbed by a backend change (XDP, BPF_PROG_RUN)"
"$B/bench/balancer_disruption" --flows 20000 --backends 3,5,10,20
