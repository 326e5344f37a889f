//go:build e2e

// Package node holds the e2e tests that need a real node (issue #21): a kubelet with
// containerd and runc on node-a (package kubelet), a kube-scheduler and the DaemonSet
// controller, and portico deployed from deploy/ as an operator would, running from its
// container image.
package node

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/portico-dev/portico/e2e/harness/env"
	"github.com/portico-dev/portico/e2e/harness/kubelet"
)

var (
	suite *env.Env
	node  *kubelet.Node
	// work is a scratch directory for images and kustomizations.
	work string
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := setup(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "e2e/node: setup: %v\n", err)
		teardown()
		return 1
	}
	code := m.Run()
	teardown()
	return code
}

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, "e2e/node: "+format+"\n", args...) }

// setup starts the environment and the node, with portico's image imported.
func setup(ctx context.Context) error {
	var err error
	if suite, err = env.Setup(ctx, env.Options{NoPortico: true, RealNodes: true, Log: logf}); err != nil {
		return err
	}
	work = filepath.Join(suite.Dir, "node-work")
	node, err = kubelet.StartNode(ctx, suite, work, logf)
	return err
}

// teardown stops the node, then the environment.
func teardown() {
	if keep := os.Getenv("NODE_E2E_KEEP_LOGS"); keep != "" && work != "" {
		_ = exec.Command("cp", "-r", filepath.Join(work, "node"), keep).Run()
	}
	if node != nil {
		if err := node.Stop(); err != nil {
			logf("stopping the node: %v", err)
		}
	}
	if suite != nil {
		if err := suite.Teardown(); err != nil {
			logf("teardown: %v", err)
		}
	}
}
