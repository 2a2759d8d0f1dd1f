#!/usr/bin/env bash
# What an idle gateway costs: voluntary context switches of every thread of an idle
# `nbdkit ferry` (one volume on a file:// store, nothing connected) over SECONDS.
# Optionally also for a second plugin build (say, one from before a change), in the
# same run:
#   bench/idle.sh [SECONDS=10] [OTHER_PLUGIN.so]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_IDLE=${1:-10}
PLUGINS=(build/plugins/ferry/nbdkit-ferry-plugin.so)
[ $# -ge 2 ] && PLUGINS+=("$2")
switches() {  # PID: voluntary context switches of all its threads so far
  cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches/ {s += $2} END {print s}'
}
for plugin in "${PLUGINS[@]}"; do
  [ -f "$plugin" ] || { echo "no plugin at $plugin (build first)" >&2; exit 1; }
  dir=$(mktemp -d)
  nbdkit -f -U "$dir/sock" "$plugin" state="$dir/state" "store=file://$dir/store?create" create=vol:64M &
  pid=$!
  sleep 3  # started and settled
  before=$(switches $pid)
  sleep "$SECONDS_IDLE"
  after=$(switches $pid)
  kill $pid
  wait $pid || true
  rm -rf "$dir"
  echo "$plugin: $((after - before)) voluntary context switches in $SECONDS_IDLE s idle"
done
