package model

import (
	"net/netip"
	"slices"
	"testing"
)

// TestCompare checks that node-wide changes (addresses, Service CIDRs, pod detection)
// make the diff full, and that port changes are named.
func TestCompare(t *testing.T) {
	node := Node{
		Name:         "n",
		Addrs:        []netip.Addr{netip.MustParseAddr("192.168.50.10")},
		LocalTraffic: LocalTraffic{CIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}},
		ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/16")},
	}
	port := func(name string, eps ...string) *ServicePort {
		sp := &ServicePort{
			Name:      ServicePortName{Namespace: "ns", Name: name, Protocol: TCP},
			Frontends: []Frontend{{Kind: ClusterIP, Addr: netip.MustParseAddr("10.96.0.1"), Port: 80}},
			Cluster:   []Endpoint{},
			Internal:  Traffic{Endpoints: ClusterEndpoints, Masquerade: MasqueradeOffCluster, Empty: Reject},
		}
		for _, e := range eps {
			sp.Cluster = append(sp.Cluster, Endpoint{Addr: netip.MustParseAddr(e), Port: 8080, Ready: true, Serving: true})
		}
		return sp.Seal()
	}
	prev := NewTable(IPv4, node).Update(node, []*ServicePort{port("a", "10.244.1.10"), port("b")}, nil)
	if d := Compare(prev, prev.Update(node, nil, nil)); !d.Empty() {
		t.Errorf("unchanged table: diff %+v, want empty", d)
	}
	d := Compare(prev, prev.Update(node, []*ServicePort{port("a", "10.244.1.11")}, []ServicePortName{port("b").Name}))
	if d.Full || !slices.Equal(d.Changed, []ServicePortName{port("a").Name}) || !slices.Equal(d.Removed, []ServicePortName{port("b").Name}) {
		t.Errorf("changed endpoint and removed port: diff %+v", d)
	}
	changes := map[string]func(*Node){
		"an address":      func(n *Node) { n.Addrs = append(n.Addrs, netip.MustParseAddr("10.244.1.1")) },
		"a Service CIDR":  func(n *Node) { n.ServiceCIDRs = nil },
		"the pod ranges":  func(n *Node) { n.LocalTraffic = LocalTraffic{BridgeInterface: "cni0"} },
		"the node's name": func(n *Node) { n.Name = "m" },
	}
	for what, change := range changes {
		next := node
		next.Addrs = slices.Clone(node.Addrs)
		change(&next)
		if d := Compare(prev, prev.Update(next, nil, nil)); !d.Full {
			t.Errorf("a change of %s: diff %+v, want full", what, d)
		}
	}
}
