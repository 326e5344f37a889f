package proxier

import (
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/portico-dev/portico/model"
)

var ctNode = model.Node{Name: nodeName}

// ctPort builds a sealed Service port "ns/<name>:p/<proto>".
type ctPort struct {
	name          string
	proto         model.Protocol
	frontends     []model.Frontend
	cluster       []model.Endpoint
	local         []model.Endpoint
	externalLocal bool
}

func (p ctPort) build() *model.ServicePort {
	sp := &model.ServicePort{
		Name:      model.ServicePortName{Namespace: "ns", Name: p.name, Port: "p", Protocol: p.proto},
		Frontends: slices.Clone(p.frontends),
		Cluster:   slices.Clone(p.cluster),
		Local:     slices.Clone(p.local),
	}
	// The classes compile would decide (local traffic detected, no masqueradeAll).
	cluster := model.Traffic{Endpoints: model.ClusterEndpoints, Masquerade: model.MasqueradeOffCluster, Empty: model.Reject}
	sp.Internal = cluster
	if sp.HasExternal() {
		sp.External = model.Traffic{Endpoints: model.ClusterEndpoints, Masquerade: model.MasqueradeAlways, Empty: model.Reject}
		sp.ExternalFromPods, sp.ExternalFromNode = sp.External, sp.External
	}
	if p.externalLocal {
		sp.External = model.Traffic{Endpoints: model.LocalEndpoints, Masquerade: model.MasqueradeNever, Empty: model.Drop}
		sp.ExternalFromPods = model.Traffic{Endpoints: model.ClusterEndpoints, Masquerade: model.MasqueradeNever, Empty: model.Drop}
		sp.ExternalFromNode = model.Traffic{Endpoints: model.ClusterEndpoints, Masquerade: model.MasqueradeAlways, Empty: model.Drop}
	}
	return sp.Seal()
}

func ctTable(ports ...ctPort) *model.Table {
	var sps []*model.ServicePort
	for _, p := range ports {
		sps = append(sps, p.build())
	}
	return model.NewTable(model.IPv4, ctNode).Update(ctNode, sps, nil)
}

func ctEP(s string, local bool) model.Endpoint {
	ap := netip.MustParseAddrPort(s)
	return model.Endpoint{Addr: ap.Addr(), Port: ap.Port(), Local: local, Ready: true, Serving: true}
}

func fe(kind model.FrontendKind, s string) model.Frontend {
	if strings.HasPrefix(s, "*:") {
		ap := netip.MustParseAddrPort("0.0.0.0" + s[1:])
		return model.Frontend{Kind: kind, Port: ap.Port()}
	}
	ap := netip.MustParseAddrPort(s)
	return model.Frontend{Kind: kind, Addr: ap.Addr(), Port: ap.Port()}
}

// flow builds a StaleFlow from "frontend>endpoint"; "*:port" is any address, an empty
// endpoint matches every target.
func flow(s string) StaleFlow {
	front, ep, _ := strings.Cut(s, ">")
	var f StaleFlow
	if strings.HasPrefix(front, "*:") {
		f.Frontend = netip.AddrPortFrom(netip.Addr{}, netip.MustParseAddrPort("0.0.0.0"+front[1:]).Port())
	} else {
		f.Frontend = netip.MustParseAddrPort(front)
	}
	if ep != "" {
		f.Endpoint = netip.MustParseAddrPort(ep)
	}
	return f
}

func flowString(f StaleFlow) string {
	s := f.Frontend.String()
	if !f.Frontend.Addr().IsValid() {
		s = "*:" + strconv.Itoa(int(f.Frontend.Port()))
	}
	s += ">"
	if f.Endpoint.IsValid() {
		s += f.Endpoint.String()
	}
	return s
}

