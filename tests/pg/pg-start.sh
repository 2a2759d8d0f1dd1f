#!/usr/bin/env bash
# Starts a throwaway PostgreSQL 15 for the control-server tests: initdb in DIR (trust
# auth, loopback only, a free port), pg_ctl start, a database "ferry". Writes the
# connection URL to DIR/url and prints it. Stop with pg-stop.sh DIR.
#
# FERRY_PG_LISTEN=ADDR also listens on ADDR and trusts 10.0.0.0/8 (the balancer's
# network-namespace test runs it inside a namespace for a farm of servers).
#
# PostgreSQL refuses to run as root: as root, the server runs as the "postgres" user
# the Debian package creates. Exit 77 (skipped) when PostgreSQL is not installed.
set -euo pipefail

DIR=$(realpath -m "${1:?usage: pg-start.sh DIR}")
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$BIN" ] || [ ! -x "$BIN/initdb" ]; then
  echo "pg-start: PostgreSQL server not found (apt-get install postgresql)" >&2
  exit 77
fi

[ -f "$DIR/data/postmaster.pid" ] && bash "$(dirname "$0")/pg-stop.sh" "$DIR" >/dev/null
rm -rf "$DIR"
mkdir -p "$DIR"
AS=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$DIR"
  AS=(runuser -u postgres --)
fi

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${AS[@]}" "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust -E UTF8 --no-sync >"$DIR/initdb.log" 2>&1 || {
  cat "$DIR/initdb.log" >&2
  exit 1
}
LISTEN=127.0.0.1
if [ -n "${FERRY_PG_LISTEN:-}" ]; then
  LISTEN="127.0.0.1,$FERRY_PG_LISTEN"
  echo "host all all 10.0.0.0/8 trust" >>"$DIR/data/pg_hba.conf"
fi
# Detached (setsid, stdio on files): CTest waits for every holder of a test's stdout.
setsid "${AS[@]}" "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
  -o "-c listen_addresses=$LISTEN -p $PORT -k $DIR -c fsync=off -c max_connections=200" start \
  </dev/null >"$DIR/pg_ctl.log" 2>&1 || {
  cat "$DIR/pg_ctl.log" "$DIR/server.log" >&2
  exit 1
}
"$BIN/psql" -q -h 127.0.0.1 -p "$PORT" -U postgres -c "CREATE DATABASE ferry" postgres
URL="postgresql:host=127.0.0.1 port=$PORT user=postgres dbname=ferry"
echo "$URL" >"$DIR/url"
echo "$URL"
