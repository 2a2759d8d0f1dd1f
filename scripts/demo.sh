#!/usr/bin/env bash
# The demo: the whole system on one machine, on the embedded defaults (SQLite, a
# file:// object store). It installs what is missing, builds Ferry, then
#   1. starts ferry-control (the provider: REST API, channel endpoint, provider CA);
#   2. starts ferry-agent (the gateway: key pair, local page, and nbdkit ferry later);
#   3. makes a demo account and logs in with ferryctl;
#   4. reads the activation key from the agent's local page, as a customer would, and
#      activates the gateway with it;
#   5. creates a volume with ferryctl, which the provider sends down the gateway's
#      channel and the gateway's engine serves over NBD at once;
# and prints how to attach it. Ctrl-C stops everything cleanly (the engine uploads what
# is dirty first). Run it again and it picks up where it was (same account, gateway and
# volume).
#   FERRY_DEMO_DIR   where everything lives (default ./demo)
#   FERRY_DEMO_SIZE  size of the demo volume (default 10G)
#   FERRY_DEMO_API_PORT, FERRY_DEMO_PAGE_PORT, FERRY_DEMO_NBD_PORT  (8443, 8081, 10809)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DEMO=$(realpath -m "${FERRY_DEMO_DIR:-$ROOT/demo}")
SIZE=${FERRY_DEMO_SIZE:-10G}
API_PORT=${FERRY_DEMO_API_PORT:-8443}
PAGE_PORT=${FERRY_DEMO_PAGE_PORT:-8081}
NBD_PORT=${FERRY_DEMO_NBD_PORT:-10809}
EMAIL=demo@example.com
PASSWORD=ferry-demo-password

if [[ "${FERRY_DEMO_SKIP_BUILD:-}" != 1 ]]; then
  bash scripts/deps.sh
  cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build -j"$(nproc)" --target nbdkit-ferry-plugin ferry-control ferryctl ferry-agent
fi
BIN=$ROOT/build
mkdir -p "$DEMO/control" "$DEMO/agent" "$DEMO/store" "$DEMO/ferryctl"
export FERRY_CONFIG_DIR=$DEMO/ferryctl

cat >"$DEMO/control/control.properties" <<CONF
database = sqlite://$DEMO/control/control.db
state.dir = $DEMO/control/state
api.host = 127.0.0.1
api.port = $API_PORT
channel.port = $((API_PORT + 2))
internal.port = $((API_PORT + 1))
gateway.store = file://$DEMO/store/{gateway}
CONF
cat >"$DEMO/agent/agent.properties" <<CONF
state.dir = $DEMO/agent/state
provider.endpoint = https://localhost:$API_PORT
provider.ca = $DEMO/control/state/ca/ca.crt
page.host = 127.0.0.1
page.port = $PAGE_PORT
nbd.host = 127.0.0.1
nbd.port = $NBD_PORT
engine.plugin = $BIN/plugins/ferry/nbdkit-ferry-plugin.so
engine.args = cache-size=2G
activation.poll_seconds = 1
CONF

PIDS=()
stop_all() {
  trap - INT TERM EXIT
  echo
  echo "stopping: the agent stops its volume engine (dirty chunks are uploaded first), then the provider"
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[i]}" 2>/dev/null || true
    wait "${PIDS[i]}" 2>/dev/null || true
  done
}
trap stop_all INT TERM EXIT

# Waits until the file $1 has a line matching $2 (at most $3 seconds).
wait_for_line() {
  for _ in $(seq 1 $((${3:-30} * 10))); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "demo: gave up waiting for '$2' in $1:" >&2
  tail -20 "$1" >&2
  return 1
}

: >"$DEMO/control/control.log"
"$BIN/server/ferry-control" --config="$DEMO/control/control.properties" >>"$DEMO/control/control.log" 2>&1 &
PIDS+=($!)
wait_for_line "$DEMO/control/control.log" "API on https://"
: >"$DEMO/agent/agent.log"
"$BIN/appliance/ferry-agent" --config="$DEMO/agent/agent.properties" >>"$DEMO/agent/agent.log" 2>&1 &
PIDS+=($!)
wait_for_line "$DEMO/agent/agent.log" "local page on"

CTL=("$BIN/server/ferryctl" --endpoint "https://localhost:$API_PORT" --ca "$DEMO/control/state/ca/ca.crt")
echo "$PASSWORD" | "${CTL[@]}" signup "$EMAIL" --password-stdin >/dev/null 2>&1 || true  # made before: fine
echo "$PASSWORD" | "${CTL[@]}" login "$EMAIL" --password-stdin

page() { python3 -c "import json,urllib.request;print(json.load(urllib.request.urlopen('http://127.0.0.1:$PAGE_PORT/status.json'))$1)"; }
# Activation, as a customer does it: the key from the gateway's page, typed in.
wait_stage() {  # until the page's stage is one of $1 (a regex), at most $2 seconds
  for _ in $(seq 1 $(($2 * 5))); do
    [[ "$(page "['stage']")" =~ ^($1)$ ]] && return 0
    sleep 0.2
  done
  echo "demo: the gateway's page never reached '$1' (see $DEMO/agent/agent.log)" >&2
  return 1
}
wait_stage "waiting_for_customer|activated" 60
if [[ "$(page "['stage']")" != activated ]]; then
  key=$(page "['activation_key']")
  echo "activation key on the gateway's page (http://127.0.0.1:$PAGE_PORT/): $key"
  "${CTL[@]}" gateway activate "$key" --name demo-gateway
  wait_stage activated 60
fi
GW=$(page "['gateway']['id']")
for _ in $(seq 1 100); do
  [[ "$(page ".get('channel',{}).get('connected')")" == True ]] && break
  sleep 0.1
done

if ! "${CTL[@]}" volume show "$GW" demo >/dev/null 2>&1; then
  "${CTL[@]}" volume create "$GW" demo --size "$SIZE" --wait
fi

cat <<INFO

Ferry demo — the whole system on this machine
  provider API : https://localhost:$API_PORT (CA: $DEMO/control/state/ca/ca.crt)
  demo login   : $EMAIL / $PASSWORD   (ferryctl is logged in: FERRY_CONFIG_DIR=$DEMO/ferryctl)
  web console  : https://localhost:$API_PORT/console/ (log in as the demo account; the
                 browser warns about the demo's own CA: accept it, or import the CA above)
  gateway      : $GW, page http://127.0.0.1:$PAGE_PORT/
  object store : file://$DEMO/store/$GW
  volume       : demo ($SIZE)
  NBD URI      : nbd://127.0.0.1:$NBD_PORT/demo

Attach it from another terminal:
  nbdinfo nbd://127.0.0.1:$NBD_PORT/demo                 # size and features
  nbdcopy /some/disk.img nbd://127.0.0.1:$NBD_PORT/demo  # copy an image in
  qemu-img convert -p -O raw disk.qcow2 nbd://127.0.0.1:$NBD_PORT/demo
  nbd-client 127.0.0.1 $NBD_PORT /dev/nbd0 -N demo       # kernel block device, where nbd.ko exists
Manage it:
  export FERRY_CONFIG_DIR=$DEMO/ferryctl
  $BIN/server/ferryctl volume create $GW more --size 1G --wait
  $BIN/server/ferryctl snapshot create $GW demo --wait
  $BIN/server/ferryctl request list $GW
Logs: $DEMO/control/control.log, $DEMO/agent/agent.log, $DEMO/agent/state/engine.log

Ctrl-C stops everything.
INFO
wait "${PIDS[@]}"
