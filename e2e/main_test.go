//go:build e2e

// Package e2e holds portico's end-to-end tests: a real kube-apiserver and etcd, portico
// programming a real kernel inside network namespaces, and real TCP and UDP traffic. The
// suite runs against the backend named by $PORTICO_MODE (default nftables); every backend
// must pass the same packet-flow table (backends/backendtest/testdata/flows.yaml).
package e2e

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/e2e/harness/env"
	"github.com/portico-dev/portico/e2e/harness/netns"
)

// suite is the environment shared by every test of the package.
var suite *env.Env

func mode() string {
	if m := os.Getenv("PORTICO_MODE"); m != "" {
		return m
	}
	return "nftables"
}

// iptablesVariant returns the iptables variant $PORTICO_IPTABLES asks for ("" if unset).
func iptablesVariant() string { return os.Getenv("PORTICO_IPTABLES") }

// describeMode says which backend the suite runs against, for the log.
func describeMode() string {
	if v := suite.Portico.IPTablesVariant(); v != "" {
		return fmt.Sprintf("mode %s, variant %s", mode(), v)
	}
	return "mode " + mode()
}

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "FAIL: the e2e suite needs root (network namespaces, nftables, processes); run it with `make test` as root")
		os.Exit(1)
	}
	table, err := backendtest.LoadFlows()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	start := time.Now()
	// portico runs with the configuration the packet-flow table assumes, in every mode.
	suite, err = env.Setup(ctx, env.Options{Mode: mode(), IPTablesVariant: iptablesVariant(), PorticoConfig: configOverrides(table.Config), Log: func(f string, a ...any) {
		fmt.Fprintf(os.Stderr, "e2e: "+f+"\n", a...)
	}})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: setting up the e2e environment:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "e2e: environment ready in %v (%s)\n", time.Since(start).Round(time.Millisecond), describeMode())
	code := m.Run()
	if err := teardown(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: teardown:", err)
		code = 1
	}
	os.Exit(code)
}

// teardown removes the environment and checks that nothing of it is left: no namespace of
// the run (which also takes every rule, link and address with it) and no process.
func teardown() error {
	prefix := suite.Topo.Prefix()
	pids := append([]int{suite.Portico.PID()}, suite.Cluster.PIDs()...)
	if err := suite.Teardown(); err != nil {
		return err
	}
	if left, err := netns.Leftovers(prefix + "-"); err != nil || len(left) > 0 {
		return fmt.Errorf("namespaces left behind: %v (%v)", left, err)
	}
	for _, pid := range pids {
		if pid != 0 && syscall.Kill(pid, 0) == nil {
			return fmt.Errorf("process %d still running after teardown", pid)
		}
	}
	fmt.Fprintf(os.Stderr, "e2e: teardown left no namespace of %s and none of the processes %v\n", prefix, pids)
	return nil
}
