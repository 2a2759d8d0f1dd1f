#!/usr/bin/env bash
# Stops what rgw-start.sh DIR started, by the daemons' pid files: radosgw first (it is a
# client of the others), then the OSD, then the mon. Each gets SIGTERM and 10 s to exit,
# then SIGKILL. Safe to call twice or on a DIR where nothing started.
#
# Usage: rgw-stop.sh DIR
set -uo pipefail

DIR=$(realpath -m "${1:?usage: rgw-stop.sh DIR}")
rm -f "$DIR/endpoint"

stopPid() {
  local name=$1 pidfile=$2 pid
  pid=$(cat "$pidfile" 2>/dev/null) || return 0
  # A pid file left behind by a daemon that already exited may name a reused pid: only
  # signal it if it is still a Ceph daemon.
  if [[ ! "$pid" =~ ^[0-9]+$ ]] || ! grep -qE 'ceph|radosgw' "/proc/$pid/cmdline" 2>/dev/null; then
    rm -f "$pidfile"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "rgw-stop: $name (pid $pid) ignored SIGTERM for 10 s, killing it" >&2
    kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$pidfile"
}

for name in client.rgw.a osd.0 mon.a; do
  stopPid "$name" "$DIR/run/$name.pid"
done
exit 0
