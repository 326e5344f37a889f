//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/portico-dev/portico/e2e/harness/netns"
	"github.com/portico-dev/portico/e2e/harness/traffic"
)

// Resilience tests disturb portico or the apiserver while long-lived connections run
// through a Service, and check that the dataplane keeps working.

// echoPort is where the echo servers of these tests listen in the pods; the traffic
// servers keep env.ServerPort.
const echoPort = 8081

// startEcho starts an echo server in each pod, closed when the test ends.
func startEcho(t *testing.T, pods ...string) {
	t.Helper()
	for _, p := range pods {
		s, err := traffic.ServeEcho(suite.Topo, p, nil, echoPort)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
	}
}

// echoService is a Service with port 80 ("http", to the pods' traffic servers: one
// connection per probe) and port 81 ("echo", to their echo servers: long-lived
// connections), served by pod-a1.
func echoService(name string) ServiceSetup {
	echo := corev1.ServicePort{Name: "echo", Port: 81, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(echoPort)}
	return ServiceSetup{
		Svc:         service(name, ports(tcp("http", 80), echo)),
		Backends:    ready(a1),
		TargetPorts: map[string]int32{"echo": echoPort},
	}
}

// longLived is one long-lived connection through a Service's echo port.
type longLived struct {
	from string
	conn *traffic.Conn
}

// openLongLived opens a connection to the echo port of svc from the client and from
// pod-a2, checks them once and closes them when the test ends.
func openLongLived(ctx context.Context, t *testing.T, svcs map[string]*corev1.Service, svc string) []longLived {
	t.Helper()
	var out []longLived
	for _, from := range []string{client, a2} {
		f := Flow{Name: "long-lived from " + from, From: from, To: svc, Port: 81}
		dst, err := resolve(svcs, f)
		if err != nil {
			t.Fatal(err)
		}
		c, err := traffic.Dial(ctx, suite.Topo, from, source(t, f, dst), dst, traffic.TCP, probeTimeout)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		out = append(out, longLived{from: from, conn: c})
	}
	checkLongLived(t, out, "when opened")
	return out
}

// checkLongLived asks once on every connection: each must still be answered by pod-a1's
// echo server.
func checkLongLived(t *testing.T, conns []longLived, when string) {
	t.Helper()
	want := suite.Topo.PodIP(a1, netns.IPv4)
	for _, l := range conns {
		r := l.conn.Ask(probeTimeout)
		if r.Outcome != traffic.OK || r.Server.Addr() != want || r.Server.Port() != echoPort {
			t.Errorf("%s: the long-lived connection from %s (%s) broke: %s %v (server %s), want an answer from %s:%d",
				when, l.from, l.conn.Local, r.Outcome, r.Err, r.Server, want, echoPort)
		}
	}
}

// newConnections checks that new connections to svc's port 80 work, from the client and
// from a pod.
func newConnections(ctx context.Context, t *testing.T, svcs map[string]*corev1.Service, svc, when string) {
	t.Helper()
	runFlow(ctx, t, svcs, Flow{Name: when + ": new client connections", From: client, To: svc, Expect: pods(a1), Peer: peerNode, Probes: 4})
	runFlow(ctx, t, svcs, Flow{Name: when + ": new pod connections", From: a2, To: svc, Expect: pods(a1), Peer: peerClient, Probes: 4})
}

