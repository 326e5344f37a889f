//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-dev/portico/e2e/harness/env"
	"github.com/portico-dev/portico/e2e/harness/netns"
	"github.com/portico-dev/portico/e2e/harness/rulesdump"
	"github.com/portico-dev/portico/e2e/harness/traffic"
)

// Dynamic tests change Services and endpoints while traffic flows, each in its own
// namespace, and check what existing sockets and new connections see.

// setBackends replaces a Service's endpoints and waits until portico has programmed the
// change.
func setBackends(ctx context.Context, t *testing.T, svc *corev1.Service, backends []env.Backend) {
	t.Helper()
	since := time.Now()
	if err := suite.SetEndpoints(ctx, svc, backends); err != nil {
		t.Fatalf("writing the endpoints of %s: %v", svc.Name, err)
	}
	waitProgrammed(ctx, t, since)
}

// askUntil asks on c up to attempts times (each within perAsk) until done accepts the
// answer, and returns every answer seen.
func askUntil(c *traffic.Conn, attempts int, perAsk time.Duration, done func(traffic.Result) bool) ([]traffic.Result, bool) {
	var seen []traffic.Result
	for i := 0; i < attempts; i++ {
		r := c.Ask(perAsk)
		seen = append(seen, r)
		if done(r) {
			return seen, true
		}
		if r.Elapsed < perAsk {
			time.Sleep(perAsk - r.Elapsed) // pace the retries when the answer came early
		}
	}
	return seen, false
}

func describe(rs []traffic.Result) string {
	var parts []string
	for _, r := range rs {
		if r.Outcome == traffic.OK {
			parts = append(parts, "OK from "+r.Server.String())
		} else {
			parts = append(parts, fmt.Sprintf("%s (%v)", r.Outcome, r.Err))
		}
	}
	return strings.Join(parts, ", ")
}

// answeredBy accepts an answer from pod's server.
func answeredBy(pod string) func(traffic.Result) bool {
	ip := suite.Topo.PodIP(pod, netns.IPv4)
	return func(r traffic.Result) bool { return r.Outcome == traffic.OK && r.Server.Addr() == ip }
}

// udpSocket is one connected UDP socket from the client to a frontend of a Service.
type udpSocket struct {
	kind string
	conn *traffic.Conn
}

// udpSockets are the sockets of a test, one per frontend kind.
type udpSockets []udpSocket

// dialUDP connects one UDP socket from the client to each of the kinds of frontend of the
// Service named to, closed when the test ends. One source port each: one conntrack entry
// each.
func dialUDP(ctx context.Context, t *testing.T, svcs map[string]*corev1.Service, to string, kinds ...string) udpSockets {
	t.Helper()
	var socks udpSockets
	for _, kind := range kinds {
		dst, err := resolve(svcs, Flow{Name: "udp", To: to, Via: kind, Proto: "UDP"})
		if err != nil {
			t.Fatal(err)
		}
		c, err := traffic.Dial(ctx, suite.Topo, client, suite.Topo.ClientIPs(netns.IPv4)[0], dst, traffic.UDP, probeTimeout)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		socks = append(socks, udpSocket{kind, c})
	}
	return socks
}

