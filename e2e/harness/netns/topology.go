// Package netns builds the end-to-end test topology out of Linux network namespaces.
//
// Every namespace, link, address and route lives in namespaces this package creates,
// named "<prefix>-<short name>" with a per-run prefix ("pc" and six hex digits), bind
// mounted under /var/run/netns so that `ip netns exec NAME` works. Nothing is added to
// the root network namespace. The default topology (DefaultSpec), <p> being the prefix:
//
//	                   <p>-api  eth0 10.0.255.1/30 (etcd, kube-apiserver :6443)
//	                      |
//	                      |  veth; api0 10.0.255.2/30 in node-a
//	                      |
//	<p>-pod-a1 --+    <p>-node-a                   <p>-node-b           +-- <p>-pod-b1
//	<p>-pod-a2 --+-- cni0 10.244.1.1/24       cni0 10.244.2.1/24 -------+-- <p>-pod-b2
//	                 eth0 192.168.50.10/24    eth0 192.168.50.11/24
//	                      |                        |
//	                      +------ <p>-lan: br0 ----+
//	                                  |
//	                     <p>-client eth0 192.168.50.100/24, 192.168.50.101/24
//
// Every IPv4 address has an IPv6 twin (fd00:50::10, fd00:244:1::1/64, ...). Nodes route
// each other's pod CIDRs; the client routes the service, load-balancer and external
// ranges (10.96.0.0/16, fd00:96::/112, 192.168.60.0/24, fd00:60::/64) via node-a.
// Forwarding is on in the nodes, DAD is off everywhere (no tentative addresses), and pod
// bridge ports are in hairpin mode.
//
// A Topology is built from a Spec (plain data), created with Create and removed with
// Destroy. Do runs Go code inside a namespace; Exec runs a command there; Dialer opens
// TCP connections from inside one. Leftovers and CleanupStale find and remove the
// namespaces of earlier runs.
package netns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	vnetns "github.com/vishvananda/netns"
)

// RunDir is the directory under which named network namespaces are bind mounted.
const RunDir = "/var/run/netns"

// Topology is a set of network namespaces built from a Spec.
type Topology struct {
	spec Spec

	mu      sync.Mutex
	handles map[string]vnetns.NsHandle // full name -> open handle
	created []string                   // full names, creation order
	pidFile string
}

// New returns a topology for spec without creating anything. An empty spec.Prefix is
// replaced with a random one.
func New(spec Spec) *Topology {
	if spec.Prefix == "" {
		spec.Prefix = RandomPrefix()
	}
	return &Topology{spec: spec, handles: map[string]vnetns.NsHandle{}}
}

// Spec returns a copy of the topology's spec.
func (t *Topology) Spec() Spec { return t.spec }

// Prefix returns the run prefix of every namespace name.
func (t *Topology) Prefix() string { return t.spec.Prefix }

// Name returns the full namespace name for a short name ("node-a" -> "pc1a2b3c-node-a").
// A name that already carries the prefix is returned unchanged.
func (t *Topology) Name(short string) string {
	if strings.HasPrefix(short, t.spec.Prefix+"-") {
		return short
	}
	return t.spec.Prefix + "-" + short
}

// Path returns the bind-mount path of a namespace (/var/run/netns/<full name>).
func (t *Topology) Path(name string) string { return filepath.Join(RunDir, t.Name(name)) }

// Namespaces returns the full names of every namespace of the spec, in creation order.
func (t *Topology) Namespaces() []string {
	var out []string
	for _, n := range t.spec.shortNames() {
		out = append(out, t.Name(n))
	}
	return out
}

// NS returns the open handle of a created namespace (short or full name), or
// vishvananda/netns.None() when it was not created. The handle belongs to the topology;
// do not close it.
func (t *Topology) NS(name string) vnetns.NsHandle {
	t.mu.Lock()
	defer t.mu.Unlock()
	h, ok := t.handles[t.Name(name)]
	if !ok {
		return vnetns.None()
	}
	return h
}

// Exec returns a command that runs argv inside a namespace through `ip netns exec`.
func (t *Topology) Exec(ctx context.Context, name string, argv ...string) *exec.Cmd {
	args := append([]string{"netns", "exec", t.Name(name)}, argv...)
	return exec.CommandContext(ctx, "ip", args...)
}

