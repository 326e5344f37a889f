#!/usr/bin/env bash
# e2e/vm/run.sh — run a self-contained (static) Linux program as root inside a throw-away
# VM whose kernel has IPVS, and exit with its exit code.
#
# This machine's kernel has no IPVS and no dummy module, so the ipvs backend's kernel
# tests run under qemu (software emulation: KVM does not work here) on Debian's cloud
# kernel, which ships ip_vs, dummy, veth, bridge and nf_tables as modules. The initramfs
# holds busybox, the kernel's network modules, the program and any extra host programs
# (--with, copied with their shared libraries). / is a tmpfs; /proc, /sys and /dev are
# mounted; the modules in MODULES are loaded; there is no network to the outside.
#
# Usage: e2e/vm/run.sh [--mem MiB] [--cpus N] [--with PATH]... [--netns NS --net CIDR]...
#                      -- PROGRAM [ARGS...]
#   --with PATH  copy a program (with its shared libraries), a file or a directory into
#                the VM at the same path
#   --netns NS   run qemu inside the network namespace NS (created by the caller)
#   --net CIDR   give the VM qemu's user-mode network (eth0 10.0.2.15/24) and a route to
#                CIDR through it: the VM then reaches CIDR as NS (or the host) does, by
#                qemu's own sockets; nothing else is routed. Give --netns with it, so that
#                the VM can reach no more than that namespace can.
# Env:   VM_CACHE  where the kernel and the base initramfs are kept (default .cache/vm)
#        VM_TIMEOUT  seconds before the VM is killed (default 900)
# First run: installs qemu-system-x86, busybox-static, cpio and kmod with apt-get and
# downloads the kernel package (about 70 MB); later runs reuse the cache.
set -euo pipefail

mem=1536
cpus=2
extra=()
routes=()
netns=""
while [ $# -gt 0 ]; do
  case "$1" in
    --mem) mem=$2; shift 2 ;;
    --cpus) cpus=$2; shift 2 ;;
    --with) extra+=("$2"); shift 2 ;;
    --netns) netns=$2; shift 2 ;;
    --net) routes+=("$2"); shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { echo "usage: $0 [--mem MiB] [--cpus N] [--with PATH]... [--netns NS --net CIDR]... -- PROGRAM [ARGS...]" >&2; exit 2; }
prog=$1; shift
[ -x "$prog" ] || { echo "vm: $prog is not an executable" >&2; exit 2; }

root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${VM_CACHE:-$root/.cache/vm}
modules="xfrm_user nf_conntrack nf_nat nf_tables nft_ct nft_nat nft_masq nft_chain_nat nft_fib nft_fib_inet nft_fib_ipv4 nft_fib_ipv6 nft_reject nft_reject_inet nft_reject_ipv4 nft_reject_ipv6 nft_numgen nft_compat nf_conntrack_netlink ip_tables ip6_tables iptable_nat iptable_filter iptable_mangle ip6table_nat ip6table_filter ip6table_mangle ip_set ip_set_hash_ip ip_set_hash_ipport ip_set_hash_ipportip ip_set_hash_ipportnet ip_set_hash_net ip_set_bitmap_port xt_set xt_comment xt_mark xt_conntrack xt_addrtype xt_multiport xt_nat xt_MASQUERADE xt_tcpudp xt_physdev xt_statistic virtio_pci virtio_net ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_wlc ip_vs_sh ip_vs_mh ip_vs_dh ip_vs_sed ip_vs_nq ip_vs_fo ip_vs_ovf ip_vs_lblc ip_vs_lblcr ip_vs_twos dummy veth bridge br_netfilter sctp"

have() { command -v "$1" >/dev/null 2>&1; }
if ! have qemu-system-x86_64 || [ ! -x /bin/busybox ] || ! have cpio || ! have depmod; then
  echo "vm: installing qemu-system-x86 busybox-static cpio kmod" >&2
  apt-get update -qq && apt-get install -y -qq qemu-system-x86 busybox-static cpio kmod >/dev/null
fi

