#!/usr/bin/env bash
# Builds the Ferry appliance: a bootable x86_64 BIOS disk image of a minimal Debian 12
# (bookworm) with the Ferry gateway installed from the given .deb packages.
#
#   image/build.sh OUTDIR --deb FILE [--deb FILE ...] [--cache DIR] [--keep-work]
#                  [--reuse-work]
#
#   OUTDIR        gets ferry-appliance.raw, ferry-appliance.qcow2 and SHA256SUMS
#                 (and OUTDIR/work while it builds)
#   --deb FILE    a package to install (ferry-gateway_*.deb); its dependencies come
#                 from the mirror. Repeat for more.
#   --cache DIR   downloaded packages and apt lists, kept between builds (default
#                 OUTDIR/cache): a second build downloads only what changed
#   --keep-work   keep OUTDIR/work/root (the root tree) after a successful build
#   --reuse-work  skip debootstrap and the package installation: make the file
#                 systems and the disk again from the tree a --keep-work build left
#
# Environment: SOURCE_DATE_EPOCH (default: the commit time of the repository's HEAD),
# FERRY_IMAGE_MIRROR (default http://deb.debian.org/debian), FERRY_IMAGE_SECURITY
# (default http://deb.debian.org/debian-security).
#
# It runs as root, without loop devices and without mounting the image:
#   1. debootstrap (minbase) builds the root tree in OUTDIR/work/root; apt-get in a
#      chroot adds the kernel, systemd, networkd/resolved/timesyncd and the .debs
#      (proc, sys, devpts, /run and the package cache are mounted inside the work
#      folder while it runs, and always unmounted);
#   2. the tree is configured: host name, DHCP on every Ethernet interface
#      (systemd-networkd), fstab, /etc/issue with the activation page's address, the
#      Ferry units enabled, tgt.service masked (the agent runs its own tgtd),
#      systemd-firstboot masked (nothing to ask on a console), apt's daily timers off,
#      the floppy driver blacklisted, root locked, and everything that differs per
#      build or per machine removed (machine-id, random seed, logs, apt lists and
#      caches). Marked WORKAROUND below: drop-ins for the Ferry units, each added only
#      while the package needs it (a second --config refused; the cache disk's mount
#      not ordered);
#   3. the boot partition (FAT, mkfs.vfat + mcopy + syslinux --install on a file) and
#      the root file system (mkfs.ext4 -d from the tree, on a file) are made, then
#      written with dd into a raw disk that has an MBR partition table (sfdisk) and
#      syslinux's MBR boot code; qemu-img converts it to qcow2.
#
# Disk layout (MBR, disk id 0xfe77d15c):
#   p1  1 MiB .. 257 MiB  FAT32 "FERRYBOOT", bootable: syslinux, vmlinuz, initrd.img
#   p2  257 MiB .. end    ext4 "ferry-root", UUID 6d1e8c4a-3f5b-4e0a-9c1d-f3e2b5a7c901
# Kernel command line: root=UUID=… ro console=tty0 console=ttyS0,115200n8 net.ifnames=0
#
# Host packages: debootstrap syslinux syslinux-common mtools dosfstools e2fsprogs
# fdisk qemu-utils coreutils findutils util-linux (mount) git (for the default
# SOURCE_DATE_EPOCH).
#
# Reproducibility: fixed UUIDs, volume id, disk id and hash seed; E2FSPROGS_FAKE_TIME
# for mkfs.ext4/debugfs; SOURCE_DATE_EPOCH for mtools, syslinux's install and
# mkinitramfs; file mtimes in the tree clamped to SOURCE_DATE_EPOCH; atime, ctime and
# crtime of every inode of the ext4 set to SOURCE_DATE_EPOCH with debugfs (mkfs.ext4 -d
# of e2fsprogs 1.47.0 copies atime and ctime from the tree, where they are the build's
# time); the "last changed" day of every account in /etc/shadow set to its day.
# Measured (2026-11-30, this host): two full builds with the same SOURCE_DATE_EPOCH and
# cache, minutes apart, gave byte-identical ferry-appliance.raw and .qcow2 (the same
# SHA256SUMS; cmp -l finds 0 bytes), and so did --reuse-work from the same tree. A build
# with another SOURCE_DATE_EPOCH differs in content only in the initrd (cpio times) and
# /etc/shadow (days); no file in the tree holds the build's own date. What can still
# differ: the mirror's state (a package updated between builds), and the host file
# system of OUTDIR (mkfs.ext4 -d adds files in readdir order, which sets inode numbers).
set -euo pipefail

