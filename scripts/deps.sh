#!/usr/bin/env bash
# Installs everything Ferry needs to build, test and run on Debian 12. Idempotent:
# packages already present are not fetched again.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake pkg-config clang clang-format clang-tidy libclang-rt-14-dev
  # libraries
  libsqlite3-dev libcurl4-openssl-dev libssl-dev libgtest-dev libgmock-dev nlohmann-json3-dev
  # the control server: Poco (application frame, HTTP, Data with SQLite and PostgreSQL)
  libpoco-dev libpq-dev
  # the channel endpoint: Boost.Asio and Beast (header-only)
  libboost-dev
  # nbdkit and libnbd: the server the plugin runs in and the clients the tests use
  nbdkit nbdkit-plugin-dev libnbd-bin libnbd-dev python3-libnbd
  # tools used by tests, demo and benchmarks
  fio sqlite3 curl procps psmisc util-linux qemu-utils
  # the peer the benchmarks compare with
  s3backer
  # a real S3 server for the tests: single-node Ceph with radosgw
  radosgw ceph-mon ceph-osd ceph-common
  # a real PostgreSQL for the control server's tests (started by tests/pg/pg-start.sh)
  postgresql
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
