package nfttrace_test

import (
	"context"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/backends/nftables"
	"github.com/portico-dev/portico/backends/nftables/nfttrace"
	"github.com/portico-dev/portico/model"
	"github.com/portico-dev/portico/proxier/compile"
)

// host is node-a of the e2e topology.
var host = backendtest.Host{LocalAddrs: backendtest.NodeAddrs()}

// syncEveryKind renders the every-kind scenario, under the node variant named (its
// settings tweak), into two knftables.Fake tables, as the nftables backend's own tests do.
func syncEveryKind(t testing.TB, variant string) map[model.Family]*knftables.Fake {
	t.Helper()
	var tweak func(*compile.NodeConfig)
	found := false
	for _, v := range backendtest.NodeVariants {
		if v.Name == variant {
			tweak, found = v.Tweak, true
		}
	}
	if !found {
		t.Fatalf("no node variant %q", variant)
	}
	fakes := map[model.Family]*knftables.Fake{
		model.IPv4: knftables.NewFake(knftables.IPv4Family, "portico"),
		model.IPv6: knftables.NewFake(knftables.IPv6Family, "portico"),
	}
	b := nftables.New(backends.Options{MasqueradeBit: 14, Families: []model.Family{model.IPv4, model.IPv6}},
		nftables.WithInterfaces(
			func(f model.Family) (knftables.Interface, error) { return fakes[f], nil },
			func(_ context.Context, f model.Family) (string, error) { return fakes[f].Dump(), nil },
		))
	state := backendtest.Compile(t, tweak, backendtest.ObjectFiles...)
	for _, tbl := range state.Tables {
		if err := b.Sync(context.Background(), tbl, model.Compare(nil, tbl)); err != nil {
			t.Fatalf("sync %s: %v", tbl.Family(), err)
		}
	}
	return fakes
}

// traceCase is a packet and the result its trace must have.
type traceCase struct {
	name string
	pkt  backendtest.Packet
	want backendtest.Result
}

// pkt builds a TCP packet (UDP when proto says so) from src to dst arriving on iface
// ("" when node-a sends it).
func pkt(proto model.Protocol, src, dst, iface string) backendtest.Packet {
	return backendtest.Packet{Proto: proto, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddrPort(dst), InIface: iface}
}

// dnat is a DNAT result to eps, each masqueraded as masq says; eps must be sorted.
func dnat(masq bool, eps ...string) backendtest.Result {
	r := backendtest.Result{Verdict: backendtest.VerdictDNAT}
	for _, e := range eps {
		r.Targets = append(r.Targets, backendtest.Target{Endpoint: netip.MustParseAddrPort(e), Masquerade: masq})
	}
	return r
}

// sticky marks a result as remembered per client.
func sticky(r backendtest.Result) backendtest.Result {
	r.Sticky = true
	return r
}

// masqueraded returns r with the target ep masqueraded (hairpin).
func masqueraded(r backendtest.Result, ep string) backendtest.Result {
	for i := range r.Targets {
		if r.Targets[i].Endpoint == netip.MustParseAddrPort(ep) {
			r.Targets[i].Masquerade = true
		}
	}
	return r
}

var (
	accept = backendtest.Result{Verdict: backendtest.VerdictAccept}
	reject = backendtest.Result{Verdict: backendtest.VerdictReject}
	drop   = backendtest.Result{Verdict: backendtest.VerdictDrop}
)

// runCases traces every case through tr.
func runCases(t *testing.T, tr backendtest.Tracer, cases []traceCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tr.Trace(tc.pkt)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s: got %s, want %s", tc.pkt, got, tc.want)
			}
		})
	}
}

// webHTTP are the endpoints of default/web:http (ClusterIP 10.96.0.10:80).
var webHTTP = []string{"10.244.1.10:8080", "10.244.2.10:8080", "10.244.2.11:8080"}

