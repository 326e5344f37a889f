//go:build tools

// Package tools pins the container runtime of the e2e harness's real node (issue #21):
// containerd 2.x (Kubernetes 1.36+ no longer supports 1.x, Debian's version), its runc
// shim and ctr, which imports portico's image.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