// each asks on every socket until done accepts an answer (tries asks, per apart), and
// fails the test now, naming step and why, for the sockets that never got one.
func (socks udpSockets) each(t *testing.T, step string, tries int, per time.Duration, done func(traffic.Result) bool, why string) {
	t.Helper()
	for _, s := range socks {
		if rs, ok := askUntil(s.conn, tries, per, done); !ok {
			t.Errorf("%s: the %s socket %s: %s; it saw %s", step, s.kind, s.conn.Local, why, describe(rs))
		} else {
			t.Logf("%s: the %s socket saw %s", step, s.kind, describe(rs))
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// requireEntriesTo fails the test now unless node-a holds, for every socket, a UDP
// conntrack entry DNATed to pod.
func (socks udpSockets) requireEntriesTo(t *testing.T, pod string) {
	t.Helper()
	entries, err := conntrackEntries(nodeA, "udp")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range socks {
		i := slices.IndexFunc(entries, func(e ctEntry) bool { return e.origSrc == s.conn.Local })
		if i < 0 || entries[i].replySrc.Addr() != suite.Topo.PodIP(pod, netns.IPv4) {
			t.Fatalf("no conntrack entry in node-a from the %s socket %s DNATed to %s (found: %v)", s.kind, s.conn.Local, pod, entries)
		}
	}
}

// TestStaleUDPConntrack keeps ONE connected UDP socket (one source port, so one conntrack
// entry) per frontend of a UDP Service (its ClusterIP, NodePort and LoadBalancer IP)
// talking while the endpoints change: portico must clear the conntrack entries that
// point at removed endpoints, or a socket would keep reaching the old endpoint (its
// server still answers) until the entry times out.
func TestStaleUDPConntrack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	svcs := apply(ctx, t, Scenario{
		Name: "StaleUDP",
		Services: []ServiceSetup{{
			Svc:      service("dns", loadBalancer(), ports(udp("dns", 53))),
			Backends: ready(a1),
			LB:       []string{"192.168.60.50"},
		}},
	})
	svc := svcs["dns"]
	socks := dialUDP(ctx, t, svcs, "dns", viaClusterIP, viaNodePort, viaLoadBalancer)
	// Retries are 300 ms apart for 3 s: a stale entry would last 30 s or more (the UDP
	// conntrack timeouts), while clearing it follows the sync within milliseconds.
	const attempts, perAsk = 10, 300 * time.Millisecond
	each := socks.each
	each(t, "before any change", 3, time.Second, answeredBy(a1), "want an answer from pod-a1")
	// Each socket has its conntrack entry in node-a, DNATed to pod-a1: without clearing,
	// that entry would keep carrying the socket's datagrams to pod-a1.
	socks.requireEntriesTo(t, a1)

	setBackends(ctx, t, svc, ready(a2))
	each(t, "pod-a1 replaced with pod-a2", attempts, perAsk, answeredBy(a2),
		"never reached pod-a2 (the conntrack entry to pod-a1 was not cleared)")

	// N -> 0: the entries to pod-a2 must go, and new datagrams are rejected (ICMP port
	// unreachable, ECONNREFUSED) or, when the kernel rate-limits ICMP, get no answer.
	setBackends(ctx, t, svc, ready())
	notAnswered := func(r traffic.Result) bool { return r.Outcome == traffic.Refused || r.Outcome == traffic.Timeout }
	each(t, "every endpoint removed", attempts, perAsk, notAnswered, "still answered (stale conntrack entry)")
	for _, s := range socks {
		if r := s.conn.Ask(perAsk); r.Outcome == traffic.OK {
			t.Errorf("without endpoints, the %s socket %s was answered again by %s", s.kind, s.conn.Local, r.Server)
		}
	}

	// 0 -> N: datagrams sent while there was no endpoint must not leave an entry that
	// keeps a socket from reaching the new endpoint.
	setBackends(ctx, t, svc, ready(b1))
	each(t, "pod-b1 added", attempts, perAsk, answeredBy(b1), "never reached pod-b1")
}

// TestServiceRemoval changes one Service to type ExternalName and deletes another: both
// must leave no rules behind, and their old ClusterIPs must no longer be answered.
func TestServiceRemoval(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sc := Scenario{
		Name: "Removal",
		Services: []ServiceSetup{
			{Svc: service("renamed"), Backends: ready(a1)},
			{Svc: service("deleted"), Backends: ready(a1)},
		},
	}
	svcs := apply(ctx, t, sc)
	ns := namespaceFor(sc.Name)
	// Each Service port's rules and elements carry its name in comments,
	// "<ns>/<name>:http/TCP"; in nftables mode its chains are named after it too,
	// "<ns>/<name>/tcp/http", in iptables mode they are found through those comments.
	marks := map[string]string{}
	for name := range svcs {
		marks[name] = ns + "/" + name + ":"
	}
	before := dumpRules(ctx, t, "before the change")
	for name, comment := range marks {
		if !strings.Contains(before, comment) {
			t.Fatalf("before the change, the dump does not mention %q (Service %s); dump:\n%s", comment, name, before)
		}
		if nftDump() && !strings.Contains(before, ns+"/"+name+"/") || len(serviceChains(before, ns, name)) == 0 {
			t.Fatalf("before the change, the dump holds no chain of Service %s; dump:\n%s", name, before)
		}
	}
	for _, name := range []string{"renamed", "deleted"} {
		runFlow(ctx, t, svcs, Flow{Name: "before " + name, From: client, To: name, Expect: pods(a1)})
	}

	since := time.Now()
	ext := &corev1.Service{}
	ext.Name, ext.Namespace = "renamed", ns
	ext.Spec = corev1.ServiceSpec{
		Type:         corev1.ServiceTypeExternalName,
		ExternalName: "www.example.com",
		Ports:        []corev1.ServicePort{tcp("http", 80)},
		// clusterIP(s), ipFamilies and ipFamilyPolicy stay empty: the API requires it of
		// an ExternalName Service and releases the cluster IP.
	}
	got, err := suite.ApplyService(ctx, ext)
	if err != nil {
		t.Fatalf("changing Service renamed to ExternalName: %v", err)
	}
	if got.Spec.Type != corev1.ServiceTypeExternalName || got.Spec.ClusterIP != "" {
		t.Fatalf("Service renamed is %s with clusterIP %q, want ExternalName without one", got.Spec.Type, got.Spec.ClusterIP)
	}
	if err := suite.DeleteService(ctx, ns, "deleted"); err != nil {
		t.Fatal(err)
	}
	waitProgrammed(ctx, t, since)

	// A backend may delete a chain in two steps, like kube-proxy: the sync that retires it
	// flushes it (no rules, no element points to it any more), the next sync deletes it.
	// So right after the change no rule or element may mention the Services or their
	// ClusterIPs, and a chain still there must be empty.
	after := dumpRules(ctx, t, "after the change")
	for name, comment := range marks {
		if strings.Contains(after, comment) {
			t.Errorf("Service %s is gone (ExternalName or deleted) but rules or elements still mention %q:\n%s", name, comment, matching(after, comment))
		}
		if ip := rulesdump.AddrPattern(svcs[name].Spec.ClusterIP); ip.MatchString(after) {
			t.Errorf("Service %s is gone but rules or elements still hold its ClusterIP %s:\n%s", name, svcs[name].Spec.ClusterIP, matchingRe(after, ip))
		}
		for _, chain := range leftChains(before, after, ns, name) {
			t.Logf("Service %s: chain %s is left for the next sync to delete", name, chain)
			if body := chainRules(after, chain); len(body) > 0 {
				t.Errorf("Service %s is gone but its chain %s still has rules:\n%s", name, chain, strings.Join(body, "\n"))
			}
		}
	}
	// Any later sync deletes the emptied chains: after an unrelated change no chain of
	// the Services may be left.
	since = time.Now()
	trigger := service("trigger")
	trigger.Namespace = ns
	if _, err := suite.ApplyService(ctx, trigger); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = suite.DeleteService(context.Background(), ns, "trigger") })
	waitProgrammed(ctx, t, since)
	later := dumpRules(ctx, t, "after a later sync")
	for name := range marks {
		if left := leftChains(before, later, ns, name); len(left) > 0 || nftDump() && strings.Contains(later, ns+"/"+name+"/") {
			t.Errorf("after a later sync, the dump still holds chains %v of the removed Service %s:\n%s", left, name, later)
		}
	}
	for _, name := range []string{"renamed", "deleted"} {
		ip := netip.MustParseAddr(svcs[name].Spec.ClusterIP)
		dst := netip.AddrPortFrom(ip, 80)
		if r := traffic.Probe(ctx, suite.Topo, client, netip.Addr{}, dst, traffic.TCP, dropTimeout); r.Outcome == traffic.OK {
			t.Errorf("the old ClusterIP %s of Service %s is still answered, by %s", dst, name, r.Server)
		}
	}
}