// TestEveryKindIPv4 traces packets through the IPv4 rules of the every-kind scenario; the
// expectations follow proxier/compile/testdata/variant-all.golden.
func TestEveryKindIPv4(t *testing.T) {
	tr := nfttrace.New(syncEveryKind(t, "all")[model.IPv4], model.IPv4, host)
	const client, client2, podA1, podA2, nodeA = "192.168.50.100", "192.168.50.101", "10.244.1.10", "10.244.1.11", "192.168.50.10"
	runCases(t, tr, []traceCase{
		{"ClusterIP from a client: every endpoint, masqueraded", pkt(model.TCP, client, "10.96.0.10:80", "eth0"), dnat(true, webHTTP...)},
		{"ClusterIP UDP from a client", pkt(model.UDP, client, "10.96.0.10:53", "eth0"), dnat(true, "10.244.1.10:5353", "10.244.2.10:5353", "10.244.2.11:5353")},
		{"ClusterIP from a pod of node-a: not masqueraded", pkt(model.TCP, podA2, "10.96.0.10:80", "cni0"), dnat(false, webHTTP...)},
		{"ClusterIP from node-a itself: masqueraded", pkt(model.TCP, nodeA, "10.96.0.10:80", ""), dnat(true, webHTTP...)},
		{"hairpin: an endpoint to its own Service is masqueraded to itself only", pkt(model.TCP, podA1, "10.96.0.10:80", "cni0"), masqueraded(dnat(false, webHTTP...), "10.244.1.10:8080")},
		{"hairpin to a single-endpoint Service", pkt(model.TCP, podA1, "10.96.2.1:80", "cni0"), dnat(true, "10.244.1.10:8080")},
		{"ClusterIP on a port it does not serve: rejected", pkt(model.TCP, client, "10.96.0.10:81", "eth0"), reject},
		{"unallocated Service address: dropped", pkt(model.TCP, client, "10.96.0.222:80", "eth0"), drop},
		{"unallocated Service address from a pod: dropped", pkt(model.TCP, podA2, "10.96.0.222:80", "cni0"), drop},
		{"unallocated Service address from node-a: dropped", pkt(model.TCP, nodeA, "10.96.0.222:80", ""), drop},
		{"Service without endpoints: rejected", pkt(model.TCP, client, "10.96.1.4:80", "eth0"), reject},
		{"Service without endpoints (default/mine): rejected", pkt(model.TCP, podA2, "10.96.0.51:80", "cni0"), reject},
		{"internalTrafficPolicy Local: the local endpoint", pkt(model.TCP, client, "10.96.1.1:80", "eth0"), dnat(true, "10.244.1.10:8080")},
		{"session affinity: sticky", pkt(model.TCP, client, "10.96.1.3:80", "eth0"), sticky(dnat(true, "10.244.1.10:8080", "10.244.1.11:8080"))},
		{"session affinity from one of its endpoints: hairpin", pkt(model.TCP, podA2, "10.96.1.3:80", "cni0"), masqueraded(sticky(dnat(false, "10.244.1.10:8080", "10.244.1.11:8080")), "10.244.1.11:8080")},
		{"LoadBalancer from outside its source ranges: dropped", pkt(model.TCP, client2, "192.168.60.10:443", "eth0"), drop},
		{"LoadBalancer from inside its source ranges: local endpoint, client kept", pkt(model.TCP, client, "192.168.60.10:443", "eth0"), dnat(false, "10.244.1.10:8443")},
		{"LoadBalancer from node-a, outside the source ranges: dropped", pkt(model.TCP, nodeA, "192.168.60.11:443", ""), drop},
		{"ETP Local NodePort from a client: local endpoint, not masqueraded", pkt(model.TCP, client, "192.168.50.10:30443", "eth0"), dnat(false, "10.244.1.10:8443")},
		{"ETP Local NodePort from a local pod: cluster endpoints, not masqueraded", pkt(model.TCP, podA2, "192.168.50.10:30443", "cni0"), dnat(false, "10.244.1.10:8443", "10.244.2.10:8443")},
		{"ETP Local NodePort from node-a: cluster endpoints, masqueraded", pkt(model.TCP, nodeA, "192.168.50.10:30443", ""), dnat(true, "10.244.1.10:8443", "10.244.2.10:8443")},
		{"ETP Local NodePort without local endpoints from a client: dropped", pkt(model.TCP, client, "192.168.50.10:30002", "eth0"), drop},
		{"ETP Local NodePort without local endpoints from a pod: cluster endpoints", pkt(model.TCP, podA2, "192.168.50.10:30002", "cni0"), dnat(false, "10.244.2.10:8080")},
		{"ETP Local NodePort without local endpoints from node-a: masqueraded", pkt(model.TCP, nodeA, "192.168.50.10:30002", ""), dnat(true, "10.244.2.10:8080")},
		{"NodePort (Cluster policy) from a client: masqueraded", pkt(model.TCP, client, "192.168.50.10:30080", "eth0"), dnat(true, "10.244.1.10:8080", "10.244.2.10:8080")},
		{"NodePort on an address NodePorts do not serve: delivered to node-a", pkt(model.TCP, client, "10.0.255.2:30080", "eth0"), accept},
		{"external IP from a client: masqueraded", pkt(model.TCP, client, "192.168.60.40:8000", "eth0"), dnat(true, "10.244.1.11:8000")},
		{"no Service: forwarded untouched", pkt(model.UDP, podA2, "8.8.8.8:53", "cni0"), accept},
	})
}