# The kernel: the package linux-image-cloud-amd64 depends on, unpacked once.
mkdir -p "$cache"
if [ ! -f "$cache/kernel.version" ]; then
  pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
  if [ -z "$pkg" ]; then
    apt-get update -qq
    pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
  fi
  echo "vm: downloading $pkg" >&2
  rm -rf "$cache/kernel" && mkdir -p "$cache/kernel"
  (cd "$cache" && rm -f ./*.deb && apt-get download "$pkg" >/dev/null && dpkg -x ./*.deb kernel && rm -f ./*.deb)
  version=$(ls "$cache/kernel/lib/modules")
  depmod -b "$cache/kernel" "$version"
  echo "$version" > "$cache/kernel.version"
fi
version=$(cat "$cache/kernel.version")

# The base initramfs: busybox, the network modules and /init, built once per kernel.
# (v3: virtio for the network; the kernel finds modprobe at /sbin/modprobe; the payload may bring routes)
base="$cache/base-v3-$version.cpio.gz"
if [ ! -f "$base" ]; then
  tree=$(mktemp -d)
  mkdir -p "$tree"/{bin,sbin,proc,sys,dev,tmp,run,etc,lib/modules/"$version"}
  cp /bin/busybox "$tree/bin/"
  for applet in $(/bin/busybox --list); do [ -e "$tree/bin/$applet" ] || ln -s busybox "$tree/bin/$applet"; done
  ln -s /bin/busybox "$tree/sbin/modprobe"
  mods="$cache/kernel/lib/modules/$version"
  (cd "$mods" && cp --parents -r kernel/net kernel/drivers/net kernel/drivers/virtio kernel/lib kernel/crypto modules.* "$tree/lib/modules/$version/" 2>/dev/null || true)
  cat > "$tree/init" <<INIT
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs tmpfs /run
mkdir -p /run/netns /var/run /tmp
for m in $modules; do modprobe \$m 2>/dev/null; done
ip link set lo up
if [ -s /payload/routes ]; then
  ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0
  for r in \$(cat /payload/routes); do ip route add \$r via 10.0.2.2; done
fi
cd /payload
echo "=== vm: kernel \$(uname -r), running the payload"
./payload \$(cat /payload/args)
echo "=== vm: exit=\$?"
poweroff -f
INIT
  chmod +x "$tree/init"
  (cd "$tree" && find . | cpio -o -H newc 2>/dev/null | gzip -1 > "$base")
  rm -rf "$tree"
fi

# The payload: the program, its arguments and the extra programs with their libraries.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root/payload"
cp "$prog" "$work/root/payload/payload"
printf '%s ' "$@" > "$work/root/payload/args"
[ ${#routes[@]} -eq 0 ] || printf '%s\n' "${routes[@]}" > "$work/root/payload/routes"
for x in "${extra[@]}"; do
  if [ -d "$x" ]; then
    mkdir -p "$work/root$(dirname "$x")" && cp -a "$x" "$work/root$x"
    continue
  fi
  mkdir -p "$work/root$(dirname "$x")" && cp -L "$x" "$work/root$x"
  for lib in $(ldd "$x" 2>/dev/null | grep -o '/[^ ]*'); do
    mkdir -p "$work/root$(dirname "$lib")" && cp -L "$lib" "$work/root$lib"
  done
done
(cd "$work/root" && find . | cpio -o -H newc 2>/dev/null | gzip -1 > "$work/payload.cpio.gz")
cat "$base" "$work/payload.cpio.gz" > "$work/initrd.gz"

console="$work/console.log"
net=(-nic none)
if [ ${#routes[@]} -gt 0 ]; then
  net=(-netdev user,id=n0 -device virtio-net-pci,netdev=n0)
fi
inns=()
[ -z "$netns" ] || inns=(ip netns exec "$netns")
timeout "${VM_TIMEOUT:-900}" "${inns[@]}" qemu-system-x86_64 -accel tcg -cpu max -smp "$cpus" -m "$mem" -nographic -no-reboot "${net[@]}" \
  -kernel "$cache/kernel/boot/vmlinuz-$version" -initrd "$work/initrd.gz" \
  -append "console=ttyS0 quiet loglevel=1 panic=-1" </dev/null 2>&1 | sed -u 's/\r//g' | tee "$console" | sed -u -n '/=== vm: kernel/,$p'
code=$(sed -n 's/.*=== vm: exit=\([0-9]*\).*/\1/p' "$console" | tail -1)
[ -n "$code" ] || { echo "vm: the VM ended without the payload's exit code (timeout or crash)" >&2; exit 125; }
exit "$code"
