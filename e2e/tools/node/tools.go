//go:build tools

// Package tools pins the Kubernetes node binaries the e2e harness builds for its real
// node (issue #21): kubelet, and kube-scheduler, which binds the DaemonSet's pods.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
