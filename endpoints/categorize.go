package endpoints

import (
	"slices"

	"github.com/portico-dev/portico/model"
)

// Sets says which endpoint sets of a Service port to compute: the ones its traffic classes
// use (model.ServicePort.Internal, External, ...). Compile decides that from the traffic
// policies; Categorize only fills the sets.
type Sets struct {
	// Cluster asks for the cluster-wide set.
	Cluster bool
	// Local asks for the node-local set.
	Local bool
}

// Topology is this node's place in the cluster.
type Topology struct {
	// NodeName is this node's name.
	NodeName string
	// Zone is this node's topology.kubernetes.io/zone label ("" if unset).
	Zone string
}

// Result is the outcome of Categorize.
type Result struct {
	// Cluster are the endpoints for cluster-wide traffic, topology applied, sorted. Nil
	// when not asked for; non-nil (possibly empty) otherwise.
	Cluster []model.Endpoint
	// Local are the endpoints on this node for node-local traffic, sorted. Nil when not
	// asked for; non-nil (possibly empty) otherwise.
	Local []model.Endpoint
	// HasAny reports whether a usable (ready, or serving and terminating) endpoint exists
	// anywhere in the cluster.
	HasAny bool
}

// Categorize chooses the endpoints of the sets want names for one Service port, as
// kube-proxy does.
//
// The cluster set holds the ready endpoints, narrowed down by topology hints (see
// topologyFor); when there is no ready endpoint at all, it holds the endpoints that are
// serving and terminating instead, without topology. The local set holds the ready
// endpoints on this node or, when there are none, the local serving and terminating
// ones. Endpoints that are terminating but no longer serving are never used. eps is not
// modified.
func Categorize(eps []Endpoint, want Sets, topo Topology) Result {
	var r Result
	if want.Cluster {
		r.Cluster = clusterEndpoints(eps, topo)
	}
	if want.Local {
		r.Local = localEndpoints(eps)
	}
	r.HasAny = slices.ContainsFunc(eps, Endpoint.usable)
	return r
}

// clusterEndpoints returns the cluster set: ready endpoints allowed by topology, or the
// serving and terminating ones when no endpoint is ready. Never nil.
func clusterEndpoints(eps []Endpoint, topo Topology) []model.Endpoint {
	allowed := topologyFor(eps, topo)
	out := pick(eps, func(e Endpoint) bool { return e.Ready && allowed(e) })
	if len(out) == 0 {
		out = pick(eps, Endpoint.servingTerminating)
	}
	return out
}

// localEndpoints returns the local set: ready endpoints on this node, or the local
// serving and terminating ones when none is ready. Never nil.
func localEndpoints(eps []Endpoint) []model.Endpoint {
	out := pick(eps, func(e Endpoint) bool { return e.Local && e.Ready })
	if len(out) == 0 {
		out = pick(eps, func(e Endpoint) bool { return e.Local && e.servingTerminating() })
	}
	return out
}

// pick returns copies of the endpoints that keep accepts, sorted by address and port.
// The result is never nil.
func pick(eps []Endpoint, keep func(Endpoint) bool) []model.Endpoint {
	n := 0
	for _, e := range eps {
		if keep(e) {
			n++
		}
	}
	// Exactly sized: the model holds these for every Service port.
	out := make([]model.Endpoint, 0, n)
	for _, e := range eps {
		if keep(e) {
			out = append(out, e.Endpoint)
		}
	}
	slices.SortFunc(out, compareModel)
	return out
}

// topologyFor returns the filter that topology hints impose on ready endpoints. Only
// ready endpoints are looked at:
//
//   - if every one has a node hint and at least one is hinted for this node, only the
//     endpoints hinted for this node are allowed (PreferSameNode);
//   - otherwise, if every one has a zone hint and at least one is hinted for this node's
//     zone, only the endpoints hinted for that zone are allowed (PreferSameZone and
//     PreferClose);
//   - otherwise every endpoint is allowed.
//
// The fallback to serving and terminating endpoints never applies topology.
func topologyFor(eps []Endpoint, topo Topology) func(Endpoint) bool {
	nodeHints := func(e Endpoint) []string { return e.NodeHints }
	zoneHints := func(e Endpoint) []string { return e.ZoneHints }
	switch {
	case hintsSelect(eps, nodeHints, topo.NodeName):
		return func(e Endpoint) bool { return slices.Contains(e.NodeHints, topo.NodeName) }
	case hintsSelect(eps, zoneHints, topo.Zone):
		return func(e Endpoint) bool { return slices.Contains(e.ZoneHints, topo.Zone) }
	}
	return func(Endpoint) bool { return true }
}

// hintsSelect reports whether the hints returned by hints can be followed for target:
// there is a ready endpoint, every ready endpoint has at least one hint, and at least one
// ready endpoint is hinted for target.
func hintsSelect(eps []Endpoint, hints func(Endpoint) []string, target string) bool {
	found := false
	for _, e := range eps {
		if !e.Ready {
			continue
		}
		h := hints(e)
		if len(h) == 0 {
			return false
		}
		found = found || slices.Contains(h, target)
	}
	return found
}
