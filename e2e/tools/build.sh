#!/usr/bin/env bash
# build.sh — builds pinned third-party binaries from the Go module proxy into a cache.
#
# Usage: e2e/tools/build.sh OUTDIR NAME...
#   NAME is one of: etcd kube-apiserver kube-controller-manager kubectl kube-proxy
#                   kubelet kube-scheduler containerd containerd-shim-runc-v2 ctr runc
# A binary is rebuilt only when its pinned version (the go.mod of its tools module) changes:
# each binary sits next to a .stamp file holding the sha256 of the go.mod it was built from.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUTDIR NAME...}
shift
mkdir -p "$out"
out=$(cd "$out" && pwd)

kube_version() { awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3}' "$here/kube/go.mod"; }

build_one() {
	local name=$1 mod pkg ldflags="" cgo=0 tags=""
	case "$name" in
	etcd) mod=$here/etcd pkg=. ;;
	kube-apiserver | kube-controller-manager | kubectl | kube-proxy)
		mod=$here/kube pkg=k8s.io/kubernetes/cmd/$name
		local v
		v=$(kube_version)
		ldflags="-X k8s.io/component-base/version.gitVersion=$v -X k8s.io/client-go/pkg/version.gitVersion=$v"
		;;
	kubelet | kube-scheduler)
		mod=$here/node pkg=k8s.io/kubernetes/cmd/$name
		local v
		v=$(awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3}' "$here/node/go.mod")
		ldflags="-X k8s.io/component-base/version.gitVersion=$v -X k8s.io/client-go/pkg/version.gitVersion=$v"
		;;
	containerd | containerd-shim-runc-v2 | ctr)
		# no_btrfs: the btrfs snapshotter needs cgo and btrfs headers; overlayfs is used.
		mod=$here/containerd pkg=github.com/containerd/containerd/v2/cmd/$name tags=no_btrfs
		local v
		v=$(awk '$1=="require" && $2=="github.com/containerd/containerd/v2" {print $3}' "$here/containerd/go.mod")
		ldflags="-X github.com/containerd/containerd/v2/version.Version=$v"
		;;
	runc)
		# runc's nsexec is C: cgo, with the system's gcc (no seccomp: no libseccomp).
		mod=$here/runc pkg=github.com/opencontainers/runc cgo=1
		local v
		v=$(awk '$1=="require" && $2=="github.com/opencontainers/runc" {print $3}' "$here/runc/go.mod")
		ldflags="-X main.version=${v#v}"
		;;
	*)
		echo "build.sh: unknown binary $name" >&2
		return 2
		;;
	esac
	local stamp
	stamp=$(sha256sum "$mod/go.mod" | cut -d' ' -f1)
	if [ -x "$out/$name" ] && [ "$(cat "$out/$name.stamp" 2>/dev/null)" = "$stamp" ]; then
		return 0
	fi
	echo "building $name (pinned in ${mod#"$here"/}/go.mod; several minutes the first time)" >&2
	local start=$SECONDS
	(cd "$mod" && CGO_ENABLED=$cgo go build -trimpath -tags "$tags" -ldflags "-s -w $ldflags" -o "$out/$name.tmp" "$pkg")
	mv "$out/$name.tmp" "$out/$name"
	echo "$stamp" >"$out/$name.stamp"
	echo "built $name in $((SECONDS - start))s" >&2
}

for n in "$@"; do build_one "$n"; done
