#!/usr/bin/env bash
# Starts a throwaway single-node Ceph on loopback for the S3 tests: one mon, one OSD on
# memstore (RAM, nothing on disk to clean up) and radosgw, with cephx off and no
# systemd. radosgw is a real S3 server: it checks SigV4 and returns real error codes.
#
# Usage: rgw-start.sh DIR
#   Wipes DIR, picks free loopback ports, starts the daemons with their state, logs and
#   pid files under DIR, creates the user TESTKEY / TESTSECRET (region us-east-1),
#   writes the endpoint URL to DIR/endpoint and prints it. Stop with rgw-stop.sh DIR.
#   RGW_MEMSTORE_BYTES: what the OSD holds, in RAM (default 4 GiB; the benches ask
#   for more).
#   RGW_ADDR: the address radosgw listens on (default 127.0.0.1). bench/lib.sh runs
#   this script inside a network namespace of its own and gives the address of the
#   namespace's end of a veth pair, for a store behind a link of a set speed.
#
# Runs as a CTest FIXTURES_SETUP test, so the daemons are detached (own session, stdio
# on files): CTest waits for every holder of a test's stdout, not just for this script.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=$(realpath -m "${1:?usage: rgw-start.sh DIR}")
READY_TIMEOUT_S=${RGW_READY_TIMEOUT_S:-90}
RGW_ADDR=${RGW_ADDR:-127.0.0.1}

# Exit 77 is "skipped" to CTest: a machine without Ceph cannot run the S3 tests, which
# is not a failure of the code under test.
for tool in ceph-authtool monmaptool ceph-mon ceph-osd ceph radosgw radosgw-admin python3 curl; do
  if ! command -v "$tool" >/dev/null; then
    echo "rgw-start: $tool not found (apt-get install radosgw ceph-mon ceph-osd ceph-common)" >&2
    exit 77
  fi
done

# A previous run may still be up in DIR (an aborted test run): stop it before wiping.
[ -d "$DIR/run" ] && bash "$HERE/rgw-stop.sh" "$DIR" >/dev/null
rm -rf "$DIR"
mkdir -p "$DIR"/{mon.a,osd.0,run,log,rgw}

# The daemon being started, whose logs explain a failure.
stage=setup
fail() {
  echo "rgw-start: $*" >&2
  for f in "$DIR/log/$stage.out" "$DIR/log/$stage.log" "$DIR/log/setup.out"; do
    [ -s "$f" ] || continue
    echo "---- last lines of $f" >&2
    tail -n 15 "$f" >&2
  done
  echo "rgw-start: all logs are in $DIR/log; stopping what was started" >&2
  bash "$HERE/rgw-stop.sh" "$DIR" >/dev/null
  exit 1
}
trap 'fail "command failed at line $LINENO: $BASH_COMMAND"' ERR

# Two ports the kernel says are free right now. Both sockets are held open together so
# the two numbers differ; another process could still take one before the daemons bind,
# which then shows up as a start failure with the log tail.
read -r MON_PORT RGW_PORT < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PY
)

FSID=$(cat /proc/sys/kernel/random/uuid)
CONF=$DIR/ceph.conf
# Notes on the settings that are not obvious:
# - auth none everywhere, but the mon still wants "crc secure" client modes, and
#   "insecure global id reclaim" or clients without cephx tickets are refused;
# - one OSD: pool size 1, chooseleaf type 0 (the OSD level), few PGs per pool, and
#   autoscaling off so the mon does not start splitting PGs while rgw creates pools;
# - memstore keeps objects in RAM; the device size is a cap, not an allocation.
cat >"$CONF" <<CONF
[global]
fsid = $FSID
mon host = v2:127.0.0.1:$MON_PORT
public addr = 127.0.0.1
cluster addr = 127.0.0.1
public network = 127.0.0.0/8
cluster network = 127.0.0.0/8
ms bind ipv4 = true
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
ms mon client mode = crc secure
ms client mode = crc secure
keyring = $DIR/keyring
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
pid file = $DIR/run/\$name.pid
log file = $DIR/log/\$name.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
osd crush update on start = true
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
mon data avail warn = 5

[mon.a]
mon data = $DIR/mon.a

[osd.0]
osd data = $DIR/osd.0
osd objectstore = memstore
memstore device bytes = ${RGW_MEMSTORE_BYTES:-4294967296}

[client.rgw.a]
rgw frontends = beast endpoint=$RGW_ADDR:$RGW_PORT
rgw data = $DIR/rgw
rgw dns name = $RGW_ADDR
CONF
CEPH=(-c "$CONF")

# Runs a daemon detached from our session and stdio. The Ceph daemons fork into the
# background themselves, so this returns once the daemon has forked (or failed early);
# the pid files they write in DIR/run are what rgw-stop.sh reads.
detach() {
  local name=$1
  shift
  setsid "$@" </dev/null >>"$DIR/log/$name.out" 2>&1
}

ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$DIR/keyring" --gen-key -n client.admin \
  --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
monmaptool --create --addv a "[v2:127.0.0.1:$MON_PORT]" --fsid "$FSID" "$DIR/monmap" >/dev/null

stage=mon.a
ceph-mon "${CEPH[@]}" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring" \
  >>"$DIR/log/setup.out" 2>&1
detach mon.a ceph-mon "${CEPH[@]}" -i a

stage=osd.0
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
OSD_ID=$(timeout 60 ceph "${CEPH[@]}" osd new "$OSD_UUID" 2>>"$DIR/log/setup.out")
ceph-osd "${CEPH[@]}" -i "$OSD_ID" --mkfs --osd-uuid "$OSD_UUID" >>"$DIR/log/setup.out" 2>&1
detach "osd.$OSD_ID" ceph-osd "${CEPH[@]}" -i "$OSD_ID"

stage=client.rgw.a
detach client.rgw.a radosgw "${CEPH[@]}" -n client.rgw.a

ENDPOINT=http://$RGW_ADDR:$RGW_PORT
# radosgw answers only after it has created its pools, which needs a working OSD, so
# an answer here means the whole stack is up.
deadline=$((SECONDS + READY_TIMEOUT_S))
until curl -s -o /dev/null --max-time 2 "$ENDPOINT/"; do
  if [ -f "$DIR/run/client.rgw.a.pid" ] && ! kill -0 "$(cat "$DIR/run/client.rgw.a.pid")" 2>/dev/null; then
    fail "radosgw exited during start-up"
  fi
  [ "$SECONDS" -lt "$deadline" ] || fail "radosgw did not answer at $ENDPOINT within ${READY_TIMEOUT_S}s"
  sleep 0.2
done

radosgw-admin "${CEPH[@]}" user create --uid=test --display-name=test \
  --access-key=TESTKEY --secret=TESTSECRET >>"$DIR/log/setup.out" 2>&1

echo "$ENDPOINT" >"$DIR/endpoint"
echo "$ENDPOINT"
