//go:build e2e

// Package e2e holds portico's end-to-end tests: a real kube-apiserver and etcd, portico
// programming a real kernel inside network namespaces, and real TCP and UDP traffic. The
// suite runs against the backend named by $PORTICO_MODE (default nftables); every backend
// must pass the same packet-flow table (flows_test.go).
package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/portico-dev/portico/e2e/harness/env"
)

// suite is the environment shared by every test of the package.
var suite *env.Env

func mode() string {
	if m := os.Getenv("PORTICO_MODE"); m != "" {
		return m
	}
	return "nftables"
}

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "FAIL: the e2e suite needs root (network namespaces, nftables, processes); run it with `make test` as root")
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	var err error
	start := time.Now()
	suite, err = env.Setup(ctx, env.Options{Mode: mode(), Log: func(f string, a ...any) {
		fmt.Fprintf(os.Stderr, "e2e: "+f+"\n", a...)
	}})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: setting up the e2e environment:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "e2e: environment ready in %v (mode %s)\n", time.Since(start).Round(time.Millisecond), mode())
	code := m.Run()
	if err := suite.Teardown(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: teardown:", err)
		code = 1
	}
	os.Exit(code)
}