readonly HOST_TOOLS=(
  "debootstrap:debootstrap" "syslinux:syslinux" "mcopy:mtools" "mkfs.vfat:dosfstools"
  "mkfs.ext4:e2fsprogs" "debugfs:e2fsprogs" "e2fsck:e2fsprogs" "sfdisk:fdisk"
  "qemu-img:qemu-utils" "chroot:coreutils" "mount:mount" "findmnt:util-linux"
  "sha256sum:coreutils" "dpkg-deb:dpkg"
)
readonly MBR_BIN=/usr/lib/syslinux/mbr/mbr.bin   # syslinux-common
readonly SUITE=bookworm
readonly ROOT_UUID=6d1e8c4a-3f5b-4e0a-9c1d-f3e2b5a7c901
readonly ROOT_HASH_SEED=0b5e7a2c-91d4-4c36-8f0e-4a7d2c9b1e55
readonly BOOT_VOLID=fe77b007
readonly DISK_ID=0xfe77d15c
readonly BOOT_START_MIB=1
readonly BOOT_MIB=256
readonly ROOT_FREE_MIB=512       # room on the root file system beyond what the tree needs
readonly NEED_FREE_MIB=6144      # in OUTDIR: tree, two file systems, raw, qcow2, cache
readonly KERNEL_CMDLINE="root=UUID=$ROOT_UUID ro console=tty0 console=ttyS0,115200n8 net.ifnames=0"
# Installed in the chroot besides the .debs (no Recommends).
readonly PACKAGES=(
  linux-image-amd64 initramfs-tools zstd systemd-sysv udev dbus systemd-resolved
  systemd-timesyncd e2fsprogs util-linux kmod procps less iproute2 ca-certificates
  tzdata
)

log() { printf '%s\n' "build.sh: $*" >&2; }
die() { printf '%s\n' "build.sh: error: $*" >&2; exit 1; }

