package compile

import (
	"net/netip"

	"github.com/portico-dev/portico/endpoints"
	"github.com/portico-dev/portico/model"
)

// portPolicy is what the traffic policies of one Service port decide before its endpoints
// are known: the traffic classes, each without its Empty verdict.
type portPolicy struct {
	internalLocal, externalLocal bool
}

// policy decides the traffic classes of sp: which endpoint set serves each class and what
// is masqueraded. This is the one place where portico interprets internalTrafficPolicy,
// externalTrafficPolicy, masqueradeAll and the local-traffic detection.
//
//   - Internal (ClusterIP) traffic uses the local set with internalTrafficPolicy Local,
//     else the cluster set; it is masqueraded always with masqueradeAll, else when it does
//     not come from a pod (if pods can be recognised at all), else never.
//   - External traffic with externalTrafficPolicy Cluster uses the cluster set and is
//     always masqueraded, whatever its source.
//   - With externalTrafficPolicy Local, external clients reach only this node's
//     endpoints and keep their address; pods on this node are short-circuited to the
//     cluster set without masquerade (masqueradeAll does not apply to external
//     frontends); the node itself is short-circuited to the cluster set and masqueraded
//     (its source address would not route back from another node's pod otherwise).
func (c *serviceCompiler) policy(sp *model.ServicePort, fam model.Family, s shared) portPolicy {
	lt := c.node.Tables[fam].LocalTraffic
	pol := portPolicy{internalLocal: s.internalLocal, externalLocal: s.externalLocal}
	sp.Internal = model.Traffic{Endpoints: model.ClusterEndpoints, Masquerade: model.MasqueradeNever}
	if pol.internalLocal {
		sp.Internal.Endpoints = model.LocalEndpoints
	}
	switch {
	case c.node.MasqueradeAll:
		sp.Internal.Masquerade = model.MasqueradeAlways
	case lt.Detects():
		sp.Internal.Masquerade = model.MasqueradeOffCluster
	}
	if !sp.HasExternal() {
		return pol
	}
	if !pol.externalLocal {
		sp.External = model.Traffic{Endpoints: model.ClusterEndpoints, Masquerade: model.MasqueradeAlways}
		sp.ExternalFromPods, sp.ExternalFromNode = sp.External, sp.External
		return pol
	}
	sp.External = model.Traffic{Endpoints: model.LocalEndpoints, Masquerade: model.MasqueradeNever}
	sp.ExternalFromPods = sp.External
	if lt.Detects() {
		sp.ExternalFromPods = model.Traffic{Endpoints: model.ClusterEndpoints, Masquerade: model.MasqueradeNever}
	}
	sp.ExternalFromNode = model.Traffic{Endpoints: model.ClusterEndpoints, Masquerade: model.MasqueradeAlways}
	return pol
}

// categorize fills the endpoint sets the classes of sp use, the classes' Empty verdicts
// and the hairpin addresses.
func (pol portPolicy) categorize(sp *model.ServicePort, eps []endpoints.Endpoint, topo endpoints.Topology) {
	// The health check reports the local set's size, even where no class uses it yet.
	want := endpoints.Sets{Local: sp.HealthCheckNodePort != 0}
	for _, cl := range model.Classes {
		switch sp.Traffic(cl).Endpoints {
		case model.ClusterEndpoints:
			want.Cluster = true
		case model.LocalEndpoints:
			want.Local = true
		}
	}
	res := endpoints.Categorize(eps, want, topo)
	sp.Cluster, sp.Local = res.Cluster, res.Local
	sp.Internal.Empty = emptyVerdict(pol.internalLocal, res.HasAny)
	if sp.External.Exists() {
		sp.External.Empty = emptyVerdict(pol.externalLocal, res.HasAny)
		sp.ExternalFromPods.Empty = sp.External.Empty
		sp.ExternalFromNode.Empty = sp.External.Empty
	}
	sp.Hairpin = hairpin(sp)
}

// emptyVerdict is what happens to a class whose endpoint set is empty: a Local policy
// drops while other nodes have endpoints (so that a load balancer's health check steers
// clients elsewhere instead of them being refused), everything else is rejected.
func emptyVerdict(local, hasAny bool) model.Verdict {
	if local && hasAny {
		return model.Drop
	}
	return model.Reject
}

// hairpin returns the addresses of the local endpoints of the sets in use.
func hairpin(sp *model.ServicePort) []netip.Addr {
	var out []netip.Addr
	for _, set := range [][]model.Endpoint{sp.Cluster, sp.Local} {
		for _, e := range set {
			if e.Local {
				out = append(out, e.Addr)
			}
		}
	}
	return out
}
