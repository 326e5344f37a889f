package model

import (
	"hash/maphash"
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
//
// The ports are spread over shardCount maps by a hash of their Service's name. Update
// copies only the shards it changes and Compare skips the shards two Tables share, so a
// sync of one changed Service costs about the same with 50,000 Services as with 100
// (copying one map of every port made each sync allocate and scan them all: 50 to 200 ms
// per sync at 50,000 Services on two cores, most of it in the garbage collector).
type Table struct {
	family Family
	node   Node
	shards [shardCount]*portShard
	n      int
}

// shardCount is the number of shards of a Table (about 200 ports each at 50,000).
const shardCount = 256

// portShard is one shard of a Table's ports; shared by Tables until one changes it.
type portShard struct {
	m map[ServicePortName]*ServicePort
}

// ports returns the shard's map (nil for a nil shard: reads of a nil map are empty).
func (s *portShard) ports() map[ServicePortName]*ServicePort {
	if s == nil {
		return nil
	}
	return s.m
}

// shardSeed makes shardOf stable for the life of the process.
var shardSeed = maphash.MakeSeed()

// shardOf returns the shard of a port: that of its Service, so that all the ports of one
// Service are in one shard.
func shardOf(n ServicePortName) int {
	var h maphash.Hash
	h.SetSeed(shardSeed)
	h.WriteString(n.Namespace)
	h.WriteByte('/')
	h.WriteString(n.Name)
	return int(h.Sum64() % shardCount)
}

// NewTable returns an empty Table.
func NewTable(family Family, node Node) *Table {
	return &Table{family: family, node: node}
}

// Family returns the table's IP family.
func (t *Table) Family() Family { return t.family }

// Node returns the node settings.
func (t *Table) Node() Node { return t.node }

// Len returns the number of Service ports.
func (t *Table) Len() int { return t.n }

// Get returns the Service port with that name.
func (t *Table) Get(name ServicePortName) (*ServicePort, bool) {
	sp, ok := t.shards[shardOf(name)].ports()[name]
	return sp, ok
}

// Names returns every Service port name, sorted.
func (t *Table) Names() []ServicePortName {
	names := make([]ServicePortName, 0, t.n)
	for _, s := range t.shards {
		for n := range s.ports() {
			names = append(names, n)
		}
	}
	slices.SortFunc(names, ServicePortName.Compare)
	return names
}

// All yields every Service port in name order.
func (t *Table) All() iter.Seq[*ServicePort] {
	return func(yield func(*ServicePort) bool) {
		for _, n := range t.Names() {
			sp, _ := t.Get(n)
			if !yield(sp) {
				return
			}
		}
	}
}

// Update returns a copy of t with node settings node, the ports in set added or replaced
// (each must be sealed) and the ports named in remove deleted. It copies only the shards
// it changes.
func (t *Table) Update(node Node, set []*ServicePort, remove []ServicePortName) *Table {
	next := &Table{family: t.family, node: node, shards: t.shards, n: t.n}
	var copied [shardCount]bool
	writable := func(i int) map[ServicePortName]*ServicePort {
		if !copied[i] {
			old := next.shards[i].ports()
			next.shards[i] = &portShard{m: make(map[ServicePortName]*ServicePort, len(old)+1)}
			maps.Copy(next.shards[i].m, old)
			copied[i] = true
		}
		return next.shards[i].m
	}
	for _, n := range remove {
		i := shardOf(n)
		if _, ok := next.shards[i].ports()[n]; ok {
			delete(writable(i), n)
			next.n--
		}
	}
	for _, sp := range set {
		m := writable(shardOf(sp.Name))
		if _, ok := m[sp.Name]; !ok {
			next.n++
		}
		m[sp.Name] = sp
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
