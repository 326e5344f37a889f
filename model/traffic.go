package model

import "strconv"

// EndpointSet names one of the two endpoint sets of a Service port.
type EndpointSet uint8

const (
	// ClusterEndpoints are the endpoints anywhere in the cluster that serve cluster-wide
	// traffic (ServicePort.Cluster).
	ClusterEndpoints EndpointSet = iota + 1
	// LocalEndpoints are the endpoints on this node that serve node-local traffic
	// (ServicePort.Local).
	LocalEndpoints
)

// String returns "cluster" or "local".
func (s EndpointSet) String() string {
	switch s {
	case ClusterEndpoints:
		return "cluster"
	case LocalEndpoints:
		return "local"
	}
	return "EndpointSet(" + strconv.Itoa(int(s)) + ")"
}

// Masquerade says when the source address of a class of traffic is rewritten to an address
// of this node on its way to an endpoint.
type Masquerade uint8

const (
	// MasqueradeNever keeps the client's address.
	MasqueradeNever Masquerade = iota + 1
	// MasqueradeAlways rewrites the source of every connection.
	MasqueradeAlways
	// MasqueradeOffCluster rewrites the source of connections that do not come from a pod,
	// as Node.LocalTraffic recognises pods. It is only used when LocalTraffic detects
	// something.
	MasqueradeOffCluster
)

// String returns "never", "always" or "off-cluster".
func (m Masquerade) String() string {
	switch m {
	case MasqueradeNever:
		return "never"
	case MasqueradeAlways:
		return "always"
	case MasqueradeOffCluster:
		return "off-cluster"
	}
	return "Masquerade(" + strconv.Itoa(int(m)) + ")"
}

// Traffic is how one class of traffic to a Service port is handled: which endpoint set
// serves it, whether it is masqueraded, and what happens to new connections while that set
// is empty. A zero Traffic (Endpoints 0) means the class does not exist for the port (the
// external classes of a port without external frontends).
type Traffic struct {
	// Endpoints names the set that serves the class.
	Endpoints EndpointSet
	// Masquerade says when the class is masqueraded.
	Masquerade Masquerade
	// Empty is Reject or Drop: what happens to new connections of the class while its
	// endpoint set is empty.
	Empty Verdict
}

// Exists reports whether the class exists for its port.
func (t Traffic) Exists() bool { return t.Endpoints != 0 }

// String returns "endpoints=<set> masquerade=<when> empty=<verdict>".
func (t Traffic) String() string {
	if !t.Exists() {
		return "none"
	}
	return "endpoints=" + t.Endpoints.String() + " masquerade=" + t.Masquerade.String() + " empty=" + t.Empty.String()
}

// Class names a class of traffic to a Service port: by the kind of frontend it is sent to
// and, for external frontends, by where it comes from.
type Class uint8

const (
	// Internal is traffic to ClusterIP frontends, from any source.
	Internal Class = iota + 1
	// External is traffic to external frontends (NodePort, external IP, LoadBalancer) from
	// sources that are neither a pod on this node nor this node itself.
	External
	// ExternalFromPods is traffic to external frontends from pods on this node (as
	// Node.LocalTraffic recognises them).
	ExternalFromPods
	// ExternalFromNode is traffic to external frontends that this node sends itself.
	ExternalFromNode
)

// Classes lists every class, in the order a backend tests them for one packet to an
// external frontend (the specific sources before External).
var Classes = []Class{Internal, ExternalFromPods, ExternalFromNode, External}

// String returns the class's name.
func (c Class) String() string {
	switch c {
	case Internal:
		return "internal"
	case External:
		return "external"
	case ExternalFromPods:
		return "external from pods"
	case ExternalFromNode:
		return "external from node"
	}
	return "Class(" + strconv.Itoa(int(c)) + ")"
}

// rank orders masquerade settings by how many packets they masquerade: each masquerades
// every packet the ones before it do.
func (m Masquerade) rank() int {
	switch m {
	case MasqueradeOffCluster:
		return 1
	case MasqueradeAlways:
		return 2
	}
	return 0
}

// Covers reports whether m masquerades every packet that o masquerades (never < off-cluster
// < always).
func (m Masquerade) Covers(o Masquerade) bool { return m.rank() >= o.rank() }