usage() {
  sed -n '4,17p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# --- stages and their times -------------------------------------------------------
STAGE_NAME=""
STAGE_START=0
STAGE_TIMES=()
stage() {
  stage_end
  STAGE_NAME=$1
  STAGE_START=$(date +%s)
  log "== $1"
}
stage_end() {
  if [[ -n "$STAGE_NAME" ]]; then
    STAGE_TIMES+=("$(printf '  %-34s %5ds' "$STAGE_NAME" $(($(date +%s) - STAGE_START)))")
  fi
  STAGE_NAME=""
}

# --- arguments and checks ---------------------------------------------------------
OUTDIR=""
CACHE=""
DEBS=()
KEEP_WORK=0
REUSE_WORK=0
parse_args() {
  while (($#)); do
    case "$1" in
      --deb) (($# >= 2)) || usage; DEBS+=("$2"); shift 2 ;;
      --deb=*) DEBS+=("${1#--deb=}"); shift ;;
      --cache) (($# >= 2)) || usage; CACHE=$2; shift 2 ;;
      --cache=*) CACHE=${1#--cache=}; shift ;;
      --keep-work) KEEP_WORK=1; shift ;;
      --reuse-work) REUSE_WORK=1; shift ;;
      -h | --help) usage ;;
      -*) log "unknown option $1"; usage ;;
      *) [[ -z "$OUTDIR" ]] || { log "one OUTDIR only"; usage; }; OUTDIR=$1; shift ;;
    esac
  done
  [[ -n "$OUTDIR" ]] || usage
  ((${#DEBS[@]} > 0 || REUSE_WORK)) || die "no --deb given (the ferry-gateway package to install)"
}

check_host() {
  ((EUID == 0)) || die "must run as root (debootstrap, chroot, mkfs of root-owned files)"
  local t missing=()
  for t in "${HOST_TOOLS[@]}"; do
    command -v "${t%%:*}" >/dev/null 2>&1 || missing+=("${t%%:*} (package ${t#*:})")
  done
  [[ -r "$MBR_BIN" ]] || missing+=("$MBR_BIN (package syslinux-common)")
  ((${#missing[@]} == 0)) || die "missing on this host: ${missing[*]}
  install: apt-get install debootstrap syslinux syslinux-common mtools dosfstools e2fsprogs fdisk qemu-utils"
  [[ "$(uname -m)" == x86_64 ]] || die "builds an amd64 image: run on x86_64 (no foreign-architecture support)"
}

check_debs() {
  local i deb
  for i in "${!DEBS[@]}"; do
    deb=${DEBS[i]}
    [[ -f "$deb" ]] || die "no such .deb: $deb"
    [[ -r "$deb" ]] || die "cannot read $deb"
    dpkg-deb --info "$deb" >/dev/null 2>&1 || die "not a Debian package: $deb"
    DEBS[i]=$(realpath "$deb")
  done
}

check_space() {
  mkdir -p "$OUTDIR" "$CACHE"
  local avail
  avail=$(df -Pm "$OUTDIR" | awk 'NR == 2 {print $4}')
  ((avail >= NEED_FREE_MIB)) ||
    die "not enough disk space in $OUTDIR: ${avail} MiB free, the build needs about ${NEED_FREE_MIB} MiB"
}

default_epoch() {
  local repo
  repo=$(cd "$(dirname "$0")/.." && pwd)
  git -C "$repo" log -1 --format=%ct 2>/dev/null ||
    die "SOURCE_DATE_EPOCH is not set and $repo has no git HEAD to take it from"
}

# --- mounts inside the work folder ------------------------------------------------
# Every mount point under $WORK, deepest first (also what a killed debootstrap left).
mounts_under_work() {
  [[ -n "${WORK:-}" && -d "$WORK" ]] || return 0
  findmnt -rn -o TARGET | awk -v w="$WORK" 'index($0, w "/") == 1' | sort -r
}
unmount_work() {
  local m
  while read -r m; do
    [[ -n "$m" ]] || continue
    umount "$m" 2>/dev/null || umount -l "$m" || log "warning: could not unmount $m"
  done < <(mounts_under_work)
}
remove_work() {
  unmount_work
  [[ -z "$(mounts_under_work)" ]] || die "still mounted under $WORK: $(mounts_under_work | tr '\n' ' ')"
  rm -rf --one-file-system "$WORK"
}
on_exit() {
  local rc=$?
  unmount_work
  if ((rc != 0)); then
    log "FAILED (exit $rc) in stage '${STAGE_NAME:-?}'; the work folder is $WORK"
  fi
}

mount_chroot() {
  mount -t proc proc "$ROOT/proc"
  mount -t sysfs sysfs "$ROOT/sys"
  mkdir -p "$ROOT/dev/pts"
  mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$ROOT/dev/pts"
  mount -t tmpfs -o mode=0755 tmpfs "$ROOT/run"
  mkdir -p "$CACHE/apt-archives/partial" "$CACHE/apt-lists/partial" \
    "$ROOT/var/cache/apt/archives" "$ROOT/var/lib/apt/lists"
  mount --bind "$CACHE/apt-archives" "$ROOT/var/cache/apt/archives"
  mount --bind "$CACHE/apt-lists" "$ROOT/var/lib/apt/lists"
}

# A command in the root tree, with a clean environment.
in_root() {
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TZ=UTC \
    DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true \
    SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" chroot "$ROOT" "$@"
}

# --- 1. the root tree -------------------------------------------------------------
run_debootstrap() {
  local dlog=$WORK/debootstrap.log
  mkdir -p "$CACHE/debootstrap"
  if ! debootstrap --arch=amd64 --variant=minbase --cache-dir="$CACHE/debootstrap" \
    "$SUITE" "$ROOT" "$MIRROR" >"$dlog" 2>&1; then
    log "debootstrap failed; the end of its output ($dlog):"
    tail -n 25 "$dlog" >&2
    if [[ -f "$ROOT/debootstrap/debootstrap.log" ]]; then
      log "the end of $ROOT/debootstrap/debootstrap.log:"
      tail -n 25 "$ROOT/debootstrap/debootstrap.log" >&2
    fi
    die "debootstrap $SUITE from $MIRROR failed"
  fi
}

install_packages() {
  cat >"$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main
EOF
  # No daemon starts in the chroot.
  printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
  chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
  # The initramfs finds the root by UUID on virtio (qemu -drive if=virtio) as well as
  # on the usual controllers (MODULES=most is Debian's default, said here to be sure).
  mkdir -p "$ROOT/etc/initramfs-tools/conf.d" "$ROOT/etc/initramfs-tools/hooks"
  # FSTYPE: the root's type cannot be probed in the chroot; with it, e2fsck is in the
  # initramfs and checks the root before it is mounted.
  printf 'MODULES=most\nCOMPRESS=zstd\nFSTYPE=ext4\n' >"$ROOT/etc/initramfs-tools/conf.d/ferry.conf"
  # WORKAROUND (appliance/dist/ferry-firstboot takes any "disk" lsblk lists, even the
  # 0-byte fd0 of an empty emulated floppy drive, as a blank cache disk, and fails on
  # it): no floppy driver. Worth keeping after that is fixed: no appliance uses one.
  mkdir -p "$ROOT/etc/modprobe.d"
  cat >"$ROOT/etc/modprobe.d/ferry-appliance.conf" <<'EOF'
# Ferry appliance: no floppy drive is ever used; hypervisors that emulate an empty
# one (qemu -machine pc, VMware) would otherwise show a 0-byte disk fd0.
blacklist floppy
EOF
  cat >"$ROOT/etc/initramfs-tools/hooks/ferry" <<'EOF'
#!/bin/sh
# Ferry appliance: the root disk's drivers, whatever MODULES says.
[ "$1" = prereqs ] && exit 0
. /usr/share/initramfs-tools/hook-functions
for m in virtio_pci virtio_blk virtio_scsi sd_mod ahci ata_piix ext4 crc32c_generic; do
  manual_add_modules "$m"
done
EOF
  chmod 0755 "$ROOT/etc/initramfs-tools/hooks/ferry"

  mkdir -p "$ROOT/var/tmp/ferry-debs"
  local deb in_chroot=()
  for deb in "${DEBS[@]}"; do
    cp "$deb" "$ROOT/var/tmp/ferry-debs/"
    in_chroot+=("/var/tmp/ferry-debs/$(basename "$deb")")
  done

  mount_chroot
  local alog=$WORK/apt.log
  if ! in_root apt-get update >"$alog" 2>&1; then
    tail -n 25 "$alog" >&2
    die "apt-get update in the chroot failed (mirror $MIRROR)"
  fi
  if ! in_root apt-get install -y --no-install-recommends -o Dpkg::Options::=--force-confdef \
    -o Dpkg::Options::=--force-confold "${PACKAGES[@]}" "${in_chroot[@]}" >>"$alog" 2>&1; then
    tail -n 40 "$alog" >&2
    die "apt-get install in the chroot failed (log: $alog)"
  fi
  grep -E '^(Setting up|Unpacking) (ferry|linux-image)' "$alog" | sed 's/^/  /' >&2 || true
  unmount_work
  rm -rf "$ROOT/var/tmp/ferry-debs" "$ROOT/usr/sbin/policy-rc.d"
}

# --- 2. configuration -------------------------------------------------------------
configure_tree() {
  echo ferry-gateway >"$ROOT/etc/hostname"
  cat >"$ROOT/etc/hosts" <<'EOF'
127.0.0.1	localhost
127.0.1.1	ferry-gateway
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
EOF
  cat >"$ROOT/etc/fstab" <<EOF
# The Ferry appliance. The boot partition (p1, FAT) is read by syslinux only.
UUID=$ROOT_UUID	/	ext4	errors=remount-ro	0	1
EOF
  # DHCP on every Ethernet interface (eth* with net.ifnames=0, en* without).
  mkdir -p "$ROOT/etc/systemd/network"
  cat >"$ROOT/etc/systemd/network/80-ferry-dhcp.network" <<'EOF'
[Match]
Name=en* eth*

[Network]
DHCP=yes

[DHCPv4]
UseDomains=yes
EOF
  ln -sfn ../run/systemd/resolve/stub-resolv.conf "$ROOT/etc/resolv.conf"
  # The console shows where the activation page is (agetty: \4 = the IPv4 address).
  printf 'Ferry gateway \342\200\224 activation page: http://\\4/\n\n' >"$ROOT/etc/issue"
  printf 'Ferry gateway\n' >"$ROOT/etc/issue.net"

  local out
  out=$(in_root systemctl enable systemd-networkd.service systemd-resolved.service \
    systemd-timesyncd.service ferry-firstboot.service ferry-agent.service 2>&1) ||
    die "systemctl enable failed in the chroot (are the units in the .deb?): $out"
  # Debian's tgt enables tgt.service; the agent runs its own tgtd on 3260.
  in_root systemctl disable tgt.service >/dev/null 2>&1 || true
  in_root systemctl mask tgt.service >/dev/null 2>&1 || die "could not mask tgt.service"
  # An appliance does not fetch package lists from the mirror by itself every day.
  in_root systemctl disable apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1 || true
  # An empty machine-id is a first boot: systemd-firstboot would ask on the console
  # for a locale, keymap, time zone and root password. There is nothing to ask.
  in_root systemctl mask systemd-firstboot.service >/dev/null 2>&1 || true
  [[ -e "$ROOT/usr/lib/systemd/system/ferry-agent.service" || -e "$ROOT/lib/systemd/system/ferry-agent.service" ]] ||
    die "ferry-agent.service is not in the tree: was the ferry-gateway .deb given?"

  work_around_one_config
  work_around_cache_mount_order

  # Root is locked: nobody logs in with a password; the console menu comes later.
  in_root passwd -l root >/dev/null
}

# WORKAROUND, only while the packaged agent needs it: ferry-agent.service runs
# `ferry-agent --config=/etc/ferry/provider.properties --config=/etc/ferry/agent.properties`
# but ferry-agent 0.1.0 refuses a second --config ("Option must not be given more than
# once: config", exit 78, restarted forever). Fix: .repeatable(true) on the "config"
# option in appliance/main.cc. Until then a drop-in joins the two files into one,
# provider.properties last (in one Poco properties file the last value of a key wins,
# as the first --config does with two).
work_around_one_config() {
  local dropin=$ROOT/etc/systemd/system/ferry-agent.service.d
  if in_root /usr/sbin/ferry-agent --config=/etc/ferry/agent.properties \
    --config=/etc/ferry/agent.properties --help >/dev/null 2>&1; then
    return 0
  fi
  log "WORKAROUND: this ferry-agent takes one --config only: joining its two files (drop-in)"
  mkdir -p "$dropin"
  cat >"$dropin/image-one-config.conf" <<'EOF'
# WORKAROUND made by image/build.sh: this ferry-agent refuses a second --config. The
# two files are joined, provider.properties last so that its keys win.
[Service]
ExecStart=
ExecStart=/bin/sh -c 'umask 077; cat /etc/ferry/agent.properties /etc/ferry/provider.properties >/run/ferry-agent.properties && exec /usr/sbin/ferry-agent --config=/run/ferry-agent.properties'
EOF
}

# WORKAROUND, until appliance/dist has it: ferry-firstboot appends
# "LABEL=ferry-cache /var/lib/ferry ext4 defaults,nofail 0 2" to fstab, so from the
# second boot on systemd mounts the cache disk itself (var-lib-ferry.mount). A nofail
# mount is not ordered before local-fs.target, and neither ferry-firstboot.service nor
# ferry-agent.service is ordered after it: at boot the script may race systemd's mount,
# and at shutdown systemd unmounts /var/lib/ferry while the agent is still stopping
# ("Failed unmounting var-lib-ferry.mount", the engine uploading from a file system
# being unmounted). Fix: After=var-lib-ferry.mount in both units (ordering only: a
# missing cache disk still lets the agent start). Added only if the units lack it.
work_around_cache_mount_order() {
  local unit
  for unit in ferry-firstboot.service ferry-agent.service; do
    grep -qs 'var-lib-ferry.mount\|RequiresMountsFor=.*/var/lib/ferry' \
      "$ROOT/usr/lib/systemd/system/$unit" && continue
    log "WORKAROUND: $unit: After=var-lib-ferry.mount (drop-in)"
    mkdir -p "$ROOT/etc/systemd/system/$unit.d"
    cat >"$ROOT/etc/systemd/system/$unit.d/image-cache-mount.conf" <<'EOF'
# WORKAROUND made by image/build.sh: start after, and stop before, the cache disk's
# mount that ferry-firstboot put in /etc/fstab.
[Unit]
After=var-lib-ferry.mount
EOF
  done
}

# Whatever differs per build or per machine goes.
clean_tree() {
  : >"$ROOT/etc/machine-id"
  rm -f "$ROOT/var/lib/dbus/machine-id"
  [[ -d "$ROOT/var/lib/dbus" ]] && ln -s /etc/machine-id "$ROOT/var/lib/dbus/machine-id"
  rm -f "$ROOT/var/lib/systemd/random-seed" "$ROOT/var/lib/systemd/credential.secret" \
    "$ROOT"/etc/ssh/ssh_host_*_key* "$ROOT/var/cache/ldconfig/aux-cache" \
    "$ROOT"/var/lib/dpkg/*-old "$ROOT"/var/cache/debconf/*-old \
    "$ROOT"/etc/*- "$ROOT/root/.bash_history"
  rm -rf "$ROOT/var/lib/apt/lists" "$ROOT/debootstrap"
  mkdir -p "$ROOT/var/lib/apt/lists/partial"
  find "$ROOT/var/cache/apt" -mindepth 1 -delete
  mkdir -p "$ROOT/var/cache/apt/archives/partial"
  find "$ROOT/var/log" -type f -delete
  find "$ROOT/tmp" "$ROOT/var/tmp" "$ROOT/run" -mindepth 1 -delete
  # /etc/shadow's "last changed" days are the day each account was made: the build's.
  local day=$((SOURCE_DATE_EPOCH / 86400))
  awk -F: -v OFS=: -v d="$day" '$3 != "" {$3 = d} {print}' "$ROOT/etc/shadow" >"$ROOT/etc/shadow.ferry"
  cat "$ROOT/etc/shadow.ferry" >"$ROOT/etc/shadow"
  rm -f "$ROOT/etc/shadow.ferry"
  # Nothing newer than SOURCE_DATE_EPOCH.
  find "$ROOT" -xdev -newermt "@$SOURCE_DATE_EPOCH" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
}

# --- 3. file systems and the disk -------------------------------------------------
make_boot_fs() {
  local fat=$WORK/boot.fat kernel initrd
  kernel=$(find "$ROOT/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n 1)
  [[ -n "$kernel" ]] || die "no kernel in $ROOT/boot"
  initrd="$ROOT/boot/initrd.img-${kernel##*/vmlinuz-}"
  [[ -f "$initrd" ]] || die "no initrd for $(basename "$kernel") in $ROOT/boot"
  log "kernel $(basename "$kernel"), initrd $(du -h "$initrd" | cut -f1)"
  rm -f "$fat"
  truncate -s "${BOOT_MIB}M" "$fat"
  # -h: hidden sectors = where the partition starts, for the boot sector's sake.
  mkfs.vfat -F 32 -n FERRYBOOT -i "$BOOT_VOLID" --invariant -h $((BOOT_START_MIB * 2048)) "$fat" >/dev/null
  cat >"$WORK/syslinux.cfg" <<EOF
SERIAL 0 115200
DEFAULT ferry
PROMPT 0
TIMEOUT 0
LABEL ferry
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND $KERNEL_CMDLINE
EOF
  export MTOOLS_SKIP_CHECK=1
  syslinux --install "$fat"
  mcopy -i "$fat" "$WORK/syslinux.cfg" ::/syslinux.cfg
  mcopy -i "$fat" "$kernel" ::/vmlinuz
  mcopy -i "$fat" "$initrd" ::/initrd.img
}

make_root_fs() {
  local ext=$WORK/root.ext4 tree_mib inodes root_mib
  tree_mib=$(du -sxm "$ROOT" | cut -f1)
  inodes=$(find "$ROOT" -xdev | wc -l)
  # Blocks of the tree, 10 % for metadata and the journal, and free room.
  root_mib=$(((tree_mib * 110 / 100 + 64 + ROOT_FREE_MIB + 63) / 64 * 64))
  ROOT_MIB=$root_mib
  log "tree ${tree_mib} MiB, ${inodes} files; root file system ${root_mib} MiB"
  rm -f "$ext"
  truncate -s "${root_mib}M" "$ext"
  E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -F -L ferry-root -U "$ROOT_UUID" \
    -E "hash_seed=$ROOT_HASH_SEED,nodiscard" -d "$ROOT" "$ext"
  # mkfs.ext4 -d (e2fsprogs 1.47.0) copies atime and ctime from the tree, where they
  # are this build's: set them to SOURCE_DATE_EPOCH on every inode.
  local cmds=$WORK/debugfs.cmds
  local nl=$'\n'
  if find "$ROOT" -xdev -name "*[\"$nl]*" -print -quit | grep -q .; then
    die "a file name in the tree has a double quote or a newline: debugfs cannot be told about it"
  fi
  find "$ROOT" -xdev -printf '/%P\n' | awk -v t="@$SOURCE_DATE_EPOCH" \
    '{printf "sif \"%s\" atime %s\nsif \"%s\" ctime %s\nsif \"%s\" crtime %s\n", $0, t, $0, t, $0, t}' >"$cmds"
  E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH debugfs -w -f "$cmds" "$ext" >"$WORK/debugfs.log" 2>&1 ||
    die "debugfs failed (log: $WORK/debugfs.log)"
  if grep -v '^debugfs' "$WORK/debugfs.log" | grep -q .; then
    grep -v '^debugfs' "$WORK/debugfs.log" | head -n 5 >&2
    die "debugfs complained while setting times (log: $WORK/debugfs.log)"
  fi
  E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH e2fsck -fn "$ext" >"$WORK/e2fsck.log" 2>&1 ||
    { tail -n 20 "$WORK/e2fsck.log" >&2; die "the new root file system does not pass e2fsck"; }
}

make_disk() {
  local raw=$OUTDIR/ferry-appliance.raw qcow=$OUTDIR/ferry-appliance.qcow2
  local root_start_mib=$((BOOT_START_MIB + BOOT_MIB))
  local total_mib=$((root_start_mib + ROOT_MIB))
  rm -f "$raw" "$qcow" "$OUTDIR/SHA256SUMS"
  truncate -s "${total_mib}M" "$raw"
  sfdisk --quiet --no-reread --no-tell-kernel "$raw" <<EOF
label: dos
label-id: $DISK_ID
unit: sectors

start=$((BOOT_START_MIB * 2048)), size=$((BOOT_MIB * 2048)), type=c, bootable
start=$((root_start_mib * 2048)), size=$((ROOT_MIB * 2048)), type=83
EOF
  dd if="$MBR_BIN" of="$raw" bs=440 count=1 conv=notrunc status=none
  dd if="$WORK/boot.fat" of="$raw" bs=1M seek="$BOOT_START_MIB" conv=notrunc,sparse status=none
  dd if="$WORK/root.ext4" of="$raw" bs=1M seek="$root_start_mib" conv=notrunc,sparse status=none
  qemu-img convert -f raw -O qcow2 "$raw" "$qcow"
  (cd "$OUTDIR" && sha256sum ferry-appliance.raw ferry-appliance.qcow2 >SHA256SUMS)
}

report() {
  local f
  log "stage times:"
  printf '%s\n' "${STAGE_TIMES[@]}" >&2
  log "images:"
  for f in "$OUTDIR/ferry-appliance.raw" "$OUTDIR/ferry-appliance.qcow2"; do
    printf '  %-60s %6d MiB (%s on disk)\n' "$f" $(($(stat -c %s "$f") / 1048576)) "$(du -h "$f" | cut -f1)" >&2
  done
  sed 's/^/  /' "$OUTDIR/SHA256SUMS" >&2
}

main() {
  parse_args "$@"
  check_host
  OUTDIR=$(realpath -m "$OUTDIR")
  CACHE=$(realpath -m "${CACHE:-$OUTDIR/cache}")
  WORK=$OUTDIR/work
  ROOT=$WORK/root
  MIRROR=${FERRY_IMAGE_MIRROR:-http://deb.debian.org/debian}
  SECURITY=${FERRY_IMAGE_SECURITY:-http://deb.debian.org/debian-security}
  SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(default_epoch)}
  [[ "$SOURCE_DATE_EPOCH" =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH is not a number: $SOURCE_DATE_EPOCH"
  export SOURCE_DATE_EPOCH
  check_debs
  check_space
  trap on_exit EXIT
  log "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH ($(date -u -d "@$SOURCE_DATE_EPOCH" '+%F %T UTC')), mirror $MIRROR, cache $CACHE"

  if ((REUSE_WORK)); then
    [[ -d "$ROOT/etc" ]] || die "--reuse-work: no tree in $ROOT (build once with --keep-work)"
  else
    remove_work
    mkdir -p "$WORK"
    stage "debootstrap $SUITE"
    run_debootstrap
    stage "packages and .debs (apt-get)"
    install_packages
    stage "configuration"
    configure_tree
    clean_tree
  fi
  stage "boot file system (FAT, syslinux)"
  make_boot_fs
  stage "root file system (ext4)"
  make_root_fs
  stage "disk image (raw, qcow2)"
  make_disk
  stage_end
  rm -f "$WORK/boot.fat" "$WORK/root.ext4"
  ((KEEP_WORK || REUSE_WORK)) || remove_work
  report
}

main "$@"