// Do runs fn on an OS thread switched into a namespace and switches back afterwards.
// Sockets fn creates stay in that namespace. Goroutines fn starts do not run there.
func (t *Topology) Do(name string, fn func() error) error {
	h := t.NS(name)
	if !h.IsOpen() {
		return fmt.Errorf("netns: namespace %s was not created", t.Name(name))
	}
	return DoIn(h, fn)
}

// Create creates every namespace, link, address and route of the spec. On error it
// leaves what it made in place for Destroy to remove.
func (t *Topology) Create(ctx context.Context) error {
	if err := t.spec.Validate(); err != nil {
		return err
	}
	t.mu.Lock()
	already := len(t.created) > 0
	t.mu.Unlock()
	if already {
		return errors.New("netns: topology already created")
	}
	pidFile, err := writePIDFile(t.spec.Prefix)
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.pidFile = pidFile
	t.mu.Unlock()
	for _, n := range t.spec.shortNames() {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("netns: create: %w", err)
		}
		if err := t.addNamespace(n); err != nil {
			return err
		}
	}
	return t.build(ctx)
}

// addNamespace creates one named namespace, records it and brings its loopback up.
func (t *Topology) addNamespace(short string) error {
	full := t.Name(short)
	h, err := createNamed(full)
	if err != nil {
		return fmt.Errorf("netns: create namespace %s: %w", full, err)
	}
	t.mu.Lock()
	t.handles[full] = h
	t.created = append(t.created, full)
	t.mu.Unlock()
	return nil
}

// Destroy deletes every namespace the topology created (which removes their links) and
// its PID record. It is idempotent and works after a partial Create.
func (t *Topology) Destroy() error {
	t.mu.Lock()
	created, handles, pidFile := t.created, t.handles, t.pidFile
	t.created, t.handles, t.pidFile = nil, map[string]vnetns.NsHandle{}, ""
	t.mu.Unlock()
	var errs []error
	for i := len(created) - 1; i >= 0; i-- {
		if h, ok := handles[created[i]]; ok {
			_ = h.Close()
		}
		if err := deleteNamed(created[i]); err != nil {
			errs = append(errs, err)
		}
	}
	if pidFile != "" {
		if err := removeFile(pidFile); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// NodeIP returns a node's eth0 address of a family (invalid if it has none).
func (t *Topology) NodeIP(node string, fam Family) netip.Addr {
	n := t.spec.node(t.short(node))
	if n == nil {
		return netip.Addr{}
	}
	if fam == IPv4 {
		return n.IPv4.Addr()
	}
	return n.IPv6.Addr()
}

// PodIP returns a pod's address of a family (invalid if it has none).
func (t *Topology) PodIP(pod string, fam Family) netip.Addr {
	_, p := t.spec.pod(t.short(pod))
	if p == nil {
		return netip.Addr{}
	}
	if fam == IPv4 {
		return p.IPv4
	}
	return p.IPv6
}

// PodNode returns the short name of the node a pod is attached to ("" if unknown).
func (t *Topology) PodNode(pod string) string {
	n, _ := t.spec.pod(t.short(pod))
	if n == nil {
		return ""
	}
	return n.Name
}

// ClientIPs returns the client's addresses of a family, primary first.
func (t *Topology) ClientIPs(fam Family) []netip.Addr {
	var out []netip.Addr
	for _, p := range t.spec.Client.Addrs {
		if FamilyOf(p.Addr()) == fam {
			out = append(out, p.Addr())
		}
	}
	return out
}

// APIServerIP returns the api namespace's address, where the apiserver listens.
func (t *Topology) APIServerIP() netip.Addr { return t.spec.API.Addr.Addr() }

// Addrs returns the addresses a namespace owns (short or full name): a node's eth0
// addresses, a pod's addresses, the client's addresses or the api address.
func (t *Topology) Addrs(name string) []netip.Addr {
	short := t.short(name)
	var out []netip.Addr
	switch {
	case short == t.spec.API.Name:
		out = append(out, t.APIServerIP())
	case short == t.spec.Client.Name:
		out = append(t.ClientIPs(IPv4), t.ClientIPs(IPv6)...)
	default:
		for _, fam := range Families {
			if a := t.NodeIP(short, fam); a.IsValid() {
				out = append(out, a)
			}
			if a := t.PodIP(short, fam); a.IsValid() {
				out = append(out, a)
			}
		}
	}
	return out
}

// short strips the topology prefix from a full name.
func (t *Topology) short(name string) string {
	return strings.TrimPrefix(name, t.spec.Prefix+"-")
}
