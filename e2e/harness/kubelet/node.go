// Package kubelet runs a real Kubernetes node for the e2e tests (issue #21): containerd
// 2.x with runc and a kubelet, in a node's network namespace of the harness topology, so
// that a DaemonSet applied to the harness's API server gets a real pod on that node.
//
// Everything it starts lives in namespaces and directories it created: containerd and the
// kubelet share one mount namespace (held by a sleeping process started through `ip
// netns exec`, whose mount namespace is a slave of the machine's: the kubelet's volume
// mounts never reach the machine, and vanish with the namespace); every cgroup the kubelet
// makes is under a cgroup root of its own; state, sockets and logs are under Dir. The
// machine's cgroups are v1 (a hybrid mount); they are used as they are, never remounted.
package kubelet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/portico-dev/portico/e2e/harness/cluster"
	"github.com/portico-dev/portico/e2e/harness/netns"
	"github.com/portico-dev/portico/e2e/harness/proc"
)

// Options describe the node.
type Options struct {
	// Topology holds the node's network namespace.
	Topology *netns.Topology
	// Cluster is the API server the kubelet registers with.
	Cluster *cluster.Cluster
	// Kubeconfig is the kubelet's credentials (a user allowed to act as the node).
	Kubeconfig string
	// Node is the node's name in the topology (default netns.NodeA).
	Node string
	// BinDir holds kubelet, containerd, containerd-shim-runc-v2, ctr and runc (built by
	// e2e/tools/build.sh).
	BinDir string
	// Dir is the node's work directory (state, sockets, logs); it must exist.
	Dir string
	// PauseArchive is the OCI archive of the pause image (BuildPauseImage).
	PauseArchive string
}

// Node is a running kubelet and container runtime.
type Node struct {
	opts                      Options
	holder, containerd, kubel *proc.Process
	cgroupRoot                string
}

// New returns the node of opts; it starts nothing.
func New(opts Options) *Node {
	if opts.Node == "" {
		opts.Node = netns.NodeA
	}
	return &Node{opts: opts, cgroupRoot: "/portico-e2e-" + opts.Topology.Prefix()}
}

// Start starts the mount-namespace holder, containerd (and imports the pause image),
// then the kubelet, and waits until the kubelet has registered the node.
func (n *Node) Start(ctx context.Context) error {
	if err := n.writeConfigs(); err != nil {
		return err
	}
	if err := createCgroups(n.cgroupRoot); err != nil {
		return err
	}
	// Not `ip netns exec`: it mounts a sysfs of its own over /sys, and with it the
	// machine's cgroup mounts would be gone from the namespace.
	ns := n.opts.Topology.Name(n.opts.Node)
	n.holder = proc.New("mount-holder", "", n.path("holder.log"), []string{"unshare", "--mount", "--propagation", "slave",
		"nsenter", "--net=" + filepath.Join("/run/netns", ns), "sleep", "infinity"})
	if _, err := n.holder.Start(); err != nil {
		return err
	}
	if err := n.waitHolder(ctx, filepath.Join("/run/netns", ns)); err != nil {
		return err
	}
	if err := n.startContainerd(ctx); err != nil {
		return err
	}
	if err := n.ImportImage(ctx, n.opts.PauseArchive, "registry.k8s.io/pause"); err != nil {
		return fmt.Errorf("importing the pause image: %w", err)
	}
	return n.startKubelet(ctx)
}

// waitHolder waits until the holder has become `sleep` in the node's network namespace:
// until then its PID still names unshare or nsenter, and a process joining its
// namespaces would land in the machine's own network namespace.
func (n *Node) waitHolder(ctx context.Context, netnsPath string) error {
	want, err := os.Stat(netnsPath)
	if err != nil {
		return err
	}
	return n.waitFor(ctx, "the namespace holder", n.holder, func(context.Context) error {
		pid := strconv.Itoa(n.holder.PID())
		comm, err := os.ReadFile(filepath.Join("/proc", pid, "comm"))
		if err != nil {
			return err
		}
		got, err := os.Stat(filepath.Join("/proc", pid, "ns", "net"))
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(comm)) != "sleep" || !os.SameFile(got, want) {
			return errors.New("not yet sleeping in the node's network namespace")
		}
		return nil
	})
}

// path returns a path under the work directory.
func (n *Node) path(p string) string { return filepath.Join(n.opts.Dir, p) }

// bin returns a binary of BinDir.
func (n *Node) bin(name string) string { return filepath.Join(n.opts.BinDir, name) }