// TestRestartKeepsConnections restarts portico over the rules it left in the kernel,
// after a crash (SIGKILL) and after a clean stop (SIGTERM): established connections must
// survive both, and new connections must work once it runs again.
func TestRestartKeepsConnections(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	startEcho(t, a1)
	svcs := apply(ctx, t, Scenario{Name: "Restart", Services: []ServiceSetup{echoService("persist")}})
	// Registered after apply, so it runs before apply's clean-up, which needs portico.
	t.Cleanup(func() {
		if !suite.Portico.Running() {
			sctx, scancel := context.WithTimeout(context.Background(), time.Minute)
			defer scancel()
			if err := suite.Portico.Start(sctx); err != nil {
				t.Errorf("starting portico again for the tests that follow: %v", err)
			}
		}
	})
	conns := openLongLived(ctx, t, svcs, "persist")
	dump := func(when string) map[string]int {
		t.Helper()
		return slotFree(ruleItems(dumpRules(ctx, t, when), nil))
	}
	// A restart must converge on the same rules as before, not add to them (duplicate
	// base-chain rules, left-over elements); endpoint-map slots may be assigned
	// differently, so they are left out of the comparison.
	before := dump("before any restart")
	sameRules := func(t *testing.T, when string) {
		t.Helper()
		if diff := itemDiff(before, dump(when)); diff != "" {
			t.Errorf("%s, the rules differ from those before the restart (endpoint-map slots left out):\n%s", when, diff)
		}
	}

	t.Run("kill", func(t *testing.T) {
		pid := suite.Portico.PID()
		if err := suite.Portico.Kill(); err != nil {
			t.Fatalf("killing portico: %v", err)
		}
		checkLongLived(t, conns, "after SIGKILL")
		// The rules stay in the kernel when portico dies.
		newConnections(ctx, t, svcs, "persist", "portico killed")
		if err := suite.Portico.Start(ctx); err != nil {
			t.Fatalf("starting portico again: %v", err)
		}
		if suite.Portico.PID() == pid {
			t.Fatalf("portico still runs as PID %d: it was not restarted", pid)
		}
		checkLongLived(t, conns, "after the restart that followed SIGKILL")
		newConnections(ctx, t, svcs, "persist", "restarted after SIGKILL")
		sameRules(t, "after the restart that followed SIGKILL")
	})

	t.Run("SIGTERM", func(t *testing.T) {
		if err := suite.Portico.Stop(); err != nil {
			t.Fatalf("stopping portico: %v", err)
		}
		checkLongLived(t, conns, "after SIGTERM")
		if err := suite.Portico.Start(ctx); err != nil {
			t.Fatalf("starting portico again: %v", err)
		}
		checkLongLived(t, conns, "after the restart that followed SIGTERM")
		newConnections(ctx, t, svcs, "persist", "restarted after SIGTERM")
		sameRules(t, "after the restart that followed SIGTERM")
	})
}

