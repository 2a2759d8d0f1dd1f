#!/usr/bin/env bash
# Stops what pg-start.sh DIR started (pg_ctl stop -m fast) and removes DIR. Safe to call
# twice or on a DIR where nothing started.
set -uo pipefail
DIR=$(realpath -m "${1:?usage: pg-stop.sh DIR}")
rm -f "$DIR/url"
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -n "$BIN" ] && [ -f "$DIR/data/postmaster.pid" ]; then
  AS=()
  [ "$(id -u)" -eq 0 ] && AS=(runuser -u postgres --)
  "${AS[@]}" "$BIN/pg_ctl" -D "$DIR/data" -m fast -w -t 30 stop >/dev/null 2>&1
fi
rm -rf "$DIR"
exit 0