// inMounts returns argv run in the holder's mount and network namespaces, with BinDir
// first in PATH (containerd finds its shim there).
func (n *Node) inMounts(argv ...string) []string {
	return append([]string{"nsenter", "--target", strconv.Itoa(n.holder.PID()), "--mount", "--net", "--",
		"env", "PATH=" + n.opts.BinDir + ":" + os.Getenv("PATH")}, argv...)
}

// writeConfigs writes containerd's and the kubelet's configuration files.
func (n *Node) writeConfigs() error {
	ip := n.opts.Topology.NodeIP(n.opts.Node, netns.IPv4)
	for _, d := range []string{"containerd", "kubelet", "pod-logs", "cni/bin", "cni/net.d"} {
		if err := os.MkdirAll(n.path(d), 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(n.path("containerd.toml"), []byte(containerdConfig(n.opts.Dir, n.opts.BinDir)), 0o644); err != nil {
		return err
	}
	return os.WriteFile(n.path("kubelet.yaml"), []byte(kubeletConfig(n.opts.Dir, ip.String(), n.cgroupRoot)), 0o644)
}

// startContainerd starts containerd and waits until ctr reaches it.
func (n *Node) startContainerd(ctx context.Context) error {
	n.containerd = proc.New("containerd", "", n.path("containerd.log"),
		n.inMounts(n.bin("containerd"), "--config", n.path("containerd.toml")))
	if _, err := n.containerd.Start(); err != nil {
		return err
	}
	return n.waitFor(ctx, "containerd", n.containerd, func(ctx context.Context) error {
		_, err := n.ctr(ctx, "version")
		return err
	})
}

// startKubelet starts the kubelet and waits until the Node reports its kubelet version.
func (n *Node) startKubelet(ctx context.Context) error {
	ip := n.opts.Topology.NodeIP(n.opts.Node, netns.IPv4)
	n.kubel = proc.New("kubelet", "", n.path("kubelet.log"), n.inMounts(n.bin("kubelet"),
		"--config="+n.path("kubelet.yaml"),
		"--kubeconfig="+n.opts.Kubeconfig,
		"--root-dir="+n.path("kubelet"),
		"--cert-dir="+n.path("kubelet/pki"),
		"--hostname-override="+n.opts.Node,
		"--node-ip="+ip.String(),
		"--v=2"))
	if _, err := n.kubel.Start(); err != nil {
		return err
	}
	started := time.Now()
	return n.waitFor(ctx, "kubelet", n.kubel, func(ctx context.Context) error {
		return n.registered(ctx, started)
	})
}

// waitFor polls check until it succeeds, p exits, or two minutes pass.
func (n *Node) waitFor(ctx context.Context, what string, p *proc.Process, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var last error
	for {
		if last = check(ctx); last == nil {
			return nil
		}
		select {
		case <-p.Exited():
			return fmt.Errorf("%s exited: %v; log:\n%s", what, p.ExitErr(), p.Tail(30))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after 2 minutes: %v; log:\n%s", what, last, p.Tail(30))
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// Stop stops the kubelet, kills the pods' containers, stops containerd and the holder
// (its mount namespace goes with it), and removes the kubelet's cgroups. It returns the
// first error and goes on.
func (n *Node) Stop() error {
	var errs []error
	if n.kubel != nil {
		errs = append(errs, n.kubel.Stop(10*time.Second))
	}
	if n.containerd != nil && n.containerd.Running() {
		errs = append(errs, n.killTasks())
		errs = append(errs, n.containerd.Stop(10*time.Second))
	}
	if n.holder != nil {
		errs = append(errs, n.holder.Stop(5*time.Second))
	}
	errs = append(errs, removeCgroups(n.cgroupRoot))
	return errors.Join(errs...)
}

// Logs returns the paths of the node's logs by process name.
func (n *Node) Logs() map[string]string {
	return map[string]string{"kubelet": n.path("kubelet.log"), "containerd": n.path("containerd.log")}
}

// ContainerLog returns the log of a pod's container as the kubelet keeps it (every
// restart, oldest first), or what went wrong reading it.
func (n *Node) ContainerLog(namespace, pod, container string) string {
	files, err := filepath.Glob(filepath.Join(n.path("pod-logs"), namespace+"_"+pod+"_*", container, "*.log"))
	if err != nil || len(files) == 0 {
		return fmt.Sprintf("(no log of %s/%s %s: %v)", namespace, pod, container, err)
	}
	var out []byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err.Error()
		}
		out = append(out, b...)
	}
	return string(out)
}

// LastLines returns the last n lines of s.
func LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
