//go:build tools

// Package tools pins runc, the OCI runtime under containerd on the e2e harness's real node
// (issue #21).
package tools

import _ "github.com/opencontainers/runc"