// TestAPIServerOutage stops the apiserver while long-lived connections run: portico must
// keep its rules (nothing flushed), existing and new connections to existing Services
// must keep working, and once the apiserver is back portico must resync (program a
// Service created afterwards).
func TestAPIServerOutage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	startEcho(t, a1)
	svcs := apply(ctx, t, Scenario{Name: "Outage", Services: []ServiceSetup{echoService("steady")}})
	conns := openLongLived(ctx, t, svcs, "steady")
	dump := func(when string) string {
		t.Helper()
		return dumpRules(ctx, t, when)
	}
	before := dump("before the outage")
	notAPI := apiItems(ctx, t, before)

	if err := suite.Cluster.StopAPIServer(); err != nil {
		t.Fatalf("stopping the apiserver: %v", err)
	}
	apiUp := false
	startAPI := func() {
		if apiUp {
			return
		}
		apiUp = true
		if err := suite.Cluster.StartAPIServer(ctx); err != nil {
			t.Fatalf("starting the apiserver again: %v", err)
		}
	}
	// Whatever fails below, the apiserver must come back for the tests that follow.
	defer func() {
		if !apiUp {
			apiUp = true
			sctx, scancel := context.WithTimeout(context.Background(), time.Minute)
			defer scancel()
			if err := suite.Cluster.StartAPIServer(sctx); err != nil {
				t.Errorf("starting the apiserver again: %v", err)
			}
		}
	}()

	// For about 5 s without the apiserver: rules unchanged, the long-lived connections
	// answered, new connections to the existing Service served.
	end := time.Now().Add(5 * time.Second)
	for i := 0; time.Now().Before(end) && !t.Failed(); i++ {
		checkLongLived(t, conns, "during the API outage")
		newConnections(ctx, t, svcs, "steady", "during the API outage")
		time.Sleep(500 * time.Millisecond)
	}
	// The apiserver removes its own endpoint from the default/kubernetes Service when it
	// shuts down, and portico rightly programs that; everything else must be unchanged.
	if diff := itemDiff(ruleItems(before, notAPI), ruleItems(dump("during the outage"), notAPI)); diff != "" {
		t.Errorf("the rules changed while the apiserver was away (default/kubernetes left out):\n%s", diff)
	}
	if !suite.Portico.Running() {
		t.Fatalf("portico exited while the apiserver was away; log tail:\n%s", suite.Portico.LogTail(30))
	}

	startAPI()
	back := time.Now()
	checkLongLived(t, conns, "after the API came back")
	// A Service created now must be programmed: portico reconnected and resynced. Its
	// informers reconnect with client-go's backoff (up to 30 s), and WaitProgrammed cannot
	// be used: any relist bumps the queued-change timestamp it reads, even before the new
	// Service is seen. So wait for the Service's frontend to appear in the rules, pointing
	// at its entry chain (it has an endpoint).
	svc := service("after-outage")
	svc.Namespace = namespaceFor("Outage")
	got, err := suite.ApplyService(ctx, svc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = suite.DeleteService(context.Background(), svc.Namespace, svc.Name) })
	if err := suite.SetEndpoints(ctx, got, ready(b1)); err != nil {
		t.Fatal(err)
	}
	frontend := fmt.Sprintf("%s . tcp . 80 comment %q : goto cluster-", got.Spec.ClusterIP, svc.Namespace+"/"+svc.Name+":http/TCP")
	if !nftDump() {
		frontend = fmt.Sprintf("-d %s/32 -p tcp -m tcp --dport 80 -m comment --comment %q -j PORTICO-", got.Spec.ClusterIP, svc.Namespace+"/"+svc.Name+":http/TCP")
	}
	deadline := time.Now().Add(resyncTimeout)
	for !strings.Contains(dump("waiting for the resync"), frontend) {
		if time.Now().After(deadline) {
			t.Fatalf("%v after the apiserver came back, portico has not programmed the new Service %s/%s (no %q in the rules); log tail:\n%s",
				resyncTimeout, svc.Namespace, svc.Name, frontend, suite.Portico.LogTail(30))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("portico programmed a Service created after the outage %v after the apiserver was back", time.Since(back).Round(time.Millisecond))
	runFlow(ctx, t, map[string]*corev1.Service{"after-outage": got},
		Flow{Name: "a Service created after the outage", From: client, To: "after-outage", Expect: pods(b1), Peer: peerNode})
	newConnections(ctx, t, svcs, "steady", "after the outage")
}

// nftDump reports whether portico's dump is in nft syntax (nftables mode); otherwise it
// is in iptables-save syntax (iptables mode).
func nftDump() bool { return mode() == "nftables" }

// resyncTimeout bounds how long portico may take to see API changes once the apiserver
// is back (client-go's reflector backoff tops out at 30 s).
const resyncTimeout = 60 * time.Second

// Endpoint-map slots: "offset 4 map @endpoints-tcp-02" in DNAT rules ("map
// @endpoints-tcp-02" alone for slot 0: nft leaves out a zero offset), "4 : 10.244.1.10 .
// 8080" in the maps.
var (
	slotRef  = regexp.MustCompile(`(?:offset \d+ )?map @endpoints-[a-z]+-[0-9a-f]+`)
	slotElem = regexp.MustCompile(`^\d+ : `)
)

// slotFree rewrites the endpoint-map slot numbers and map names of items away.
func slotFree(items map[string]int) map[string]int {
	out := map[string]int{}
	for it, n := range items {
		it = slotRef.ReplaceAllString(it, "offset N map @endpoints-M")
		it = slotElem.ReplaceAllString(it, "N : ")
		out[it] += n
	}
	return out
}

// itemDiff lists the items only in ca ("-") and only in cb ("+"); "" when equal.
func itemDiff(ca, cb map[string]int) string {
	var out []string
	for l, n := range ca {
		if cb[l] < n {
			out = append(out, "- "+l)
		}
	}
	for l, n := range cb {
		if ca[l] < n {
			out = append(out, "+ "+l)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}
