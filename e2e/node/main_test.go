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

	"github.com/portico-dev/portico/e2e/harness/cluster"
	"github.com/portico-dev/portico/e2e/harness/env"
	"github.com/portico-dev/portico/e2e/harness/kubelet"
)

// The image the tests deploy: built from the working tree, imported into the node's
// containerd under this name (a tag other than latest: the kubelet does not try to pull).
const (
	imageName = "portico.local/portico"
	imageTag  = "e2e"
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

// setup starts the environment, builds the images and starts the node.
func setup(ctx context.Context) error {
	var err error
	if suite, err = env.Setup(ctx, env.Options{NoPortico: true, RealNodes: true, Log: logf}); err != nil {
		return err
	}
	work = filepath.Join(suite.Dir, "node-work")
	if err := os.MkdirAll(filepath.Join(work, "node"), 0o755); err != nil {
		return err
	}
	pause := filepath.Join(work, "pause.tar")
	logf("building the pause image")
	if err := kubelet.BuildPauseImage(ctx, work, pause); err != nil {
		return err
	}
	kc, err := suite.Cluster.KubeconfigFor(env.KubeletUser)
	if err != nil {
		return err
	}
	root, err := cluster.RepoRoot()
	if err != nil {
		return err
	}
	node = kubelet.New(kubelet.Options{Topology: suite.Topo, Cluster: suite.Cluster, Kubeconfig: kc,
		BinDir: filepath.Join(root, ".cache", "bin"), Dir: filepath.Join(work, "node"), PauseArchive: pause})
	logf("starting containerd and the kubelet on node-a")
	if err := node.Start(ctx); err != nil {
		return err
	}
	logf("building portico's image (make image's script) and importing it")
	img, err := buildImage(ctx, root)
	if err != nil {
		return err
	}
	return node.ImportImage(ctx, img, imageName)
}

// buildImage builds portico statically and its image with deploy/image/build.sh.
func buildImage(ctx context.Context, root string) (string, error) {
	bin, img := filepath.Join(work, "portico"), filepath.Join(work, "portico-image.tar")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/portico")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building portico: %w: %s", err, out)
	}
	script := exec.CommandContext(ctx, filepath.Join(root, "deploy", "image", "build.sh"), bin, img, imageTag)
	if out, err := script.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the image: %w: %s", err, out)
	}
	return img, nil
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
