#!/usr/bin/env bash
# The demo: installs what is missing, builds Ferry, and serves one volume with
# `nbdkit ferry` on the embedded default (a file:// object store and a state directory
# under ./demo). Prints how to attach it; Ctrl-C stops it cleanly (dirty chunks are
# uploaded first).
#   FERRY_DEMO_DIR   where the store and state live (default ./demo)
#   FERRY_DEMO_PORT  NBD port (default 10809)
#   FERRY_DEMO_SIZE  size of the demo volume (default 10G)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DEMO=$(realpath -m "${FERRY_DEMO_DIR:-$ROOT/demo}")
PORT=${FERRY_DEMO_PORT:-10809}
SIZE=${FERRY_DEMO_SIZE:-10G}

bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target nbdkit-ferry-plugin

mkdir -p "$DEMO/store" "$DEMO/state"
PLUGIN="$ROOT/build/plugins/ferry/nbdkit-ferry-plugin.so"

cat <<INFO

Ferry demo
  object store : file://$DEMO/store
  gateway state: $DEMO/state (metadata DB, cache, admin socket)
  volume       : demo ($SIZE, 1 MiB chunks)
  NBD URI      : nbd://localhost:$PORT/demo

Attach it from another terminal:
  nbdinfo nbd://localhost:$PORT/demo                 # size and features
  nbdinfo --list nbd://localhost:$PORT               # every volume
  nbdcopy /some/disk.img nbd://localhost:$PORT/demo  # copy an image in
  qemu-img convert -p -O raw disk.qcow2 nbd://localhost:$PORT/demo
  nbd-client localhost $PORT /dev/nbd0 -N demo       # kernel block device, where nbd.ko exists
Gateway stats (admin socket):
  python3 -c 'import socket;s=socket.socket(socket.AF_UNIX);s.connect("$DEMO/state/admin.sock");s.sendall(b"{\"op\":\"stats\"}\n");print(s.makefile().readline())'
Chunks land in $DEMO/store/volumes/demo/chunks/ as they are uploaded.

Ctrl-C stops the gateway once its clients have disconnected (nbdkit waits for them);
it uploads what is dirty before it exits.

INFO

exec nbdkit -f -p "$PORT" "$PLUGIN" \
  state="$DEMO/state" store="file://$DEMO/store" create="demo:$SIZE" cache-size=2G
