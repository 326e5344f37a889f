package kubelet

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// criNamespace is containerd's namespace for the CRI (the kubelet's containers and images).
const criNamespace = "k8s.io"

// ctr runs ctr against the node's containerd, in the CRI's namespace, and returns its
// output.
func (n *Node) ctr(ctx context.Context, args ...string) (string, error) {
	argv := append([]string{"--address", socket(n.opts.Dir), "--namespace", criNamespace}, args...)
	var stderr strings.Builder
	cmd := exec.CommandContext(ctx, n.bin("ctr"), argv...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// ImportImage imports an OCI archive into the node's runtime as name:<its ref name>
// (the tag umoci gave it) and unpacks it, as if the kubelet had pulled it.
func (n *Node) ImportImage(ctx context.Context, archive, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	_, err := n.ctr(ctx, "images", "import", "--base-name", name, "--snapshotter", "overlayfs", archive)
	return err
}

// registered reports (nil) whether the node's kubelet has registered and posted its status
// since started.
func (n *Node) registered(ctx context.Context, started time.Time) error {
	node, err := n.opts.Cluster.Client().CoreV1().Nodes().Get(ctx, n.opts.Node, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if node.Status.NodeInfo.KubeletVersion == "" {
		return errors.New("no kubelet version in the Node's status yet")
	}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady && !c.LastHeartbeatTime.Time.Before(started.Truncate(time.Second)) {
			return nil
		}
	}
	return errors.New("no Ready heartbeat from the kubelet yet")
}

// killTasks force-deletes every container task of the node (the pods' containers and
// their sandboxes), so that no shim outlives the node.
func (n *Node) killTasks() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := n.ctr(ctx, "tasks", "ls", "--quiet")
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range strings.Fields(out) {
		if _, err := n.ctr(ctx, "tasks", "delete", "--force", id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// createCgroups creates the cgroup root in every hierarchy of /sys/fs/cgroup (the kubelet
// requires it to exist); in cpuset's, a new cgroup has no CPUs nor memory nodes until
// given its parent's.
func createCgroups(root string) error {
	hierarchies, err := filepath.Glob("/sys/fs/cgroup/*")
	if err != nil {
		return err
	}
	for _, h := range hierarchies {
		dir := filepath.Join(h, root)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("cgroup %s: %w", dir, err)
		}
		if filepath.Base(h) != "cpuset" {
			continue
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			v, err := os.ReadFile(filepath.Join(h, f))
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, f), v, 0o644)
			}
			if err != nil {
				return fmt.Errorf("cgroup %s: %s: %w", dir, f, err)
			}
		}
	}
	return nil
}

// removeCgroups removes the cgroup directories under root in every hierarchy of
// /sys/fs/cgroup, deepest first (a cgroup directory is removed with rmdir once empty).
func removeCgroups(root string) error {
	hierarchies, err := filepath.Glob("/sys/fs/cgroup/*")
	if err != nil {
		return err
	}
	var errs []error
	for _, h := range append(hierarchies, "/sys/fs/cgroup") {
		dir := filepath.Join(h, root)
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		var dirs []string
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		slices.Reverse(dirs)
		for _, d := range dirs {
			if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
