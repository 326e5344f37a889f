package model

import (
	"net/netip"
	"slices"
)

// ServicePort is everything the dataplane needs to know about one port of one Service in
// one IP family. A ServicePort in a Table is immutable: build a new one to change it.
//
// Every policy decision is a field: the frontends that exist, the two endpoint sets, and
// for each class of traffic (Internal, External, ExternalFromPods, ExternalFromNode) which
// set serves it, whether it is masqueraded and what happens while the set is empty. A
// backend maps these fields to kernel objects and decides nothing itself.
type ServicePort struct {
	Name ServicePortName
	// Frontends are the addresses and ports the Service port answers on, sorted.
	Frontends []Frontend

	// Cluster are the endpoints that serve cluster-wide traffic (topology already
	// applied), sorted. Nil when no class uses them.
	Cluster []Endpoint
	// Local are the endpoints on this node that serve node-local traffic, sorted. Nil
	// when neither a class nor the health check (HealthCheckNodePort) uses them.
	Local []Endpoint

	// Internal is traffic to the ClusterIP frontend, from any source.
	Internal Traffic
	// External is traffic to external frontends from other hosts; zero when the port has
	// no external frontend.
	External Traffic
	// ExternalFromPods is traffic to external frontends from pods on this node. Equal to
	// External unless pods are handled differently (externalTrafficPolicy: Local
	// short-circuits them to the cluster endpoints), which compile only decides when
	// Node.LocalTraffic can recognise pods. Its Empty is always External's.
	ExternalFromPods Traffic
	// ExternalFromNode is traffic to external frontends that this node sends itself.
	// Equal to External unless the node is handled differently; its Empty is always
	// External's.
	ExternalFromNode Traffic

	// Hairpin are the addresses of this node's endpoints that some class forwards to,
	// sorted: a connection from one of them that is sent back to itself is masqueraded,
	// so that the endpoint sees a peer it can answer.
	Hairpin []netip.Addr

	// Affinity is the ClientIP session affinity.
	Affinity Affinity
	// SourceRanges are the sources of this family allowed to reach the LoadBalancer
	// frontends (loadBalancerSourceRanges, plus the load balancer's own ingress IPs);
	// empty means every source is allowed.
	SourceRanges []netip.Prefix
	// HealthCheckNodePort is the port of the node's health check server for an
	// externalTrafficPolicy: Local LoadBalancer Service; 0 when there is none.
	HealthCheckNodePort uint16
	// Scheduler is the IPVS scheduler the Service asks for with the annotation
	// portico.dev/ipvs-scheduler, one of IPVSSchedulers; empty means the configured
	// default. Only the ipvs mode reads it.
	Scheduler string

	// Hash identifies the content above; equal hashes mean equal rules. Set by Seal.
	Hash uint64
}

// Seal sorts the port's lists, computes its Hash and returns it. Call it once, after
// filling the fields and before putting the port into a Table.
func (sp *ServicePort) Seal() *ServicePort {
	slices.SortFunc(sp.Frontends, Frontend.compare)
	sp.Frontends = slices.Compact(sp.Frontends)
	slices.SortFunc(sp.Cluster, Endpoint.compare)
	slices.SortFunc(sp.Local, Endpoint.compare)
	slices.SortFunc(sp.Hairpin, netip.Addr.Compare)
	sp.Hairpin = slices.Compact(sp.Hairpin)
	slices.SortFunc(sp.SourceRanges, comparePrefix)
	sp.SourceRanges = slices.Compact(sp.SourceRanges)
	sp.Hash = sp.computeHash()
	return sp
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// HasExternal reports whether the port has any external frontend.
func (sp *ServicePort) HasExternal() bool {
	return slices.ContainsFunc(sp.Frontends, func(f Frontend) bool { return f.Kind.External() })
}

// Traffic returns how class c is handled.
func (sp *ServicePort) Traffic(c Class) Traffic {
	switch c {
	case Internal:
		return sp.Internal
	case External:
		return sp.External
	case ExternalFromPods:
		return sp.ExternalFromPods
	case ExternalFromNode:
		return sp.ExternalFromNode
	}
	return Traffic{}
}

// Endpoints returns the endpoints of set s.
func (sp *ServicePort) Endpoints(s EndpointSet) []Endpoint {
	switch s {
	case ClusterEndpoints:
		return sp.Cluster
	case LocalEndpoints:
		return sp.Local
	}
	return nil
}

// Verdict says what happens to new connections of class c: Forward while its endpoint set
// has endpoints, else the class's Empty verdict.
func (sp *ServicePort) Verdict(c Class) Verdict {
	t := sp.Traffic(c)
	if !t.Exists() {
		return 0
	}
	if len(sp.Endpoints(t.Endpoints)) > 0 {
		return Forward
	}
	return t.Empty
}

// FrontendClasses returns the classes of traffic that frontend f receives: Internal for a
// ClusterIP, the three external classes (specific sources first) for the others.
func (sp *ServicePort) FrontendClasses(f Frontend) []Class {
	if f.Kind.External() {
		return []Class{ExternalFromPods, ExternalFromNode, External}
	}
	return []Class{Internal}
}

// ExternalUniform reports whether the three external classes are handled alike, so that
// a backend needs no test of the source address for external frontends.
func (sp *ServicePort) ExternalUniform() bool {
	return sp.ExternalFromPods == sp.External && sp.ExternalFromNode == sp.External
}

// ServedBy returns every endpoint that new connections to frontend f may be sent to (the
// endpoint sets of its classes that forward), sorted.
func (sp *ServicePort) ServedBy(f Frontend) []Endpoint {
	var out []Endpoint
	var seen []EndpointSet
	for _, c := range sp.FrontendClasses(f) {
		s := sp.Traffic(c).Endpoints
		if slices.Contains(seen, s) || sp.Verdict(c) != Forward {
			continue
		}
		seen = append(seen, s)
		out = append(out, sp.Endpoints(s)...)
	}
	slices.SortFunc(out, Endpoint.compare)
	return slices.CompactFunc(out, func(a, b Endpoint) bool { return a.compare(b) == 0 })
}

// BaseMasquerade returns the least masquerading among the classes of sp that forward to
// endpoint set s (0 when none does): what a backend's DNAT rules for s can do for every
// class, leaving a class that masquerades more to mark its packets before.
func (sp *ServicePort) BaseMasquerade(s EndpointSet) Masquerade {
	var out Masquerade
	for _, c := range Classes {
		t := sp.Traffic(c)
		if t.Endpoints != s || sp.Verdict(c) != Forward {
			continue
		}
		if out == 0 || !t.Masquerade.Covers(out) {
			out = t.Masquerade
		}
	}
	return out
}
