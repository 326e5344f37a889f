// Package nodesetup applies the node settings that kube-proxy applies before its proxier
// runs: the conntrack sysctls (and the conntrack hash table size), the sysctls a proxy
// mode needs, and the process's oom_score_adj. portico applies them at start and, with
// --init-only, only them.
//
// Everything is read and written under a root directory ("/" on a node), so that tests
// work on a tree of files in a temporary directory instead of the machine's /proc and
// /sys.
package nodesetup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"k8s.io/klog/v2"
)

// Settings are the node settings to apply, derived from the configuration.
type Settings struct {
	// Conntrack are the conntrack settings (conntrack.* of the configuration).
	Conntrack Conntrack
	// RouteLocalnet sets net.ipv4.conf.all.route_localnet to 1: iptables mode serving
	// NodePorts on 127.0.0.1 (iptables.localhostNodePorts) needs it.
	RouteLocalnet bool
	// IPVS sets the sysctls ipvs mode needs.
	IPVS bool
	// StrictARP sets arp_ignore=1 and arp_announce=2 (ipvs.strictARP, ipvs mode only).
	StrictARP bool
}

// Node reads and writes the settings of the node under a root directory. Create it with
// New.
type Node struct {
	files files
}

// New returns a Node that finds /proc and /sys under root ("/" on a node). It touches
// nothing until one of its methods is called.
func New(root string) *Node {
	return &Node{files: dirFiles(root)}
}

// Apply applies s the way kube-proxy does before it creates its proxier: the conntrack
// settings first, then those of the mode. It stops at the first setting it cannot apply
// and returns that error, naming the configuration field and the value (kube-proxy exits
// on it).
func (n *Node) Apply(ctx context.Context, s Settings) error {
	if err := n.applyConntrack(ctx, s.Conntrack); err != nil {
		return err
	}
	return n.applyMode(ctx, s)
}

// files reads and writes the small files of /proc and /sys, by their path from the root.
type files interface {
	read(path string) ([]byte, error)
	write(path string, data []byte) error
}

// dirFiles is files under a directory.
type dirFiles string

func (d dirFiles) read(path string) ([]byte, error) {
	return os.ReadFile(filepath.Join(string(d), path))
}

// write writes an existing file: a setting the kernel does not have is an error, as it is
// under /proc/sys (which never creates files).
func (d dirFiles) write(path string, data []byte) error {
	f, err := os.OpenFile(filepath.Join(string(d), path), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	return errors.Join(err, f.Close())
}

// sysctlPath returns the path of sysctl name (dotted, e.g. net.ipv4.ip_forward) under
// the root.
func sysctlPath(name string) string {
	return filepath.Join("proc/sys", strings.ReplaceAll(name, ".", "/"))
}

// readInt reads an integer file.
func (n *Node) readInt(path string) (int, error) {
	data, err := n.files.read(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", path, err)
	}
	return v, nil
}

// writeInt writes an integer file.
func (n *Node) writeInt(path string, v int) error {
	return n.files.write(path, []byte(strconv.Itoa(v)))
}

// ensureSysctl sets sysctl name to value unless it already has that value, as kube-proxy
// does (a value it cannot read is written). field names the configuration field that
// asks for it, for the error.
func (n *Node) ensureSysctl(ctx context.Context, field, name string, value int) error {
	path := sysctlPath(name)
	old, err := n.readInt(path)
	if err == nil && old == value {
		return nil
	}
	if err := n.writeInt(path, value); err != nil {
		return fmt.Errorf("%s: setting sysctl %s to %d: %w", field, name, value, err)
	}
	klog.FromContext(ctx).Info("Set sysctl", "sysctl", name, "value", value, "before", old, "for", field)
	return nil
}
