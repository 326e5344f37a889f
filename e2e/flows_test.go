//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/portico-dev/portico/e2e/harness/env"
	"github.com/portico-dev/portico/e2e/harness/netns"
	"github.com/portico-dev/portico/e2e/harness/traffic"
)

// The packet-flow table is backend-neutral: a flow names where a probe starts, which
// frontend of which Service it targets and what must happen. Every backend runs the same
// flows against the real kernel.

// DestKind says which frontend of a Service a flow targets.
type DestKind string

const (
	ToClusterIP    DestKind = "ClusterIP"
	ToNodePort     DestKind = "NodePort"
	ToLoadBalancer DestKind = "LoadBalancer"
	ToExternalIP   DestKind = "ExternalIP"
)

// Peer says what source address the answering endpoint must have seen.
type Peer int

const (
	// PeerAny does not check the source.
	PeerAny Peer = iota
	// PeerClient: the endpoint saw the client's own address (no masquerade).
	PeerClient
	// PeerNode: the endpoint saw an address of node-a (masqueraded).
	PeerNode
)

func (p Peer) String() string { return [...]string{"any", "client", "node"}[p] }

// Flow is one row of the packet-flow table.
type Flow struct {
	// Name describes the row.
	Name string
	// From is the namespace the probe starts in (short name, e.g. netns.Client).
	From string
	// SrcIndex picks the client's N-th address of the family as source (client only).
	SrcIndex int
	// Service and Kind pick the frontend; Family its IP family (default IPv4).
	Service string
	Kind    DestKind
	Family  netns.Family
	// Port overrides the frontend's port (to probe a port the Service does not serve).
	Port uint16
	// Addr overrides the frontend's address (to probe a node address NodePorts must not
	// answer on).
	Addr netip.Addr
	// Proto is "TCP" (default) or "UDP".
	Proto string
	// Endpoints are the pods that must answer (all of them, and no other); empty means
	// the flow must not be answered and Outcome says how it fails.
	Endpoints []string
	// Outcome is traffic.Refused (REJECT) or traffic.Timeout (DROP) for flows without
	// endpoints.
	Outcome traffic.Outcome
	// Peer checks masquerading.
	Peer Peer
	// Sticky: every probe must be answered by the same endpoint, one of Endpoints
	// (ClientIP session affinity), instead of by all of them.
	Sticky bool
	// Probes overrides how many probes an answered flow sends (default probesBalanced).
	Probes int
}

// probes per flow kind.
const (
	probesBalanced = 24
	probesRefused  = 3
	probeTimeout   = 2 * time.Second
	dropTimeout    = 1500 * time.Millisecond
)

// runFlow probes one flow and checks its expectation.
func runFlow(ctx context.Context, t *testing.T, svcs map[string]*corev1.Service, f Flow) {
	t.Helper()
	dst, err := resolve(svcs, f)
	if err != nil {
		t.Fatal(err)
	}
	src := source(f)
	proto := f.Proto
	if proto == "" {
		proto = "TCP"
	}
	switch {
	case len(f.Endpoints) > 0:
		n := probesBalanced
		if f.Probes > 0 {
			n = f.Probes
		}
		st := traffic.ProbeN(ctx, suite.Topo, f.From, src, dst, proto, probeTimeout, n)
		checkAnswered(t, f, dst, st)
	case f.Outcome == traffic.Timeout:
		r := traffic.Probe(ctx, suite.Topo, f.From, src, dst, proto, dropTimeout)
		if r.Outcome != traffic.Timeout {
			t.Errorf("%s %s %s: want a timeout (DROP), got %s (%v)", f.From, proto, dst, r.Outcome, r.Err)
		}
	default:
		st := traffic.ProbeN(ctx, suite.Topo, f.From, src, dst, proto, probeTimeout, probesRefused)
		if st.Outcomes[f.Outcome] != st.Sent || st.Sent == 0 {
			t.Errorf("%s %s %s: want every probe %s, got %s", f.From, proto, dst, f.Outcome, st)
		}
	}
}

