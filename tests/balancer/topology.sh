#!/usr/bin/env bash
# The balancer's test and benchmark network, in namespaces this script makes (every
# address lives inside them):
#
#   P-cli (10.1.0.2) -- P-rtr (10.1.0.1 | 10.2.0.1) --+-- P-lb1 (10.2.0.11)
#                       ECMP route to the VIP via     +-- P-lb2 (10.2.0.12)
#                       lb1 and lb2, L4 hash          +-- P-h1..h3 (10.2.0.21-23)
#                                                     +-- P-db (10.2.0.50)
#   (the 10.2.0.0/24 side is one bridge, br0, in P-lan)
#
# VIP 198.51.100.10. Backends answer the client straight through the router (direct
# server return); only client->VIP packets cross a balancer node.
#   topology.sh up P [PASS_OBJ]   make it (PASS_OBJ: lb_pass.bpf.o, loaded on the bridge
#                                 side of lb1/lb2 so native XDP_TX is delivered)
#   topology.sh down P            kill what runs inside and remove it
#   topology.sh ecmp P lb1|lb2|both   which balancer nodes the router sends the VIP to
set -euo pipefail

cmd=${1:?usage: topology.sh up|down|ecmp P ...}
P=${2:?prefix}
NODES=(cli rtr lan lb1 lb2 h1 h2 h3 db)
VIP=198.51.100.10

ns() { ip netns exec "$P-$1" "${@:2}"; }

down() {
  for n in "${NODES[@]}"; do
    if ip netns list | grep -qw "$P-$n"; then
      pids=$(ip netns pids "$P-$n" 2>/dev/null || true)
      [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
      ip netns del "$P-$n" 2>/dev/null || true
    fi
  done
}

ecmp() {
  case "$1" in
    lb1) ns rtr ip route replace $VIP/32 via 10.2.0.11 ;;
    lb2) ns rtr ip route replace $VIP/32 via 10.2.0.12 ;;
    both) ns rtr ip route replace $VIP/32 nexthop via 10.2.0.11 nexthop via 10.2.0.12 ;;
    *) echo "ecmp: lb1, lb2 or both" >&2; exit 2 ;;
  esac
}

# A veth from namespace $1 (interface $2, address $3) to the bridge in P-lan.
lan_port() {
  local n=$1 ifname=$2 addr=$3
  ip link add "$ifname" netns "$P-$n" type veth peer name "p-$n" netns "$P-lan"
  ns "$n" ip addr add "$addr/24" dev "$ifname"
  ns "$n" ip link set "$ifname" up
  ns lan ip link set "p-$n" master br0 up
}

up() {
  local pass_obj=${1:-}
  down
  for n in "${NODES[@]}"; do
    ip netns add "$P-$n"
    ns "$n" ip link set lo up
    ns "$n" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  done
  ns lan ip link add br0 type bridge
  ns lan ip link set br0 up

  ip link add c0 netns "$P-cli" type veth peer name r0 netns "$P-rtr"
  ns cli ip addr add 10.1.0.2/24 dev c0
  ns cli ip link set c0 up
  ns cli ip route add default via 10.1.0.1
  # The client's stack computes its checksums itself: native XDP on a veth sees bytes,
  # not the skb's promise to finish a partial checksum later.
  ns cli ethtool -K c0 tx off >/dev/null
  ns rtr ip addr add 10.1.0.1/24 dev r0
  ns rtr ip link set r0 up

  lan_port rtr r1 10.2.0.1
  ns rtr sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1
  for i in 1 2; do
    lan_port "lb$i" eth0 "10.2.0.1$i"
    ns "lb$i" ip route add default via 10.2.0.1
    ns "lb$i" sysctl -qw net.ipv4.ip_forward=1
    if [ -n "$pass_obj" ]; then
      ns lan ip link set dev "p-lb$i" xdpdrv obj "$pass_obj" sec xdp
    fi
  done
  for i in 1 2 3; do
    lan_port "h$i" eth0 "10.2.0.2$i"
    ns "h$i" ip route add default via 10.2.0.1
  done
  lan_port db eth0 10.2.0.50
  ecmp both
}

case "$cmd" in
  up) up "${3:-}" ;;
  down) down ;;
  ecmp) ecmp "${3:?lb1|lb2|both}" ;;
  *) echo "usage: topology.sh up|down|ecmp P ..." >&2; exit 2 ;;
esac