// chainsNamed returns the names of the chains of a dump whose name contains sub.
func chainsNamed(dump, sub string) []string {
	var out []string
	for _, l := range strings.Split(dump, "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == "chain" && f[2] == "{" && strings.Contains(f[1], sub) {
			out = append(out, f[1])
		}
	}
	return out
}

// chainBody returns the non-empty lines inside chain name's braces in a dump.
func chainBody(dump, name string) []string {
	var out []string
	in := false
	for _, l := range strings.Split(dump, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case !in && l == "chain "+name+" {":
			in = true
		case in && l == "}":
			return out
		case in && l != "":
			out = append(out, l)
		}
	}
	return out
}

// matchingRe returns the lines of s that re matches.
func matchingRe(s string, re *regexp.Regexp) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if re.MatchString(l) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// matching returns the lines of s that contain sub.
func matching(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestTerminatingFallbackDynamic walks one endpoint through termination: a ready pod-a1
// that starts terminating (not ready, still serving) keeps answering, since it is the only
// endpoint left; once a ready pod-b1 appears, only pod-b1 answers.
func TestTerminatingFallbackDynamic(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	svcs := apply(ctx, t, Scenario{
		Name:     "TerminatingDynamic",
		Services: []ServiceSetup{{Svc: service("web"), Backends: ready(a1)}},
	})
	svc := svcs["web"]
	flow := func(name string, eps ...string) Flow {
		return Flow{Name: name, From: client, To: "web", Expect: pods(eps...), Peer: peerNode}
	}
	terminating := env.Backend{Pod: a1, NotReady: true, Terminating: true}
	steps := []struct {
		name     string
		backends []env.Backend
		want     []string
	}{
		{"ready pod-a1 answers", nil, []string{a1}},
		{"terminating serving pod-a1 still answers (fallback)", []env.Backend{terminating}, []string{a1}},
		{"a ready pod-b1 takes over from the terminating pod-a1", []env.Backend{terminating, {Pod: b1}}, []string{b1}},
	}
	for _, s := range steps {
		if !t.Run(s.name, func(t *testing.T) {
			if s.backends != nil {
				setBackends(ctx, t, svc, s.backends)
			}
			runFlow(ctx, t, svcs, flow(s.name, s.want...))
		}) {
			return
		}
	}
}

// TestSliceMovesBetweenServices relabels an EndpointSlice from one Service to another (its
// kubernetes.io/service-name label): the Service it left must lose the endpoint and the
// one it joined must gain it, in the same sync.
func TestSliceMovesBetweenServices(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sc := Scenario{
		Name: "SliceMove",
		Services: []ServiceSetup{
			{Svc: service("from"), Backends: ready(a1)},
			{Svc: service("to"), Backends: ready(a2)},
		},
	}
	svcs := apply(ctx, t, sc)
	ns := namespaceFor(sc.Name)
	runFlow(ctx, t, svcs, Flow{Name: "from before", From: client, To: "from", Expect: pods(a1)})
	runFlow(ctx, t, svcs, Flow{Name: "to before", From: client, To: "to", Expect: pods(a2)})

	api := suite.Cluster.Client().DiscoveryV1().EndpointSlices(ns)
	list, err := api.List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=from"})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("the EndpointSlices of Service from: %d (%v), want 1", len(list.Items), err)
	}
	moved := list.Items[0]
	moved.Labels[discoveryv1.LabelServiceName] = "to"
	since := time.Now()
	if _, err := api.Update(ctx, &moved, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("relabelling EndpointSlice %s: %v", moved.Name, err)
	}
	waitProgrammed(ctx, t, since)
	runFlow(ctx, t, svcs, Flow{Name: "from after", From: client, To: "from", Expect: refused})
	runFlow(ctx, t, svcs, Flow{Name: "to after", From: client, To: "to", Expect: pods(a1, a2)})
}
