// Command portico is a kube-proxy replacement: one process per node that programs the
// node's dataplane (nftables, iptables or IPVS) for Kubernetes Services. It accepts
// kube-proxy's command line and configuration file unchanged.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/portico-dev/portico/config"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	os.Exit(exitCode(err))
}

// usageError marks errors in how portico was invoked.
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(os.Stderr, "portico:", err)
	var ue usageError
	if config.IsUsageError(err) || errors.As(err, &ue) {
		return exitUsage
	}
	return exitError
}
