#!/usr/bin/env bash
# Installs everything Ferry needs to build, test and run on Debian 12. Idempotent:
# packages already present are not fetched again.
set -euo pipefail

PACKAGES=(
  # toolchain (ccache: CMakeLists.txt compiles through it)
  build-essential ccache cmake pkg-config clang clang-format clang-tidy libclang-rt-14-dev
  # libraries
  libsqlite3-dev libcurl4-openssl-dev libssl-dev libgtest-dev libgmock-dev nlohmann-json3-dev
  # the control server: Poco (application frame, HTTP, Data with SQLite and PostgreSQL)
  libpoco-dev libpq-dev
  # the channel endpoint: Boost.Asio and Beast (header-only)
  libboost-dev
  # nbdkit and libnbd: the server the plugin runs in and the clients the tests use
  nbdkit nbdkit-plugin-dev libnbd-bin libnbd-dev python3-libnbd
  # the load balancer: libbpf (its BPF programs are built with clang -target bpf),
  # nftables (the fallback data plane), iproute2 and ethtool (network-namespace tests)
  libbpf-dev nftables iproute2 ethtool
  # iSCSI: the userspace target tgtd, FUSE for nbdfuse (which shows an NBD export as
  # the file tgtd serves), and the initiators the tests use (libiscsi's tools with
  # iscsi-test-cu, qemu-io/qemu-img with qemu's iSCSI driver)
  tgt fuse3 libiscsi-bin qemu-block-extra
  # the appliance's console menu: libcrypt (yescrypt password hash); its test drives
  # it through tmux
  libcrypt-dev tmux
  # the appliance image and its boot test (image/, the slow image_boot_test)
  debootstrap syslinux syslinux-common mtools dosfstools fdisk qemu-system-x86 jq
  # tools used by tests, demo and benchmarks
  fio sqlite3 curl procps psmisc util-linux qemu-utils
  # the peer the benchmarks compare with
  s3backer
  # a real S3 server for the tests: single-node Ceph with radosgw
  radosgw ceph-mon ceph-osd ceph-common
  # a real PostgreSQL for the control server's tests (started by tests/pg/pg-start.sh)
  postgresql
  # the web console's browser tests: Debian's Chromium, driven by playwright-core
  # (from npm, below) on Node.js (the machine's own, 20 or newer)
  chromium nodejs
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PACKAGES[@]} packages present"
else
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# npm packages of the console tests, exactly as the lock file says.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONSOLE_TESTS="$ROOT/tests/console"
if [ ! -d "$CONSOLE_TESTS/node_modules/playwright-core" ] ||
   [ "$CONSOLE_TESTS/package-lock.json" -nt "$CONSOLE_TESTS/node_modules/.package-lock.json" ]; then
  echo "deps: npm ci in tests/console"
  (cd "$CONSOLE_TESTS" && npm ci --no-audit --no-fund --loglevel=error)
fi
