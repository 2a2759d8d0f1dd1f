#!/usr/bin/env bash
# SLOW (minutes; not part of the normal CI): boots a copy of the Ferry appliance image
# under qemu and drives it end to end through a real ferry-control on this host.
#
#   image/boot_test.sh IMAGE.qcow2
#
# What it does:
#   1. starts ferry-control on loopback with free ports; its certificate names
#      10.0.2.2 (the host as the guest sees it in qemu's user networking, where
#      10.0.2.2 reaches the host's 127.0.0.1), gateway.control_endpoint
#      wss://10.0.2.2:PORT/v1/channel and gateway.store file:///var/lib/ferry/store/…
#      (a directory inside the guest);
#   2. boots a copy-on-write overlay of IMAGE (the image is never written) with a
#      second, blank 1 GiB disk (the cache disk), user networking with the gateway's
#      page, NBD and iSCSI ports forwarded to free loopback ports, and the provider
#      settings and CA given through qemu fw_cfg (opt/io.ferry/…), which the first-boot
#      script copies into /etc/ferry/;
#   3. waits for the agent's page (status.json: stage waiting_for_customer and an
#      activation key), signs up a customer, activates the gateway with that key
#      through the REST API, waits for the channel, creates a volume and waits for its
#      request to be done;
#   4. over NBD (python3-libnbd) writes and reads back the volume; over iSCSI checks
#      iscsi-inq and iscsi-readcapacity16, reads with qemu-io what NBD wrote and writes
#      what NBD then reads back;
#   5. presses the power button (QMP system_powerdown), waits for the guest to power
#      off, checks that no unit failed on the way up or down (the serial console), and
#      checks the second disk: ext4 "ferry-cache" with the agent's state and the
#      written chunks uploaded to the (file) store on it;
#   6. boots again on the same disks: still activated, the channel up again, the
#      volume's data intact over NBD; powers off again, again without a failed unit.
# It stops qemu and ferry-control whatever happens, prints the tails of the serial
# console and the server's log on failure, and exits 0 only if every step passed.
#
# Environment:
#   FERRY_BUILD_DIR            where ferry-control is (default /work/main/build, or the
#                              repository's build/): BUILD/server/ferry-control
#   FERRY_BOOT_TEST_TIMEOUT    seconds for the whole test (default 900)
#   FERRY_BOOT_TEST_ACCEL      auto (default: KVM when /dev/kvm is usable and the CPU
#                              shows vmx/svm, else TCG; KVM failing at start falls back
#                              to TCG), kvm, tcg
#   FERRY_BOOT_TEST_KEEP=1     keep the work folder (logs, overlay) after a pass too
#
# Host packages: qemu-system-x86 qemu-utils (qemu-img, qemu-io with its iSCSI
# driver, qemu-block-extra) libiscsi-bin python3-libnbd curl jq e2fsprogs util-linux.
set -euo pipefail

readonly VOLUME=disk0
readonly VOLUME_SIZE_MIB=64
readonly IQN_PREFIX=iqn.2026-11.io.ferry
readonly EMAIL=boot-test@example.com
readonly PASSWORD=ferry-boot-test-password
readonly PY=/usr/bin/python3   # Debian's, with python3-libnbd (not a pyenv one)

T0=$(date +%s)
log() { printf '[%4ds] %s\n' $(($(date +%s) - T0)) "$*" >&2; }
die() { printf '[%4ds] boot_test.sh: FAIL: %s\n' $(($(date +%s) - T0)) "$*" >&2; exit 1; }

