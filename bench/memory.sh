#!/usr/bin/env bash
# What a gateway's memory grows with, from /proc/PID/status (RssAnon: its heap and
# stacks, not the libraries nor the page cache), one file:// store per gateway:
#   1. per chunk of a volume: an idle gateway with a 1 GiB volume against one with a
#      1 TiB volume (1 MiB chunks);
#   2. per stored chunk: a 64 GiB volume of 64 KiB chunks, WRITE_GB of it written
#      sequentially and checkpointed, the gateway restarted on its state, then a
#      recovery point taken (which pins every stored chunk object); nbdkit's file
#      plugin under the same writes is the baseline;
#   3. optionally all of it again with another build of the plugin (say, one from
#      before a change), in the same run.
#   bench/memory.sh [WRITE_GB=8] [OTHER_PLUGIN.so]
# Results go to docs/PERFORMANCE.md by hand, with the command line used.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WRITE_GB=${1:-8}
PLUGINS=("$ROOT/build/plugins/ferry/nbdkit-ferry-plugin.so")
[ $# -ge 2 ] && PLUGINS+=("$(realpath "$2")")
for p in "${PLUGINS[@]}"; do [ -f "$p" ] || { echo "no plugin at $p (build first)" >&2; exit 1; }; done
command -v fio >/dev/null || { echo "fio is missing: scripts/deps.sh" >&2; exit 1; }

W=$(mktemp -d "$ROOT/build/bench-XXXXXX")
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

anon_kb() { awk '/^RssAnon/ {print $2}' /proc/"$1"/status; }
hwm_kb() { awk '/^VmHWM/ {print $2}' /proc/"$1"/status; }  # peak RSS so far, libraries included
admin() {
  python3 -c 'import socket,sys
s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.argv[2].encode()+b"\n")
a=s.makefile().readline().strip()
if "\"ok\":true" not in a: sys.exit("admin: " + a)' "$W/admin.sock" "$1"
}
# start PLUGIN_OR_file ARGS... : nbdkit on $W/n.sock, its pid in PID; a new state dir
# and store unless KEEP=1
start() {
  rm -rf "$W/n.sock" "$W/admin.sock"
  [ "${KEEP:-0}" = 1 ] || rm -rf "$W/state" "$W/store"
  local plugin=$1
  shift
  if [ "$plugin" = file ]; then
    nbdkit -f -U "$W/n.sock" file "$@" 2>>"$W/nbdkit.log" &
  else
    nbdkit -f -U "$W/n.sock" "$plugin" state="$W/state" "store=file://$W/store?create" \
      admin-socket="$W/admin.sock" recovery-interval=0 "$@" 2>>"$W/nbdkit.log" &
  fi
  PID=$!
  for _ in $(seq 1 200); do [ -S "$W/n.sock" ] && { sleep 1; return 0; }; sleep 0.1; done
  echo "nbdkit did not start:" >&2
  tail -20 "$W/nbdkit.log" >&2
  exit 1
}
stop() { kill "$PID"; wait "$PID" || true; PID=; }
write() {  # EXPORT: WRITE_GB sequentially, 1 MiB at qd8
  fio --name=w --ioengine=nbd --uri="nbd+unix:///$1?socket=$W/n.sock" --rw=write --bs=1M \
    --iodepth=8 --size="${WRITE_GB}G" --output="$W/fio.out" >/dev/null
}
per() { python3 -c "import sys; print(round(($2 - $1) * 1024 / $3, 1))"; }  # KB KB COUNT -> bytes each

truncate -s 64G "$W/file.img"
start file "$W/file.img"
before=$(anon_kb $PID)
write ""
file_after=$(anon_kb $PID)
stop
rm -f "$W/file.img"
echo "nbdkit file, 64 GiB: ${before} KB idle, ${file_after} KB after writing ${WRITE_GB} GiB"

chunks=$((WRITE_GB * 1024 * 16))
for plugin in "${PLUGINS[@]}"; do
  echo "== $plugin"
  start "$plugin" create=vol:1G
  small=$(anon_kb $PID)
  stop
  start "$plugin" create=vol:1T
  large=$(anon_kb $PID)
  stop
  echo "idle: 1 GiB volume ${small} KB, 1 TiB volume ${large} KB: $(per "$small" "$large" $((1048576 - 1024))) bytes a chunk"

  ferry_args=(create=vol:64G:64K cache-size=2G upload-buffer=1G)
  start "$plugin" "${ferry_args[@]}"
  idle=$(anon_kb $PID)
  write vol
  admin '{"op":"checkpoint","name":"vol","timeout":600}'
  hwm_written=$(hwm_kb $PID)
  stop
  # Restarted on the same state: what the stored chunks cost, without what writing
  # and the checkpoint's answer left in malloc's free lists.
  KEEP=1 start "$plugin" "${ferry_args[@]}"
  written=$(anon_kb $PID)
  echo 5 > /proc/"$PID"/clear_refs  # the peak from here on: the recovery point's
  admin '{"op":"recovery-point","name":"vol"}'
  pinned=$(anon_kb $PID)
  hwm=$(hwm_kb $PID)
  stop
  echo "64 GiB of 64 KiB chunks: ${idle} KB idle, ${written} KB restarted with ${chunks} chunks stored" \
    "($(per "$idle" "$written" $chunks) bytes each), ${pinned} KB once a recovery point pins them" \
    "($(per "$written" "$pinned" $chunks) bytes each); peak RSS ${hwm_written} KB while writing," \
    "${hwm} KB while taking the recovery point;" \
    "against nbdkit file: $(python3 -c "print(round($pinned / $file_after, 1))")x"
done
