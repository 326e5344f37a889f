package model

import (
	"net/netip"
	"strings"
	"testing"
)

// TestCheck breaks one guarantee at a time and expects Check to name it.
func TestCheck(t *testing.T) {
	ep := Endpoint{Addr: netip.MustParseAddr("10.244.1.10"), Port: 8080, Local: true, Ready: true, Serving: true}
	good := func() *ServicePort {
		cl := Traffic{Endpoints: ClusterEndpoints, Masquerade: MasqueradeAlways, Empty: Reject}
		return &ServicePort{
			Name:      ServicePortName{Namespace: "ns", Name: "svc", Protocol: TCP},
			Frontends: []Frontend{{Kind: ClusterIP, Addr: netip.MustParseAddr("10.96.0.1"), Port: 80}, {Kind: NodePort, Port: 30080}},
			Cluster:   []Endpoint{ep},
			Internal:  Traffic{Endpoints: ClusterEndpoints, Masquerade: MasqueradeOffCluster, Empty: Reject},
			External:  cl, ExternalFromPods: cl, ExternalFromNode: cl,
			Hairpin: []netip.Addr{ep.Addr},
		}
	}
	detecting := Node{Name: "n", LocalTraffic: LocalTraffic{CIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}}}
	cases := []struct {
		want    string
		node    Node
		breakIt func(*ServicePort)
	}{
		{"", detecting, func(*ServicePort) {}},
		{"no internal class", detecting, func(sp *ServicePort) { sp.Internal = Traffic{} }},
		{"class external from node exists=false", detecting, func(sp *ServicePort) { sp.ExternalFromNode = Traffic{} }},
		{"empty verdict drop differs", detecting, func(sp *ServicePort) { sp.ExternalFromPods.Empty = Drop }},
		{"cannot be recognised", Node{Name: "n"}, func(*ServicePort) {}},
		{"local endpoints set=true, used by a class or the health check=false", detecting, func(sp *ServicePort) { sp.Local = []Endpoint{} }},
		{"", detecting, func(sp *ServicePort) { sp.HealthCheckNodePort, sp.Local = 32000, []Endpoint{} }},
		{"local endpoints set=false, used by a class or the health check=true", detecting, func(sp *ServicePort) { sp.HealthCheckNodePort = 32000 }},
		{"cluster endpoints set=false", detecting, func(sp *ServicePort) { sp.Cluster = nil; sp.Hairpin = nil }},
		{"hairpin address 10.0.0.9", detecting, func(sp *ServicePort) { sp.Hairpin = []netip.Addr{netip.MustParseAddr("10.0.0.9")} }},
	}
	for _, tc := range cases {
		sp := good()
		tc.breakIt(sp)
		err := NewTable(IPv4, tc.node).Update(tc.node, []*ServicePort{sp.Seal()}, nil).Check()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("valid port: Check = %v", err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Check = %v, want an error containing %q", err, tc.want)
		}
	}
}
