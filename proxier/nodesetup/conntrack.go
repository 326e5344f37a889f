package nodesetup

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/cpuset"
)

// Conntrack holds the conntrack settings of the configuration.
type Conntrack struct {
	// MaxPerCore is conntrack.maxPerCore: nf_conntrack_max per CPU of the node; 0 leaves
	// nf_conntrack_max (and the hash table size) alone.
	MaxPerCore int
	// Min is conntrack.min: the lower bound of nf_conntrack_max.
	Min int
	// TCPEstablishedTimeout is conntrack.tcpEstablishedTimeout (0 leaves the sysctl).
	TCPEstablishedTimeout time.Duration
	// TCPCloseWaitTimeout is conntrack.tcpCloseWaitTimeout (0 leaves the sysctl).
	TCPCloseWaitTimeout time.Duration
	// UDPTimeout is conntrack.udpTimeout (0 leaves the sysctl).
	UDPTimeout time.Duration
	// UDPStreamTimeout is conntrack.udpStreamTimeout (0 leaves the sysctl).
	UDPStreamTimeout time.Duration
	// TCPBeLiberal is conntrack.tcpBeLiberal: sets nf_conntrack_tcp_be_liberal to 1 (false
	// leaves it).
	TCPBeLiberal bool
}

// Paths and names of the conntrack settings.
const (
	sysctlConntrackMax = "net.netfilter.nf_conntrack_max"
	hashsizePath       = "sys/module/nf_conntrack/parameters/hashsize"
	onlineCPUsPath     = "sys/devices/system/cpu/online"
)

// maxConntrackMax is the largest nf_conntrack_max that maxPerCore scales to (kube-proxy
// caps it there so that many-core machines do not reserve excessive memory).
const maxConntrackMax = 1 << 20

// applyConntrack applies the conntrack settings as kube-proxy does: nf_conntrack_max is
// only ever raised, and the hash table grown to a quarter of it when it is smaller; each
// timeout, and tcp_be_liberal, is written when it differs. Durations are written in whole
// seconds, truncated.
func (n *Node) applyConntrack(ctx context.Context, c Conntrack) error {
	if err := n.applyConntrackMax(ctx, c); err != nil {
		return err
	}
	for _, s := range conntrackSysctls(c) {
		if err := n.ensureSysctl(ctx, s.field, s.name, s.value); err != nil {
			return err
		}
	}
	return nil
}

// sysctl is one sysctl value asked for by a configuration field.
type sysctl struct {
	field, name string
	value       int
}

// conntrackSysctls returns the conntrack sysctls that c sets, in kube-proxy's order: a
// zero timeout and a false tcpBeLiberal leave theirs alone.
func conntrackSysctls(c Conntrack) []sysctl {
	var out []sysctl
	seconds := func(field, name string, d time.Duration) {
		if d > 0 {
			out = append(out, sysctl{field, name, int(d / time.Second)})
		}
	}
	seconds("conntrack.tcpEstablishedTimeout", "net.netfilter.nf_conntrack_tcp_timeout_established", c.TCPEstablishedTimeout)
	seconds("conntrack.tcpCloseWaitTimeout", "net.netfilter.nf_conntrack_tcp_timeout_close_wait", c.TCPCloseWaitTimeout)
	if c.TCPBeLiberal {
		out = append(out, sysctl{"conntrack.tcpBeLiberal", "net.netfilter.nf_conntrack_tcp_be_liberal", 1})
	}
	seconds("conntrack.udpTimeout", "net.netfilter.nf_conntrack_udp_timeout", c.UDPTimeout)
	seconds("conntrack.udpStreamTimeout", "net.netfilter.nf_conntrack_udp_timeout_stream", c.UDPStreamTimeout)
	return out
}

// applyConntrackMax raises nf_conntrack_max to what maxPerCore and min ask for, unless it
// is already at least that, and grows the hash table to a quarter of it.
func (n *Node) applyConntrackMax(ctx context.Context, c Conntrack) error {
	want := ConntrackMax(c, n.cpus())
	if want == 0 {
		return nil
	}
	logger := klog.FromContext(ctx)
	field := fmt.Sprintf("conntrack.maxPerCore (%d) and conntrack.min (%d)", c.MaxPerCore, c.Min)
	path := sysctlPath(sysctlConntrackMax)
	if cur, err := n.readInt(path); err != nil || cur < want {
		if err := n.writeInt(path, want); err != nil {
			return fmt.Errorf("%s: setting sysctl %s to %d: %w", field, sysctlConntrackMax, want, err)
		}
		logger.Info("Set sysctl", "sysctl", sysctlConntrackMax, "value", want, "before", cur)
	}
	hashsize, err := n.readInt(hashsizePath)
	if err != nil {
		return fmt.Errorf("%s: reading the conntrack hash table size: %w", field, err)
	}
	if hashsize >= want/4 {
		return nil
	}
	if err := n.writeInt(hashsizePath, want/4); err != nil {
		return fmt.Errorf("%s: setting the conntrack hash table size (/%s) to %d: %w", field, hashsizePath, want/4, err)
	}
	logger.Info("Set the conntrack hash table size", "hashsize", want/4, "before", hashsize)
	return nil
}

// ConntrackMax returns the nf_conntrack_max that c asks for on a node with cpus CPUs, as
// kube-proxy computes it: maxPerCore × cpus, at least min, capped at 2^20 (a cap that
// applies only to the scaled value); 0 when maxPerCore is 0 (leave it alone).
func ConntrackMax(c Conntrack, cpus int) int {
	if c.MaxPerCore <= 0 {
		return 0
	}
	scaled := c.MaxPerCore * cpus
	switch {
	case scaled > maxConntrackMax:
		return maxConntrackMax
	case scaled > c.Min:
		return scaled
	default:
		return c.Min
	}
}

// cpus returns the number of online CPUs of the node: nf_conntrack_max is for the whole
// node, so a process confined to some CPUs must not count only those.
func (n *Node) cpus() int {
	data, err := n.files.read(onlineCPUsPath)
	if err == nil {
		if set, err := cpuset.Parse(strings.TrimSpace(string(data))); err == nil && set.Size() > 0 {
			return set.Size()
		}
	}
	return runtime.NumCPU()
}