func TestStaleUDPFlows(t *testing.T) {
	var (
		cip   = fe(model.ClusterIP, "10.96.0.10:53")
		np    = fe(model.NodePort, "192.168.50.10:30053")
		npAny = fe(model.NodePort, "*:30053")
		eip   = fe(model.ExternalIP, "192.0.2.10:53")
		a     = ctEP("10.244.2.1:5353", false)
		b     = ctEP("10.244.2.2:5353", false)
		l     = ctEP("10.244.1.1:5353", true)
	)
	dns := func(fes []model.Frontend, eps ...model.Endpoint) ctPort {
		return ctPort{name: "dns", proto: model.UDP, frontends: fes, cluster: append([]model.Endpoint{}, eps...)}
	}
	for _, tc := range []struct {
		name       string
		prev, next *model.Table // prev nil: nothing applied yet
		want       []string
	}{
		{
			name: "first sync",
			next: ctTable(dns([]model.Frontend{cip}, a)),
		},
		{
			name: "unchanged",
			prev: ctTable(dns([]model.Frontend{cip}, a, b)),
			next: ctTable(dns([]model.Frontend{cip}, a, b)),
		},
		{
			name: "endpoint removed",
			prev: ctTable(dns([]model.Frontend{cip, np}, a, b)),
			next: ctTable(dns([]model.Frontend{cip, np}, a)),
			want: []string{"10.96.0.10:53>10.244.2.2:5353", "192.168.50.10:30053>10.244.2.2:5353"},
		},
		{
			name: "endpoint added",
			prev: ctTable(dns([]model.Frontend{cip}, a)),
			next: ctTable(dns([]model.Frontend{cip}, a, b)),
		},
		{
			name: "endpoint replaced",
			prev: ctTable(dns([]model.Frontend{cip}, a)),
			next: ctTable(dns([]model.Frontend{cip}, b)),
			want: []string{"10.96.0.10:53>10.244.2.1:5353"},
		},
		{
			name: "service removed",
			prev: ctTable(dns([]model.Frontend{cip, npAny}, a, b)),
			next: ctTable(),
			want: []string{
				"10.96.0.10:53>10.244.2.1:5353", "10.96.0.10:53>10.244.2.2:5353",
				"*:30053>10.244.2.1:5353", "*:30053>10.244.2.2:5353",
			},
		},
		{
			name: "frontend removed",
			prev: ctTable(dns([]model.Frontend{cip, eip}, a)),
			next: ctTable(dns([]model.Frontend{cip}, a)),
			want: []string{"192.0.2.10:53>10.244.2.1:5353"},
		},
		{
			name: "0 to N endpoints clears flows to the frontends",
			prev: ctTable(dns([]model.Frontend{cip, np})),
			next: ctTable(dns([]model.Frontend{cip, np}, a, b)),
			want: []string{"10.96.0.10:53>", "192.168.50.10:30053>"},
		},
		{
			name: "a new Service with endpoints clears flows to its frontends",
			prev: ctTable(),
			next: ctTable(dns([]model.Frontend{cip, np}, a)),
			want: []string{"10.96.0.10:53>", "192.168.50.10:30053>"},
		},
		{
			name: "a new Service without endpoints clears nothing",
			prev: ctTable(),
			next: ctTable(dns([]model.Frontend{cip})),
		},
		{
			name: "TCP ignored",
			prev: ctTable(ctPort{name: "web", proto: model.TCP, frontends: []model.Frontend{cip}, cluster: []model.Endpoint{a, b}}),
			next: ctTable(),
		},
		{
			name: "TCP ignored, UDP of the same Service served",
			prev: ctTable(
				ctPort{name: "dns", proto: model.TCP, frontends: []model.Frontend{cip}, cluster: []model.Endpoint{a, b}},
				dns([]model.Frontend{cip}, a, b)),
			next: ctTable(
				ctPort{name: "dns", proto: model.TCP, frontends: []model.Frontend{cip}, cluster: []model.Endpoint{a}},
				dns([]model.Frontend{cip}, a)),
			want: []string{"10.96.0.10:53>10.244.2.2:5353"},
		},
		{
			// Traffic from this node and local pods to an external frontend of an
			// externalTrafficPolicy: Local port goes to the Cluster endpoints too, so
			// the remote endpoint that left the Cluster set is stale there as well.
			name: "ETP Local external frontend uses the forwarded endpoints",
			prev: ctTable(ctPort{name: "dns", proto: model.UDP, frontends: []model.Frontend{cip, np},
				cluster: []model.Endpoint{a, l}, local: []model.Endpoint{l}, externalLocal: true}),
			next: ctTable(ctPort{name: "dns", proto: model.UDP, frontends: []model.Frontend{cip, np},
				cluster: []model.Endpoint{l}, local: []model.Endpoint{l}, externalLocal: true}),
			want: []string{"10.96.0.10:53>10.244.2.1:5353", "192.168.50.10:30053>10.244.2.1:5353"},
		},
		{
			name: "ETP Local: the local endpoint leaves",
			prev: ctTable(ctPort{name: "dns", proto: model.UDP, frontends: []model.Frontend{cip, np},
				cluster: []model.Endpoint{a, l}, local: []model.Endpoint{l}, externalLocal: true}),
			next: ctTable(ctPort{name: "dns", proto: model.UDP, frontends: []model.Frontend{cip, np},
				cluster: []model.Endpoint{a}, local: []model.Endpoint{}, externalLocal: true}),
			want: []string{"10.96.0.10:53>10.244.1.1:5353", "192.168.50.10:30053>10.244.1.1:5353"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, f := range staleUDPFlows(tc.prev, tc.next, model.Compare(tc.prev, tc.next)) {
				got = append(got, flowString(f))
			}
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("stale flows\n got %q\nwant %q", got, want)
			}
			for _, w := range tc.want { // the helpers agree with each other
				if flowString(flow(w)) != w {
					t.Fatalf("flow(%q) renders as %q", w, flowString(flow(w)))
				}
			}
		})
	}
}

