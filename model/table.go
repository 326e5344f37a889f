package model

import (
	"iter"
	"maps"
	"net/netip"
	"slices"
)

// LocalTraffic says how to recognise traffic that comes from pods (kube-proxy's
// detectLocalMode). Traffic that does not is masqueraded on its way to a ClusterIP. At most
// one of the fields is set; none set means local traffic cannot be told apart.
type LocalTraffic struct {
	// CIDRs are pod address ranges of this family (ClusterCIDR or NodeCIDR mode).
	CIDRs []netip.Prefix
	// BridgeInterface is the bridge that pod traffic arrives on (BridgeInterface mode).
	BridgeInterface string
	// InterfacePrefix is the name prefix of pod interfaces (InterfaceNamePrefix mode).
	InterfacePrefix string
}

// Detects reports whether local traffic can be told apart at all.
func (l LocalTraffic) Detects() bool {
	return len(l.CIDRs) > 0 || l.BridgeInterface != "" || l.InterfacePrefix != ""
}

func (l LocalTraffic) equal(o LocalTraffic) bool {
	return slices.Equal(l.CIDRs, o.CIDRs) && l.BridgeInterface == o.BridgeInterface &&
		l.InterfacePrefix == o.InterfacePrefix
}

// Node holds what the rules of every Service port depend on: this node and the
// cluster-wide settings. When it changes between two Tables, the next sync is a full one.
type Node struct {
	// Name is the node's name.
	Name string
	// Addrs are the addresses of this family assigned to the node's interfaces (link-local
	// IPv6 addresses excepted), sorted: the addresses a NodePort frontend with
	// AnyLocalAddr stands for when the Table was compiled.
	Addrs []netip.Addr
	// LocalTraffic recognises pod traffic (for MasqueradeOffCluster and ExternalFromPods).
	LocalTraffic LocalTraffic
	// ServiceCIDRs are the cluster's Service IP ranges of this family (from the
	// ServiceCIDR objects), sorted. New connections to an address inside them that is not
	// a ClusterIP frontend of the Table are dropped; empty means nothing extra is dropped.
	ServiceCIDRs []netip.Prefix
}

// Equal reports whether two Node values are the same.
func (n Node) Equal(o Node) bool {
	return n.Name == o.Name && slices.Equal(n.Addrs, o.Addrs) && n.LocalTraffic.equal(o.LocalTraffic) &&
		slices.Equal(n.ServiceCIDRs, o.ServiceCIDRs)
}

// Table is the desired dataplane of one IP family: the node settings and every Service port.
// A Table is immutable; Update returns a new Table that shares the unchanged ports.
type Table struct {
	family Family
	node   Node
	ports  map[ServicePortName]*ServicePort
}

// NewTable returns an empty Table.
func NewTable(family Family, node Node) *Table {
	return &Table{family: family, node: node, ports: map[ServicePortName]*ServicePort{}}
}

// Family returns the table's IP family.
func (t *Table) Family() Family { return t.family }

// Node returns the node settings.
func (t *Table) Node() Node { return t.node }

// Len returns the number of Service ports.
func (t *Table) Len() int { return len(t.ports) }

// Get returns the Service port with that name.
func (t *Table) Get(name ServicePortName) (*ServicePort, bool) {
	sp, ok := t.ports[name]
	return sp, ok
}

// Names returns every Service port name, sorted.
func (t *Table) Names() []ServicePortName {
	names := slices.Collect(maps.Keys(t.ports))
	slices.SortFunc(names, ServicePortName.Compare)
	return names
}

// All yields every Service port in name order.
func (t *Table) All() iter.Seq[*ServicePort] {
	return func(yield func(*ServicePort) bool) {
		for _, n := range t.Names() {
			if !yield(t.ports[n]) {
				return
			}
		}
	}
}

// Update returns a copy of t with node settings node, the ports in set added or replaced
// (each must be sealed) and the ports named in remove deleted.
func (t *Table) Update(node Node, set []*ServicePort, remove []ServicePortName) *Table {
	next := &Table{family: t.family, node: node, ports: make(map[ServicePortName]*ServicePort, len(t.ports)+len(set))}
	maps.Copy(next.ports, t.ports)
	for _, n := range remove {
		delete(next.ports, n)
	}
	for _, sp := range set {
		next.ports[sp.Name] = sp
	}
	return next
}

// ExternalNamePort is one port of an ExternalName Service.
type ExternalNamePort struct {
	Name     string
	Port     uint16
	Protocol Protocol
}

// ExternalName is a Service of type ExternalName: a DNS alias with no frontends and no
// dataplane rules. It is part of the model so that dumps and tests see it.
type ExternalName struct {
	Service ServiceName
	// Target is spec.externalName.
	Target string
	Ports  []ExternalNamePort
}

// State is the whole desired state: one Table per enabled family and the ExternalName
// Services.
type State struct {
	// Tables holds one Table per enabled family, IPv4 first.
	Tables []*Table
	// ExternalNames are sorted by Service name.
	ExternalNames []ExternalName
}

// Table returns the Table of family f, or nil.
func (s *State) Table(f Family) *Table {
	for _, t := range s.Tables {
		if t.family == f {
			return t
		}
	}
	return nil
}
