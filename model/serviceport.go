package model

import (
	"net/netip"
	"slices"
)

// ServicePort is everything the dataplane needs to know about one port of one Service in
// one IP family. A ServicePort in a Table is immutable: build a new one to change it.
type ServicePort struct {
	Name ServicePortName
	// Frontends are the addresses and ports the Service port answers on, sorted.
	Frontends []Frontend

	// Cluster are the endpoints usable for cluster-policy traffic (topology already
	// applied), sorted. Nil when no traffic of this port follows a Cluster policy.
	Cluster []Endpoint
	// Local are the endpoints on this node usable for local-policy traffic, sorted. Nil
	// when no traffic of this port follows a Local policy.
	Local []Endpoint
	// HasAnyEndpoints reports whether the Service has a usable endpoint anywhere in the
	// cluster, even if none of them is in Cluster or Local (it turns a Reject into a Drop).
	HasAnyEndpoints bool

	// InternalLocal is internalTrafficPolicy: Local (ClusterIP traffic uses Local).
	InternalLocal bool
	// ExternalLocal is externalTrafficPolicy: Local on a port that has external
	// frontends: external clients keep their source address and only Local endpoints serve
	// them, while traffic from this node and from local pods short-circuits to Cluster.
	ExternalLocal bool

	// Affinity is the ClientIP session affinity.
	Affinity Affinity
	// SourceRanges are the loadBalancerSourceRanges of this family; when non-empty, only
	// clients inside one of them may reach the LoadBalancer frontends.
	SourceRanges []netip.Prefix
	// HealthCheckNodePort is the port of the node's health check server for an
	// externalTrafficPolicy: Local LoadBalancer Service; 0 when there is none.
	HealthCheckNodePort uint16

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
	for _, f := range sp.Frontends {
		if f.Kind.External() {
			return true
		}
	}
	return false
}

// HasInternal reports whether the port has a ClusterIP frontend.
func (sp *ServicePort) HasInternal() bool {
	for _, f := range sp.Frontends {
		if f.Kind == ClusterIP {
			return true
		}
	}
	return false
}

// InternalEndpoints are the endpoints that serve ClusterIP traffic.
func (sp *ServicePort) InternalEndpoints() []Endpoint {
	if sp.InternalLocal {
		return sp.Local
	}
	return sp.Cluster
}

// ExternalEndpoints are the endpoints that serve external clients. (With ExternalLocal,
// traffic from this node and from local pods uses Cluster instead; see ShortCircuit.)
func (sp *ServicePort) ExternalEndpoints() []Endpoint {
	if sp.ExternalLocal {
		return sp.Local
	}
	return sp.Cluster
}

// ShortCircuit reports whether external-frontend traffic that comes from this node or from
// a local pod goes to the Cluster endpoints (masqueraded when it comes from the node)
// instead of being limited to Local endpoints. True exactly when ExternalLocal is.
func (sp *ServicePort) ShortCircuit() bool { return sp.ExternalLocal }

// InternalVerdict says what happens to ClusterIP traffic.
func (sp *ServicePort) InternalVerdict() Verdict {
	return sp.verdict(sp.InternalEndpoints(), sp.InternalLocal)
}

// ExternalVerdict says what happens to traffic from external clients.
func (sp *ServicePort) ExternalVerdict() Verdict {
	return sp.verdict(sp.ExternalEndpoints(), sp.ExternalLocal)
}

func (sp *ServicePort) verdict(eps []Endpoint, local bool) Verdict {
	switch {
	case len(eps) > 0:
		return Forward
	case local && sp.HasAnyEndpoints:
		return Drop
	default:
		return Reject
	}
}

// FrontendVerdict says what happens to new connections to f (one of sp.Frontends).
func (sp *ServicePort) FrontendVerdict(f Frontend) Verdict {
	if f.Kind.External() {
		return sp.ExternalVerdict()
	}
	return sp.InternalVerdict()
}

// UsesCluster reports whether any traffic of this port is served by Cluster endpoints.
func (sp *ServicePort) UsesCluster() bool {
	return !sp.InternalLocal || sp.HasExternal()
}

// UsesLocal reports whether any traffic of this port is served by Local endpoints.
func (sp *ServicePort) UsesLocal() bool {
	return sp.InternalLocal || sp.ExternalLocal
}

// ForwardedEndpoints returns the union of Cluster and Local endpoints, sorted: every
// endpoint this node may forward traffic of the port to.
func (sp *ServicePort) ForwardedEndpoints() []Endpoint {
	out := make([]Endpoint, 0, len(sp.Cluster)+len(sp.Local))
	out = append(out, sp.Cluster...)
	for _, e := range sp.Local {
		if _, found := slices.BinarySearchFunc(sp.Cluster, e, Endpoint.compare); !found {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, Endpoint.compare)
	return out
}