func TestFlowFilter(t *testing.T) {
	ctFlow := func(proto uint8, dst string, replySrc string) *netlink.ConntrackFlow {
		d, r := netip.MustParseAddrPort(dst), netip.MustParseAddrPort(replySrc)
		return &netlink.ConntrackFlow{
			Forward: netlink.IPTuple{Protocol: proto, SrcIP: net.ParseIP("10.244.1.5"), DstIP: d.Addr().AsSlice(), DstPort: d.Port()},
			Reverse: netlink.IPTuple{Protocol: proto, SrcIP: r.Addr().AsSlice(), SrcPort: r.Port()},
		}
	}
	for _, tc := range []struct {
		name   string
		filter string
		flow   *netlink.ConntrackFlow
		want   bool
	}{
		{"frontend and endpoint", "10.96.0.10:53>10.244.2.1:5353", ctFlow(unix.IPPROTO_UDP, "10.96.0.10:53", "10.244.2.1:5353"), true},
		{"other endpoint", "10.96.0.10:53>10.244.2.1:5353", ctFlow(unix.IPPROTO_UDP, "10.96.0.10:53", "10.244.2.2:5353"), false},
		{"other endpoint port", "10.96.0.10:53>10.244.2.1:5353", ctFlow(unix.IPPROTO_UDP, "10.96.0.10:53", "10.244.2.1:5354"), false},
		{"other frontend", "10.96.0.10:53>10.244.2.1:5353", ctFlow(unix.IPPROTO_UDP, "10.96.0.11:53", "10.244.2.1:5353"), false},
		{"TCP", "10.96.0.10:53>10.244.2.1:5353", ctFlow(unix.IPPROTO_TCP, "10.96.0.10:53", "10.244.2.1:5353"), false},
		{"any endpoint: un-NATed entry", "10.96.0.10:53>", ctFlow(unix.IPPROTO_UDP, "10.96.0.10:53", "10.96.0.10:53"), true},
		{"any address NodePort", "*:30053>10.244.2.1:5353", ctFlow(unix.IPPROTO_UDP, "192.168.50.10:30053", "10.244.2.1:5353"), true},
		{"any address NodePort, other port", "*:30053>10.244.2.1:5353", ctFlow(unix.IPPROTO_UDP, "192.168.50.10:30054", "10.244.2.1:5353"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := flowFilter(flow(tc.filter)).MatchConntrackFlow(tc.flow); got != tc.want {
				t.Errorf("match = %t, want %t", got, tc.want)
			}
		})
	}
	// IPv4 addresses in 16-byte form match too.
	f := ctFlow(unix.IPPROTO_UDP, "10.96.0.10:53", "10.244.2.1:5353")
	f.Forward.DstIP, f.Reverse.SrcIP = f.Forward.DstIP.To16(), f.Reverse.SrcIP.To16()
	if !flowFilter(flow("10.96.0.10:53>10.244.2.1:5353")).MatchConntrackFlow(f) {
		t.Error("a 16-byte IPv4 address did not match")
	}
}

// TestUDPServedStale checks which entries the start-up sweep deletes.
func TestUDPServedStale(t *testing.T) {
	t.Parallel()
	tbl := ctTable(
		ctPort{name: "dns", proto: model.UDP,
			frontends: []model.Frontend{fe(model.ClusterIP, "10.96.0.53:53"), fe(model.NodePort, "*:30053")},
			cluster:   []model.Endpoint{ctEP("10.244.2.54:5353", false)}},
		ctPort{name: "empty", proto: model.UDP, frontends: []model.Frontend{fe(model.ClusterIP, "10.96.0.60:53")}},
		ctPort{name: "web", proto: model.TCP, frontends: []model.Frontend{fe(model.ClusterIP, "10.96.0.80:80")},
			cluster: []model.Endpoint{ctEP("10.244.2.80:8080", false)}},
	)
	s := udpServed(tbl)
	for _, tc := range []struct {
		dst, rep string
		want     bool
	}{
		{"10.96.0.53:53", "10.244.2.53:5353", true},  // DNATed to a gone endpoint
		{"10.96.0.53:53", "10.244.2.54:5353", false}, // to the current one
		{"10.96.0.53:53", "10.96.0.53:53", true},     // not DNATed, the frontend has endpoints
		{"10.96.0.60:53", "10.96.0.60:53", false},    // not DNATed, no endpoints: nothing better
		{"10.96.0.60:53", "10.244.2.53:5353", true},  // DNATed although there are no endpoints now
		{"192.168.50.10:30053", "10.244.2.9:5353", true},
		{"192.168.50.10:30053", "10.244.2.54:5353", false},
		{"192.168.50.10:30053", "192.168.50.10:30053", false}, // maybe the node's own traffic
		{"10.96.0.80:80", "10.244.2.1:8080", false},           // a TCP Service's address: not UDP
		{"10.96.0.99:53", "10.244.2.53:5353", false},          // no frontend
		{"[::ffff:10.96.0.53]:53", "10.244.2.54:5353", false}, // mapped addresses are unmapped
	} {
		if got := s.Stale(netip.MustParseAddrPort(tc.dst), netip.MustParseAddrPort(tc.rep)); got != tc.want {
			t.Errorf("Stale(%s, reply from %s) = %t, want %t", tc.dst, tc.rep, got, tc.want)
		}
	}
}