// TestEveryKindIPv6 traces packets through the IPv6 rules of the every-kind scenario.
func TestEveryKindIPv6(t *testing.T) {
	tr := nfttrace.New(syncEveryKind(t, "all")[model.IPv6], model.IPv6, host)
	eps := []string{"[fd00:244:1::10]:8080", "[fd00:244:2::10]:8080"}
	runCases(t, tr, []traceCase{
		{"ClusterIP from a client: masqueraded", pkt(model.TCP, "fd00:50::100", "[fd00:96::2:1]:80", "eth0"), dnat(true, eps...)},
		{"ClusterIP from a pod of node-a", pkt(model.TCP, "fd00:244:1::11", "[fd00:96::2:1]:80", "cni0"), dnat(false, eps...)},
		{"hairpin", pkt(model.TCP, "fd00:244:1::10", "[fd00:96::2:1]:80", "cni0"), masqueraded(dnat(false, eps...), "[fd00:244:1::10]:8080")},
		{"NodePort from a client: masqueraded", pkt(model.TCP, "fd00:50::100", "[fd00:50::10]:30100", "eth0"), dnat(true, eps...)},
		{"ClusterIP on a port it does not serve: rejected", pkt(model.TCP, "fd00:50::100", "[fd00:96::2:1]:81", "eth0"), reject},
		{"unallocated Service address: dropped", pkt(model.TCP, "fd00:50::100", "[fd00:96::de]:80", "eth0"), drop},
	})
}

// TestNodePortsOnEveryAddressMasqueradeAll traces the node variant that serves NodePorts
// on every local address and masquerades everything.
func TestNodePortsOnEveryAddressMasqueradeAll(t *testing.T) {
	fakes := syncEveryKind(t, "all-nodeports-masquerade-all")
	np := []string{"10.244.1.10:8080", "10.244.2.10:8080"}
	runCases(t, nfttrace.New(fakes[model.IPv4], model.IPv4, host), []traceCase{
		{"NodePort on the primary address", pkt(model.TCP, "192.168.50.100", "192.168.50.10:30080", "eth0"), dnat(true, np...)},
		{"NodePort on the API link address", pkt(model.TCP, "192.168.50.100", "10.0.255.2:30080", "eth0"), dnat(true, np...)},
		{"NodePort on the bridge address from a pod", pkt(model.TCP, "10.244.1.11", "10.244.1.1:30080", "cni0"), dnat(true, np...)},
		{"NodePort on loopback from node-a: not served", pkt(model.TCP, "127.0.0.1", "127.0.0.1:30080", ""), accept},
		{"ClusterIP from a pod: masqueraded (masqueradeAll)", pkt(model.TCP, "10.244.1.11", "10.96.0.10:80", "cni0"), dnat(true, webHTTP...)},
		{"ETP Local NodePort without local endpoints: dropped", pkt(model.TCP, "192.168.50.100", "10.0.255.2:30002", "eth0"), drop},
		{"ETP Local NodePort from node-a: cluster endpoints", pkt(model.TCP, "10.0.255.2", "10.0.255.2:30002", ""), dnat(true, "10.244.2.10:8080")},
	})
	runCases(t, nfttrace.New(fakes[model.IPv6], model.IPv6, host), []traceCase{
		{"IPv6 NodePort on the bridge address", pkt(model.TCP, "fd00:50::100", "[fd00:244:1::1]:30100", "eth0"), dnat(true, "[fd00:244:1::10]:8080", "[fd00:244:2::10]:8080")},
	})
}

// TestUnknownRuleIsAnError checks that an expression the tracer does not model makes
// Trace fail with the chain and the rule, instead of being skipped.
func TestUnknownRuleIsAnError(t *testing.T) {
	fake := syncEveryKind(t, "all")[model.IPv4]
	tx := fake.NewTransaction()
	tx.Insert(&knftables.Rule{Chain: "filter-prerouting", Rule: "meta skuid 0 drop"})
	if err := fake.Run(context.Background(), tx); err != nil {
		t.Fatal(err)
	}
	_, err := nfttrace.New(fake, model.IPv4, host).Trace(pkt(model.TCP, "192.168.50.100", "10.96.0.10:80", "eth0"))
	if err == nil || !strings.Contains(err.Error(), "filter-prerouting") || !strings.Contains(err.Error(), "meta skuid 0 drop") {
		t.Fatalf("Trace = %v, want an error naming chain filter-prerouting and the rule", err)
	}
}

// TestWrongPacketFamily checks that a packet of the other family is an error.
func TestWrongPacketFamily(t *testing.T) {
	tr := nfttrace.New(syncEveryKind(t, "all")[model.IPv4], model.IPv4, host)
	if _, err := tr.Trace(pkt(model.TCP, "fd00:50::100", "[fd00:96::2:1]:80", "eth0")); err == nil {
		t.Fatal("tracing an IPv6 packet through the IPv4 table succeeded")
	}
}

// BenchmarkTrace measures one trace of a ClusterIP connection with three endpoints.
func BenchmarkTrace(b *testing.B) {
	tr := nfttrace.New(syncEveryKind(b, "all")[model.IPv4], model.IPv4, host)
	p := pkt(model.TCP, "192.168.50.100", "10.96.0.10:80", "eth0")
	for b.Loop() {
		if _, err := tr.Trace(p); err != nil {
			b.Fatal(err)
		}
	}
}