usage() {
  sed -n '4,5p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# --- checks -------------------------------------------------------------------
check_host() {
  local t missing=()
  for t in qemu-system-x86_64:qemu-system-x86 qemu-img:qemu-utils qemu-io:qemu-utils \
    iscsi-inq:libiscsi-bin iscsi-readcapacity16:libiscsi-bin curl:curl jq:jq \
    debugfs:e2fsprogs blkid:util-linux; do
    command -v "${t%%:*}" >/dev/null 2>&1 || missing+=("${t%%:*} (package ${t#*:})")
  done
  "$PY" -c 'import nbd' 2>/dev/null || missing+=("python3 module nbd (package python3-libnbd)")
  ((${#missing[@]} == 0)) || die "missing on this host: ${missing[*]}"
  [[ -x "$CONTROL_BIN" ]] || die "no ferry-control at $CONTROL_BIN (set FERRY_BUILD_DIR)"
}

# Seconds left of the whole test's time.
remaining() { echo $((DEADLINE - $(date +%s))); }

# N free TCP ports on 127.0.0.1.
free_ports() {
  "$PY" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# --- processes and cleanup ------------------------------------------------------
QEMU_PID=""
CONTROL_PID=""
PASSED=0
stop_pid() {  # pid, name: SIGTERM, then SIGKILL after 20 s
  local pid=$1 i
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 200; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
on_exit() {
  local rc=$?
  trap - EXIT
  stop_pid "$QEMU_PID"
  stop_pid "$CONTROL_PID"
  if ((PASSED)); then
    if [[ "${FERRY_BOOT_TEST_KEEP:-}" == 1 ]]; then log "kept $DIR"; else rm -rf "$DIR"; fi
  else
    if [[ -n "${DIR:-}" && -d "$DIR" ]]; then
      if [[ -f "${SERIAL:-}" ]]; then
        printf '\n--- the end of the serial console (%s) ---\n' "$SERIAL" >&2
        tail -n 60 "$SERIAL" | tr -d '\r' >&2
      fi
      if [[ -s "$DIR/qemu.err" ]]; then
        printf '\n--- qemu ---\n' >&2
        tail -n 20 "$DIR/qemu.err" >&2
      fi
      if [[ -f "$DIR/control/control.log" ]]; then
        printf '\n--- the end of ferry-control'\''s log ---\n' >&2
        tail -n 30 "$DIR/control/control.log" >&2
      fi
      printf '\nboot_test.sh: FAILED after %ds; everything is in %s\n' $(($(date +%s) - T0)) "$DIR" >&2
    fi
    ((rc != 0)) || rc=1
  fi
  exit "$rc"
}

# --- the provider -----------------------------------------------------------------
start_control() {
  mkdir -p "$DIR/control"
  cat >"$DIR/control/control.properties" <<EOF
database = sqlite://$DIR/control/control.db
state.dir = $DIR/control/state
api.host = 127.0.0.1
api.port = $API_PORT
channel.port = $CHANNEL_PORT
internal.port = $INTERNAL_PORT
internal.url = https://127.0.0.1:$INTERNAL_PORT
tls.names = 10.0.2.2,127.0.0.1,localhost
gateway.control_endpoint = wss://10.0.2.2:$CHANNEL_PORT/v1/channel
gateway.store = file:///var/lib/ferry/store/{gateway}
EOF
  : >"$DIR/control/control.log"
  "$CONTROL_BIN" --config="$DIR/control/control.properties" >"$DIR/control/control.log" 2>&1 &
  CONTROL_PID=$!
  local i
  for ((i = 0; i < 300; i++)); do
    grep -q "API on https://" "$DIR/control/control.log" && break
    kill -0 "$CONTROL_PID" 2>/dev/null || die "ferry-control exited at start"
    sleep 0.1
  done
  grep -q "API on https://" "$DIR/control/control.log" || die "ferry-control did not start listening in 30 s"
  CA=$(sed -n 's/.*provider CA \([^ ,]*\).*/\1/p' "$DIR/control/control.log" | head -n 1)
  [[ -n "$CA" ]] || CA=$DIR/control/state/ca/ca.crt
  [[ -s "$CA" ]] || die "no provider CA at $CA"
  log "ferry-control: API https://127.0.0.1:$API_PORT, channel $CHANNEL_PORT, CA $CA"
}

# api METHOD PATH [JSON]: the answer in $API_STATUS and $API_BODY.
API_STATUS=""
API_BODY=""
TOKEN=""
api() {
  local args=(-sS --max-time 30 --cacert "$CA" -o "$DIR/api.body" -w '%{http_code}' -X "$1"
    "https://127.0.0.1:$API_PORT$2")
  if [[ -n "$TOKEN" ]]; then args+=(-H "Authorization: Bearer $TOKEN"); fi
  if (($# >= 3)); then args+=(-H 'Content-Type: application/json' --data "$3"); fi
  API_STATUS=$(curl "${args[@]}") || die "$1 $2: curl failed"
  API_BODY=$(cat "$DIR/api.body")
}

# --- the guest --------------------------------------------------------------------
pick_accel() {
  case "${FERRY_BOOT_TEST_ACCEL:-auto}" in
    kvm | tcg) ACCEL=${FERRY_BOOT_TEST_ACCEL} ;;
    auto)
      # /dev/kvm can exist where KVM does not work (nested, no vmx/svm for this VM).
      if [[ -r /dev/kvm && -w /dev/kvm ]] && grep -qE '\b(vmx|svm)\b' /proc/cpuinfo; then
        ACCEL=kvm
      else
        ACCEL=tcg
      fi
      ;;
    *) die "FERRY_BOOT_TEST_ACCEL must be auto, kvm or tcg" ;;
  esac
}

# start_guest [again]: new disks (the root an overlay of IMAGE, a blank cache disk),
# or with "again" the same disks as the last boot.
start_guest() {
  SERIAL=$DIR/serial.log
  GUEST_MODE=${1:-}
  if [[ "$GUEST_MODE" == again ]]; then
    SERIAL=$DIR/serial-2.log
  else
    rm -f "$DIR/root.qcow2" "$DIR/cache.qcow2"
    qemu-img create -q -f qcow2 -b "$IMAGE" -F qcow2 "$DIR/root.qcow2"
    qemu-img create -q -f qcow2 "$DIR/cache.qcow2" 1G
  fi
  rm -f "$SERIAL"
  cat >"$DIR/provider.properties" <<EOF
provider.endpoint = https://10.0.2.2:$API_PORT
provider.ca = /etc/ferry/provider-ca.crt
EOF
  local fwd="hostfwd=tcp:127.0.0.1:$PAGE_PORT-:80,hostfwd=tcp:127.0.0.1:$NBD_PORT-:10809"
  fwd+=",hostfwd=tcp:127.0.0.1:$ISCSI_PORT-:3260"
  qemu-system-x86_64 -accel "$ACCEL" -m 1024 -smp 2 -no-reboot \
    -display none -monitor none -serial "file:$SERIAL" \
    -qmp "unix:$DIR/qmp.sock,server=on,wait=off" \
    -drive "file=$DIR/root.qcow2,if=virtio,format=qcow2" \
    -drive "file=$DIR/cache.qcow2,if=virtio,format=qcow2" \
    -netdev "user,id=n0,$fwd" -device virtio-net-pci,netdev=n0 \
    -fw_cfg "name=opt/io.ferry/provider.properties,file=$DIR/provider.properties" \
    -fw_cfg "name=opt/io.ferry/provider-ca.crt,file=$CA" \
    >"$DIR/qemu.err" 2>&1 &
  QEMU_PID=$!
  log "qemu ($ACCEL, pid $QEMU_PID): page 127.0.0.1:$PAGE_PORT, NBD $NBD_PORT, iSCSI $ISCSI_PORT; console $SERIAL"
}

guest_alive() {
  kill -0 "$QEMU_PID" 2>/dev/null || die "qemu exited (see $DIR/qemu.err)"
}

# The agent's status.json field (a jq filter), or nothing.
page() {
  curl -sf --max-time 5 "http://127.0.0.1:$PAGE_PORT/status.json" 2>/dev/null | jq -r "$1" 2>/dev/null || true
}

wait_for_page() {
  local stage="" booted=0
  while (($(remaining) > 0)); do
    guest_alive
    if [[ "$ACCEL" == kvm ]] && grep -q "KVM internal error" "$DIR/qemu.err"; then
      log "KVM does not work here: again with TCG"
      stop_pid "$QEMU_PID"
      ACCEL=tcg
      start_guest "$GUEST_MODE"
    fi
    if ((!booted)) && grep -aq "activation page:" "$SERIAL" 2>/dev/null; then
      booted=1
      log "the guest is up: $(grep -a 'activation page' "$SERIAL" | tail -n 1 | tr -d '\r')"
    fi
    stage=$(page .stage)
    [[ "$stage" == waiting_for_customer || "$stage" == activated ]] && return 0
    sleep 3
  done
  die "the agent's page never showed an activation key (last stage '${stage}')"
}

# Prints true once the provider says the gateway is online (else what it said last).
wait_online() {
  local online=""
  while (($(remaining) > 0)); do
    guest_alive
    api GET "/v1/gateways/$GATEWAY"
    online=$(jq -r .gateway.online <<<"$API_BODY")
    [[ "$online" == true ]] && break
    sleep 2
  done
  echo "$online"
}

# --- the steps ----------------------------------------------------------------
activate() {
  local key online=""
  key=$(page .activation_key)
  [[ -n "$key" && "$key" != null ]] || die "no activation key on the page"
  log "activation key on the page: $key"
  # The serial console is the Ferry menu (ferry-console under agetty); with nothing
  # attached to the port it reads end of input and starts again, showing the key.
  local i
  for ((i = 0; i < 20; i++)); do
    grep -aq "Activation key: $key" "$SERIAL" && grep -aq "Ferry gateway console" "$SERIAL" && break
    sleep 3
  done
  grep -aq "Activation key: $key" "$SERIAL" && grep -aq "Ferry gateway console" "$SERIAL" ||
    die "the serial console does not show the Ferry menu with the activation key"
  log "the serial console shows the Ferry menu and the activation key"
  api POST /v1/signup "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}"
  [[ "$API_STATUS" == 201 ]] || die "sign-up answered $API_STATUS: $API_BODY"
  api POST /v1/login "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}"
  [[ "$API_STATUS" == 200 ]] || die "login answered $API_STATUS: $API_BODY"
  TOKEN=$(jq -r .token <<<"$API_BODY")
  api POST /v1/gateways/activate "{\"activation_key\":\"$key\",\"name\":\"boot-test\"}"
  [[ "$API_STATUS" == 201 ]] || die "activation answered $API_STATUS: $API_BODY"
  GATEWAY=$(jq -r .gateway.id <<<"$API_BODY")
  log "activated: gateway $GATEWAY"
  online=$(wait_online)
  [[ "$online" == true ]] || die "the gateway never came online (page: $(page .channel))"
  log "the gateway holds its channel (page stage: $(page .stage))"
}

create_volume() {
  local request state=""
  api POST "/v1/gateways/$GATEWAY/volumes" "{\"name\":\"$VOLUME\",\"size\":\"${VOLUME_SIZE_MIB}M\"}"
  [[ "$API_STATUS" == 202 ]] || die "volume create answered $API_STATUS: $API_BODY"
  request=$(jq -r .request.id <<<"$API_BODY")
  while (($(remaining) > 0)); do
    guest_alive
    api GET "/v1/requests/$request"
    state=$(jq -r .request.state <<<"$API_BODY")
    [[ "$state" == "done" || "$state" == failed ]] && break
    sleep 2
  done
  [[ "$state" == "done" ]] || die "volume request $request is '$state': $API_BODY"
  log "volume $VOLUME (${VOLUME_SIZE_MIB} MiB) made: request $request done"
}

# Over NBD: the size, 1 MiB of 0xa5 at 0 and of 0x3c at the last MiB, written,
# flushed, and read back on a second connection.
check_nbd() {
  local out
  out=$("$PY" - "$NBD_PORT" "$VOLUME" $((VOLUME_SIZE_MIB * 1048576)) 2>&1 <<'EOF'
import nbd, sys
port, name, want = sys.argv[1], sys.argv[2], int(sys.argv[3])
MiB = 1 << 20
def connect():
    h = nbd.NBD()
    h.set_export_name(name)
    h.connect_tcp("127.0.0.1", port)
    return h
h = connect()
size = h.get_size()
assert size == want, f"size {size}, expected {want}"
h.pwrite(b"\xa5" * MiB, 0)
h.pwrite(b"\x3c" * MiB, size - MiB)
h.flush()
h.shutdown()
h = connect()
assert h.pread(MiB, 0) == b"\xa5" * MiB, "the first MiB read back differs"
assert h.pread(MiB, size - MiB) == b"\x3c" * MiB, "the last MiB read back differs"
assert h.pread(MiB, MiB) == bytes(MiB), "an unwritten MiB is not zero"
h.shutdown()
print(f"NBD: {size} bytes; 2 MiB written, flushed, read back on a new connection")
EOF
  ) || die "the NBD check failed: $out"
  log "$out"
}

check_iscsi() {
  local url="iscsi://127.0.0.1:$ISCSI_PORT/$IQN_PREFIX:$VOLUME/1" inq="" cap
  # The agent makes the target within a few seconds of the volume.
  while (($(remaining) > 0)); do
    inq=$(iscsi-inq "$url" 2>&1) && break
    inq=""
    sleep 3
  done
  [[ -n "$inq" ]] || die "iscsi-inq $url never answered"
  printf '%s\n' "$inq" >"$DIR/iscsi-inq.txt"
  if ! grep -Eq "^Vendor:FERRY *$" <<<"$inq" || ! grep -Eq "^Product:$VOLUME *$" <<<"$inq"; then
    die "iscsi-inq: not vendor FERRY, product $VOLUME: $inq"
  fi
  cap=$(iscsi-readcapacity16 "$url" 2>&1) || die "iscsi-readcapacity16 failed: $cap"
  grep -q "^LOGICAL BLOCK LENGTH IN BYTES:512$" <<<"$cap" || die "block length is not 512: $cap"
  if ! grep -q "^RETURNED LOGICAL BLOCK ADDRESS:$((VOLUME_SIZE_MIB * 2048 - 1))$" <<<"$cap" ||
    ! grep -q "^Total size:$((VOLUME_SIZE_MIB * 1048576))$" <<<"$cap"; then
    die "capacity is not ${VOLUME_SIZE_MIB} MiB: $cap"
  fi
  log "iSCSI: $IQN_PREFIX:$VOLUME LUN 1: vendor FERRY, 512-byte blocks, last LBA $((VOLUME_SIZE_MIB * 2048 - 1))"
  # What NBD wrote, read over iSCSI; then written over iSCSI, read over NBD.
  local out
  out=$(qemu-io -r -f raw -c "read -P 0xa5 0 1M" "$url" 2>&1) || die "qemu-io read over iSCSI: $out"
  grep -q "Pattern verification failed" <<<"$out" && die "over iSCSI the first MiB is not what NBD wrote: $out"
  out=$(qemu-io -f raw -c "write -P 0x5a 1M 1M" -c flush "$url" 2>&1) || die "qemu-io write over iSCSI: $out"
  "$PY" - "$NBD_PORT" "$VOLUME" <<'EOF' || die "what iSCSI wrote is not what NBD reads"
import nbd, sys
h = nbd.NBD()
h.set_export_name(sys.argv[2])
h.connect_tcp("127.0.0.1", sys.argv[1])
assert h.pread(1 << 20, 1 << 20) == b"\x5a" * (1 << 20)
h.shutdown()
EOF
  log "iSCSI and NBD agree: read over iSCSI what NBD wrote, and over NBD what iSCSI wrote"
}

# The power button (ACPI, through QMP), then qemu's exit: the appliance shuts down
# cleanly (the agent stops the engine, which uploads what is dirty), and no unit
# failed on the way up or down.
power_off() {
  local t0 i
  t0=$(date +%s)
  "$PY" - "$DIR/qmp.sock" <<'EOF' || die "could not press the power button through QMP"
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
json.loads(f.readline())  # the greeting
for cmd in ("qmp_capabilities", "system_powerdown"):
    f.write(json.dumps({"execute": cmd}) + "\n")
    f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r:
            break
    if "error" in r:
        sys.exit(f"{cmd}: {r['error']}")
EOF
  for ((i = 0; i < 2400 && $(remaining) > 0; i++)); do
    kill -0 "$QEMU_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$QEMU_PID" 2>/dev/null && die "the guest did not power off within $(($(date +%s) - t0)) s"
  wait "$QEMU_PID" 2>/dev/null || true
  QEMU_PID=""
  check_console_clean "$SERIAL"
  log "the guest powered off cleanly in $(($(date +%s) - t0)) s, no unit failed"
}

# No unit failed, at boot or at shutdown, in the console log $1.
check_console_clean() {
  local failed
  failed=$(grep -a "FAILED" "$1" | tr -d '\r' | sed 's/\x1b\[[0-9;]*[mK]//g' || true)
  [[ -z "$failed" ]] || die "the console ($1) shows failures:
$failed"
}

# The second disk became the cache disk: ext4 "ferry-cache" holding the agent's
# state (key, activation) and the gateway's file store with the volume's chunks.
check_cache_disk() {
  local raw=$DIR/cache.raw root store f
  qemu-img convert -f qcow2 -O raw "$DIR/cache.qcow2" "$raw"
  [[ "$(blkid -p -o value -s LABEL "$raw" 2>/dev/null)" == ferry-cache ]] ||
    die "the second disk is not the cache disk (no ext4 labelled ferry-cache)"
  root=$(debugfs -R "ls -p /" "$raw" 2>/dev/null | awk -F/ 'NF > 5 {print $6}')
  printf '%s\n' "$root" >"$DIR/cache-disk-root.txt"
  for f in gateway.key activation.json channel.crt engine store; do
    grep -qx "$f" <<<"$root" || die "the cache disk has no $f at its root: $(tr '\n' ' ' <<<"$root")"
  done
  # The chunks written (1 MiB each: 0 and 63 over NBD, 1 over iSCSI) were uploaded to
  # the store by the time the guest was off (docs/FORMAT.md: chunks/<index>.<generation>).
  local chunks=/store/$GATEWAY/volumes/$VOLUME/chunks
  store=$(debugfs -R "ls -p $chunks" "$raw" 2>/dev/null |
    awk -F/ 'NF > 5 && $6 ~ /^[0-9a-f]+\.[0-9a-f]+$/ {split($6, a, "."); print a[1]}' | sort -u | tr '\n' ' ')
  [[ "$store" == "0000000000000000 0000000000000001 000000000000003f " ]] ||
    die "the store on the cache disk ($chunks) has chunks '$store', not 0, 1 and 3f"
  rm -f "$raw"
  log "the cache disk: ext4 ferry-cache with the agent's state; the store has chunks 0, 1 and 63 of $VOLUME"
}

# After a reboot on the same disks: the cache disk is mounted again (fstab), the
# agent is still activated, holds its channel, and the volume has what was written.
check_after_reboot() {
  local online="" out
  [[ "$(page .stage)" == activated ]] || die "after the reboot the stage is '$(page .stage)', not activated"
  online=$(wait_online)
  [[ "$online" == true ]] || die "after the reboot the gateway never came online (page: $(page .channel))"
  out=$("$PY" - "$NBD_PORT" "$VOLUME" 2>&1 <<'EOF'
import nbd, sys
MiB = 1 << 20
h = nbd.NBD()
h.set_export_name(sys.argv[2])
h.connect_tcp("127.0.0.1", sys.argv[1])
size = h.get_size()
for off, byte in ((0, 0xa5), (MiB, 0x5a), (size - MiB, 0x3c), (2 * MiB, 0)):
    assert h.pread(MiB, off) == bytes([byte]) * MiB, f"the MiB at {off} is not {byte:#04x}"
h.shutdown()
EOF
  ) || die "after the reboot the volume does not have what was written: $out"
  log "after the reboot: still activated, channel up, $VOLUME has what NBD and iSCSI wrote"
}

main() {
  (($# == 1)) || usage
  [[ "$1" != -* ]] || usage
  IMAGE=$(realpath "$1" 2>/dev/null) || die "no image $1"
  [[ -f "$IMAGE" ]] || die "no image $1"
  [[ "$(qemu-img info --output=json "$IMAGE" 2>/dev/null | jq -r .format)" == qcow2 ]] ||
    die "$IMAGE is not a qcow2 image"
  local repo
  repo=$(cd "$(dirname "$0")/.." && pwd)
  BUILD=${FERRY_BUILD_DIR:-/work/main/build}
  [[ -d "$BUILD" ]] || BUILD=$repo/build
  CONTROL_BIN=$BUILD/server/ferry-control
  check_host
  DEADLINE=$((T0 + ${FERRY_BOOT_TEST_TIMEOUT:-900}))
  DIR=$(mktemp -d /tmp/ferry-boot-test.XXXXXX)
  trap on_exit EXIT
  trap 'exit 130' INT TERM
  read -r API_PORT CHANNEL_PORT INTERNAL_PORT PAGE_PORT NBD_PORT ISCSI_PORT < <(free_ports 6)
  pick_accel

  start_control
  start_guest
  wait_for_page
  log "the agent's page is up (stage $(page .stage))"
  activate
  create_volume
  check_nbd
  check_iscsi
  power_off
  check_cache_disk
  log "booting again on the same disks"
  start_guest again
  wait_for_page
  check_after_reboot
  power_off
  PASSED=1
  log "PASS: boot, activation, volume, NBD, iSCSI, power-off, cache disk, reboot in $(($(date +%s) - T0)) s ($ACCEL)"
}

main "$@"