func checkAnswered(t *testing.T, f Flow, dst netip.AddrPort, st traffic.Stats) {
	t.Helper()
	if st.OK() != st.Sent || st.Sent == 0 {
		t.Errorf("%s -> %s: want every probe answered, got %s", f.From, dst, st)
		return
	}
	fam := family(f)
	want := map[netip.Addr]bool{}
	for _, p := range f.Endpoints {
		want[suite.Topo.PodIP(p, fam)] = true
	}
	got := map[netip.Addr]bool{}
	for s := range st.Servers {
		got[s.Addr()] = true
	}
	if f.Sticky {
		if len(got) != 1 || !want[slices.Collect(maps.Keys(got))[0]] {
			t.Errorf("%s -> %s: answering endpoints %v, want a single one of %v (session affinity) (%s)", f.From, dst, sortedAddrs(got), sortedAddrs(want), st)
		}
		checkPeers(t, f, st)
		return
	}
	if !maps.Equal(want, got) {
		t.Errorf("%s -> %s: answering endpoints %v, want exactly %v (%s)", f.From, dst, sortedAddrs(got), sortedAddrs(want), st)
	}
	checkPeers(t, f, st)
}

func checkPeers(t *testing.T, f Flow, st traffic.Stats) {
	t.Helper()
	nodeAddrs := nodeAddresses(netns.NodeA)
	for peer := range st.Peers {
		switch f.Peer {
		case PeerClient:
			if want := source(f); want.IsValid() && peer != want || slices.Contains(nodeAddrs, peer) {
				t.Errorf("%s: endpoint saw %s, want the client's own address %s (not masqueraded)", f.Name, peer, source(f))
			}
		case PeerNode:
			if !slices.Contains(nodeAddrs, peer) {
				t.Errorf("%s: endpoint saw %s, want one of node-a's addresses %v (masqueraded)", f.Name, peer, nodeAddrs)
			}
		}
	}
}

// nodeAddresses returns every address of a node: its LAN and bridge addresses (a
// masqueraded packet carries one of them, depending on the way out).
func nodeAddresses(node string) []netip.Addr {
	var out []netip.Addr
	for _, n := range suite.Topo.Spec().Nodes {
		if n.Name == node {
			out = append(out, n.IPv4.Addr(), n.IPv6.Addr(), n.BridgeIPv4.Addr(), n.BridgeIPv6.Addr())
		}
	}
	return out
}

func family(f Flow) netns.Family {
	if f.Family == "" {
		return netns.IPv4
	}
	return f.Family
}

// source returns the flow's source address: a chosen client address, or for pods their
// own address (so that PeerClient can be checked), or zero (any).
func source(f Flow) netip.Addr {
	fam := family(f)
	if f.From == netns.Client {
		ips := suite.Topo.ClientIPs(fam)
		if f.SrcIndex < len(ips) {
			return ips[f.SrcIndex]
		}
		return netip.Addr{}
	}
	if ip := suite.Topo.PodIP(f.From, fam); ip.IsValid() {
		return ip
	}
	return netip.Addr{}
}

// resolve finds the address and port a flow targets from the live Service object.
func resolve(svcs map[string]*corev1.Service, f Flow) (netip.AddrPort, error) {
	svc, ok := svcs[f.Service]
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("flow %q: no Service %q in the scenario", f.Name, f.Service)
	}
	fam := family(f)
	sp := servicePort(svc, f.Proto)
	port := uint16(sp.Port)
	var candidates []string
	switch f.Kind {
	case ToClusterIP, "":
		candidates = svc.Spec.ClusterIPs
	case ToNodePort:
		candidates = []string{suite.Topo.NodeIP(netns.NodeA, fam).String()}
		port = uint16(sp.NodePort)
	case ToLoadBalancer:
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			candidates = append(candidates, ing.IP)
		}
	case ToExternalIP:
		candidates = svc.Spec.ExternalIPs
	}
	if f.Port != 0 {
		port = f.Port
	}
	if f.Addr.IsValid() {
		candidates = []string{f.Addr.String()}
	}
	for _, c := range candidates {
		if ip, err := netip.ParseAddr(c); err == nil && netns.FamilyOf(ip) == fam {
			return netip.AddrPortFrom(ip, port), nil
		}
	}
	return netip.AddrPort{}, fmt.Errorf("flow %q: Service %s has no %s %s frontend (candidates %v)", f.Name, svc.Name, fam, f.Kind, candidates)
}

