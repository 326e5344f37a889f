#!/usr/bin/env bash
# Builds portico's container image without Docker: a Debian root filesystem made with
# mmdebstrap from Debian's packages (nft, iptables with both its nft and legacy
# variants, ipset, conntrack, kmod) holding portico, packed as a one-layer OCI image with
# umoci, written as an OCI archive (an OCI image layout in a tar).
#
# Usage: deploy/image/build.sh PORTICO_BINARY OUTPUT.tar [TAG]
# Installs mmdebstrap and umoci with apt-get when missing; needs root and Debian's
# package mirror.
set -euo pipefail

[ $# -ge 2 ] || { echo "usage: $0 PORTICO_BINARY OUTPUT.tar [TAG]" >&2; exit 2; }
bin=$(realpath "$1") out=$(realpath -m "$2") tag=${3:-latest}
suite=${DEBIAN_SUITE:-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

missing=""
for p in mmdebstrap umoci; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "image: installing Debian packages:$missing"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The root filesystem: the smallest Debian (minbase) and what portico runs. Neither
# documentation nor apt's caches are kept. The binary goes to /usr/local/bin.
echo "image: root filesystem ($suite, from $mirror)"
mmdebstrap --quiet --variant=minbase --include=nftables,iptables,ipset,conntrack,kmod \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
  --customize-hook="mkdir -p \"\$1/usr/local/bin\"" \
  --customize-hook="upload $bin /usr/local/bin/portico" \
  --customize-hook='chmod 0755 "$1/usr/local/bin/portico"' \
  --customize-hook='chroot "$1" /usr/local/bin/portico version' \
  "$suite" "$work/rootfs.tar" \
  "deb $mirror $suite main" "deb $mirror $suite-updates main" "deb $security $suite-security main"

echo "image: OCI layout"
umoci init --layout "$work/oci"
umoci new --image "$work/oci:$tag"
umoci raw add-layer --image "$work/oci:$tag" "$work/rootfs.tar"
umoci config --image "$work/oci:$tag" \
  --architecture=amd64 --os=linux \
  --config.entrypoint=/usr/local/bin/portico \
  --config.env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.label=org.opencontainers.image.title=portico \
  --config.label=org.opencontainers.image.source=https://github.com/portico-dev/portico \
  --config.label=org.opencontainers.image.version="$tag"
umoci gc --layout "$work/oci"
tar -C "$work/oci" -cf "$out" .
echo "image: $out ($(du -h "$out" | cut -f1), tag $tag)"
