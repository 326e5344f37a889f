package backendtest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/portico-dev/portico/e2e/harness/netns"
	"github.com/portico-dev/portico/e2e/harness/traffic"
)

// Probes per flow kind, and how long a probe waits, when a flow runs with real packets.
const (
	// ProbesBalanced is the number of connections a flow expecting endpoints opens
	// (unless Flow.Probes says otherwise): enough to see every endpoint of a small set.
	ProbesBalanced = 24
	// ProbesRefused is the number of connections a flow expecting a refusal opens.
	ProbesRefused = 3
	// ProbeTimeout bounds one probe.
	ProbeTimeout = 2 * time.Second
	// DropTimeout is how long a flow expecting a silent drop waits for an answer.
	DropTimeout = 1500 * time.Millisecond
)

// ErrSCTPFlow is Prober.Check's error for an SCTP flow on a kernel without SCTP sockets
// (this machine's): the e2e suite checks those flows its own way (a raw INIT and node-a's
// conntrack table). With SCTP sockets (the VM's kernel) SCTP flows are probed with real
// associations.
var ErrSCTPFlow = errors.New("SCTP flows are not probed with sockets")

// Prober runs flows of the packet-flow table with real packets: connections from the
// flow's host, in the namespaces of Topo, to the flow's frontend, answered (or not) by
// the traffic servers in the pods.
type Prober struct {
	Topo *netns.Topology
}

// Check probes flow f, whose Service (as the API server stores it, addresses allocated)
// is svc, and returns what differs from the flow's expectation, or "". An error means the
// flow could not be probed at all.
func (p Prober) Check(ctx context.Context, svc *corev1.Service, f Flow) (string, error) {
	if f.To != "" && svc == nil {
		return "", fmt.Errorf("flow %q: no Service %q in the scenario", f.Name, f.To)
	}
	if ok, why := traffic.SCTPSupported(); f.Protocol() == traffic.SCTP && !ok {
		return "", fmt.Errorf("flow %q: %w (%s)", f.Name, ErrSCTPFlow, why)
	}
	dst, err := Destination(p.Topo.Spec(), svc, f)
	if err != nil {
		return "", err
	}
	src, err := p.Source(f, dst)
	if err != nil {
		return "", err
	}
	switch {
	case len(f.Expect.Pods) > 0:
		n := ProbesBalanced
		if f.Probes > 0 {
			n = f.Probes
		}
		st := traffic.ProbeN(ctx, p.Topo, f.From, src, dst, f.Protocol(), ProbeTimeout, n)
		return p.Answered(f, dst, st), nil
	case f.Expect.Outcome == Dropped:
		r := traffic.Probe(ctx, p.Topo, f.From, src, dst, f.Protocol(), DropTimeout)
		if r.Outcome != traffic.Timeout {
			return fmt.Sprintf("%s %s %s: want a timeout (DROP), got %s (%v)", f.From, f.Protocol(), dst, r.Outcome, r.Err), nil
		}
		return "", nil
	default:
		st := traffic.ProbeN(ctx, p.Topo, f.From, src, dst, f.Protocol(), ProbeTimeout, ProbesRefused)
		if st.Outcomes[traffic.Refused] != st.Sent || st.Sent == 0 {
			return fmt.Sprintf("%s %s %s: want every probe refused, got %s", f.From, f.Protocol(), dst, st), nil
		}
		return "", nil
	}
}

// Source returns the address a flow's probes are bound to: the client's chosen address
// or a pod's own; node-a lets the kernel choose (the invalid address).
func (p Prober) Source(f Flow, dst netip.AddrPort) (netip.Addr, error) {
	if f.From == NodeName {
		return netip.Addr{}, nil
	}
	src, _, err := Source(p.Topo.Spec(), f, dst.Addr())
	return src, err
}

// Answered checks the probes of a flow that expects endpoints: every probe answered, by
// exactly the expected pods (a single one of them with Sticky), each seeing the peer the
// flow requires. It returns what is wrong, or "".
func (p Prober) Answered(f Flow, dst netip.AddrPort, st traffic.Stats) string {
	if st.OK() != st.Sent || st.Sent == 0 {
		return fmt.Sprintf("%s -> %s: want every probe answered, got %s", f.From, dst, st)
	}
	want := map[netip.Addr]bool{}
	for _, pod := range f.Expect.Pods {
		want[p.Topo.PodIP(pod, f.Fam())] = true
	}
	got := map[netip.Addr]bool{}
	for s := range st.Servers {
		got[s.Addr()] = true
	}
	var problems []string
	switch {
	case f.Sticky && (len(got) != 1 || !want[slices.Collect(maps.Keys(got))[0]]):
		problems = append(problems, fmt.Sprintf("%s -> %s: answering endpoints %v, want a single one of %v (session affinity) (%s)",
			f.From, dst, SortedAddrs(got), SortedAddrs(want), st))
	case !f.Sticky && !maps.Equal(want, got):
		problems = append(problems, fmt.Sprintf("%s -> %s: answering endpoints %v, want exactly %v (%s)", f.From, dst, SortedAddrs(got), SortedAddrs(want), st))
	}
	problems = append(problems, p.peerProblems(f, dst, st)...)
	return strings.Join(problems, "; ")
}

// peerProblems checks the source addresses the endpoints saw against Flow.Peer.
func (p Prober) peerProblems(f Flow, dst netip.AddrPort, st traffic.Stats) []string {
	nodeAddrs := p.NodeAddresses(NodeName)
	var out []string
	for _, peer := range SortedAddrs(st.Peers) {
		switch f.Peer {
		case PeerClient:
			want, _ := p.Source(f, dst)
			if want.IsValid() && peer != want || slices.Contains(nodeAddrs, peer) {
				out = append(out, fmt.Sprintf("%s: endpoint saw %s, want the client's own address %s (not masqueraded)", f.Name, peer, want))
			}
		case PeerNode:
			if !slices.Contains(nodeAddrs, peer) {
				out = append(out, fmt.Sprintf("%s: endpoint saw %s, want one of node-a's addresses %v (masqueraded)", f.Name, peer, nodeAddrs))
			}
		}
	}
	return out
}

// NodeAddresses returns every address of a node: its LAN and bridge addresses (a
// masqueraded packet carries one of them, depending on the way out).
func (p Prober) NodeAddresses(node string) []netip.Addr {
	var out []netip.Addr
	for _, n := range p.Topo.Spec().Nodes {
		if n.Name == node {
			out = append(out, n.IPv4.Addr(), n.IPv6.Addr(), n.BridgeIPv4.Addr(), n.BridgeIPv6.Addr())
		}
	}
	return out
}

// SortedAddrs returns the keys of a set of addresses in order.
func SortedAddrs[V any](m map[netip.Addr]V) []netip.Addr {
	out := slices.Collect(maps.Keys(m))
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}