// servicePort returns the Service's first port of protocol proto (TCP when empty).
func servicePort(svc *corev1.Service, proto string) corev1.ServicePort {
	if proto == "" {
		proto = "TCP"
	}
	for _, p := range svc.Spec.Ports {
		if string(p.Protocol) == proto {
			return p
		}
	}
	return svc.Spec.Ports[0]
}

func sortedAddrs(m map[netip.Addr]bool) []netip.Addr {
	out := slices.Collect(maps.Keys(m))
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// ServiceSetup is one Service of a scenario: the object, its endpoints and its load
// balancer ingress IPs.
type ServiceSetup struct {
	Svc      *corev1.Service
	Backends []env.Backend
	LB       []string
	// TargetPorts maps Service port names to the pods' port they target (default
	// env.ServerPort), e.g. an echo server's port.
	TargetPorts map[string]int32
}

// Scenario is a set of Services and the flows they must produce.
type Scenario struct {
	Name     string
	Services []ServiceSetup
	Flows    []Flow
	// HealthChecks are the healthCheckNodePort answers the scenario must produce.
	HealthChecks []HealthCheck
}

// apply creates a scenario's objects in its own namespace and waits until portico has
// programmed them; it returns the stored Services by name.
func apply(ctx context.Context, t *testing.T, sc Scenario) map[string]*corev1.Service {
	t.Helper()
	ns := namespaceFor(sc.Name)
	since := time.Now()
	svcs := map[string]*corev1.Service{}
	for _, s := range sc.Services {
		in := s.Svc.DeepCopy()
		in.Namespace = ns
		got, err := suite.ApplyService(ctx, in)
		if err != nil {
			t.Fatalf("creating Service %s: %v", in.Name, err)
		}
		if len(s.LB) > 0 {
			if got, err = suite.SetLoadBalancerIngress(ctx, got, s.LB...); err != nil {
				t.Fatalf("setting the load balancer status of %s: %v", in.Name, err)
			}
		}
		if s.Backends != nil {
			if err := suite.SetEndpointsPorts(ctx, got, s.Backends, s.TargetPorts); err != nil {
				t.Fatalf("writing EndpointSlices of %s: %v", in.Name, err)
			}
		}
		svcs[in.Name] = got
	}
	waitProgrammed(ctx, t, since)
	t.Cleanup(func() { removeAll(t, ns, svcs) })
	return svcs
}

func waitProgrammed(ctx context.Context, t *testing.T, since time.Time) {
	t.Helper()
	if err := suite.Portico.WaitProgrammed(ctx, since); err != nil {
		t.Fatal(err)
	}
}

func removeAll(t *testing.T, ns string, svcs map[string]*corev1.Service) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	since := time.Now()
	for name := range svcs {
		if err := suite.DeleteService(ctx, ns, name); err != nil {
			t.Errorf("deleting %s/%s: %v", ns, name, err)
		}
	}
	if err := suite.Portico.WaitProgrammed(ctx, since); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

func namespaceFor(name string) string {
	s := strings.ToLower(name)
	s = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, s)
	return strings.Trim(s, "-")
}

// runScenario applies a scenario and runs each of its flows as a subtest.
func runScenario(ctx context.Context, t *testing.T, sc Scenario) {
	t.Helper()
	svcs := apply(ctx, t, sc)
	for _, f := range sc.Flows {
		t.Run(f.Name, func(t *testing.T) { runFlow(ctx, t, svcs, f) })
	}
	for _, hc := range sc.HealthChecks {
		t.Run(hc.Name, func(t *testing.T) { runHealthCheck(ctx, t, svcs, hc) })
	}
}
