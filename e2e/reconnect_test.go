//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/portico-dev/portico/e2e/harness/cluster"
	"github.com/portico-dev/portico/e2e/harness/netns"
	"github.com/portico-dev/portico/e2e/harness/traffic"
	"github.com/portico-dev/portico/proxier/kubeapi"
)

// Reconnect tests measure how soon portico sees API changes once its connection to the
// API server works again: after the API server was stopped, and after the path to it
// silently dropped every packet.

// reconnectBound is how long after the API server is ready again (its /readyz answers
// ok) a new endpoint written at that moment may take to answer real traffic
// (docs/architecture.md, "Failure and restart").
const reconnectBound = 500 * time.Millisecond

// readyPollEvery is how often the test asks /readyz while the API server starts again:
// the moment it first answers ok is where the reconnect measurement starts.
const readyPollEvery = 10 * time.Millisecond

// Probing while waiting for a new endpoint: one TCP connection every probeEvery, each
// within probeWithin, for at most probeFor.
const (
	probeEvery  = 15 * time.Millisecond
	probeWithin = 200 * time.Millisecond
	probeFor    = 40 * time.Second
)

// TestReconnectAfterOutage stops the API server for 15 s and for 60 s. As soon as it is
// ready again, the test replaces the endpoint of an existing Service (pod-a1 by pod-b1)
// and probes the Service every 15 ms: pod-b1 must answer within reconnectBound of the
// API server's readiness.
func TestReconnectAfterOutage(t *testing.T) {
	for _, outage := range []time.Duration{15 * time.Second, 60 * time.Second} {
		t.Run(outage.String(), func(t *testing.T) { reconnectAfterOutage(t, outage) })
	}
}

func reconnectAfterOutage(t *testing.T, outage time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), outage+2*time.Minute)
	defer cancel()
	svc, dst := reconnectService(ctx, t, fmt.Sprintf("Reconnect%ds", int(outage.Seconds())))
	back := apiOutage(ctx, t, outage, func() {
		if r := probeOnce(ctx, dst); !answeredBy(a1)(r) {
			t.Errorf("during the outage, %s: %s %v (server %s), want pod-a1", dst, r.Outcome, r.Err, r.Server)
		}
	})
	if err := suite.SetEndpoints(ctx, svc, ready(b1)); err != nil {
		t.Fatalf("replacing the endpoint after the outage: %v", err)
	}
	written := time.Now()
	first, err := firstAnswerFrom(ctx, dst, b1, written.Add(probeFor))
	if err != nil {
		t.Fatalf("%v; portico log tail:\n%s", err, suite.Portico.LogTail(40))
	}
	sinceReady := first.Sub(back)
	t.Logf("after a %v outage: pod-b1 answered %v after the API server was ready (the write took %v)",
		outage, sinceReady.Round(time.Millisecond), written.Sub(back).Round(time.Millisecond))
	if sinceReady > reconnectBound {
		t.Errorf("after a %v outage the new endpoint answered %v after the API server was ready, want at most %v; portico log tail:\n%s",
			outage, sinceReady.Round(time.Millisecond), reconnectBound, suite.Portico.LogTail(40))
	}
	// The old endpoint is gone for good.
	st := traffic.ProbeN(ctx, suite.Topo, client, suite.Topo.ClientIPs(netns.IPv4)[0], dst, traffic.TCP, probeTimeout, 8)
	checkAnswered(t, Flow{Name: "after the outage", From: client, To: "recon", Expect: pods(b1)}, dst, st)
}

// apiOutage stops the API server for d, calling during every second meanwhile, starts
// it again and returns the moment its /readyz first answers ok (polled every
// readyPollEvery). Whatever fails, the API server runs again when the test ends.
func apiOutage(ctx context.Context, t *testing.T, d time.Duration, during func()) (ready time.Time) {
	t.Helper()
	if err := suite.Cluster.StopAPIServer(); err != nil {
		t.Fatalf("stopping the apiserver: %v", err)
	}
	var started chan error // the outcome of StartAPIServer, once launched
	t.Cleanup(func() {
		if started != nil {
			if err := <-started; err != nil {
				t.Errorf("starting the apiserver again: %v", err)
			}
			return
		}
		sctx, scancel := context.WithTimeout(context.Background(), time.Minute)
		defer scancel()
		if err := suite.Cluster.StartAPIServer(sctx); err != nil {
			t.Errorf("starting the apiserver again: %v", err)
		}
	})
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		during()
		select {
		case <-ctx.Done():
			t.Fatalf("during the outage: %v", ctx.Err())
		case <-time.After(min(time.Second, time.Until(end))):
		}
	}
	started = make(chan error, 1)
	done := make(chan error, 1)
	go func() {
		// Not ctx: the test may end before StartAPIServer's own (slower) poll sees the
		// API server ready; StartAPIServer has a timeout of its own.
		err := suite.Cluster.StartAPIServer(context.WithoutCancel(ctx))
		done <- err
		started <- err
	}()
	return waitAPIReady(ctx, t, done)
}

// waitAPIReady polls /readyz every readyPollEvery until it answers ok and returns when
// it did. It fails the test if the start, whose outcome done delivers, fails first.
func waitAPIReady(ctx context.Context, t *testing.T, done <-chan error) time.Time {
	t.Helper()
	for {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		err := suite.Cluster.APIServerReady(pctx)
		pcancel()
		if err == nil {
			return time.Now()
		}
		select {
		case serr := <-done:
			if serr != nil {
				t.Fatalf("starting the apiserver again: %v", serr)
			}
			done = nil // it saw /readyz ok between two polls: the next poll will too
		case <-ctx.Done():
			t.Fatalf("waiting for the apiserver's /readyz: %v (last answer: %v)", ctx.Err(), err)
		case <-time.After(readyPollEvery):
		}
	}
}

// probeOnce opens one TCP connection from the client to dst.
func probeOnce(ctx context.Context, dst netip.AddrPort) traffic.Result {
	return traffic.Probe(ctx, suite.Topo, client, suite.Topo.ClientIPs(netns.IPv4)[0], dst, traffic.TCP, probeWithin)
}

// firstAnswerFrom probes dst every probeEvery until pod answers, and returns when it did
// (the end of that probe), or an error at deadline.
func firstAnswerFrom(ctx context.Context, dst netip.AddrPort, pod string, deadline time.Time) (time.Time, error) {
	want := answeredBy(pod)
	var last traffic.Result
	for n := 0; time.Now().Before(deadline); n++ {
		last = probeOnce(ctx, dst)
		if want(last) {
			return time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(probeEvery):
		}
	}
	return time.Time{}, fmt.Errorf("%s was not answered by %s before the deadline (last probe: %s %v, server %s)",
		dst, pod, last.Outcome, last.Err, last.Server)
}

// deadAfter is how long portico's HTTP/2 health check takes at most to close a connection
// that went silent (kubeapi.ReadIdleTimeout + kubeapi.PingTimeout; client-go's default
// is 45 s).
const deadAfter = kubeapi.ReadIdleTimeout + kubeapi.PingTimeout

// TestDeadConnection makes portico's connection to the API server go silent, without a
// FIN or RST: nft rules in the api namespace drop its packets. portico must notice within
// deadAfter (its connection leaves the ESTABLISHED state) and then see a change made
// meanwhile.
func TestDeadConnection(t *testing.T) {
	t.Run("vanished peer", testVanishedPeer)
	t.Run("partition", testPartition)
}

// testVanishedPeer drops the packets of portico's established connections only, as if
// the API server at their far end had vanished: new connections work. The endpoint
// written at that moment must answer within deadAfter and a little.
func testVanishedPeer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	svc, dst := reconnectService(ctx, t, "Vanished")
	ports := apiConnections(ctx, t)
	restore, err := suite.Cluster.DropTraffic(ctx, nodeAPIAddr(), ports...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = restore(context.Background()) })
	dropped := time.Now()
	if err := suite.SetEndpoints(ctx, svc, ready(b1)); err != nil {
		t.Fatal(err)
	}
	closed := waitClosed(ctx, t, ports, dropped.Add(deadAfter+15*time.Second))
	first, err := firstAnswerFrom(ctx, dst, b1, dropped.Add(deadAfter+30*time.Second))
	if err != nil {
		t.Fatalf("%v; portico log tail:\n%s", err, suite.Portico.LogTail(30))
	}
	t.Logf("connection silent: portico closed it after %v; pod-b1 answered %v after the drop began",
		closed.Sub(dropped).Round(time.Millisecond), first.Sub(dropped).Round(time.Millisecond))
	if d := closed.Sub(dropped); d > deadAfter+time.Second {
		t.Errorf("portico closed its silent connection %v after it went silent, want at most %v", d.Round(time.Millisecond), deadAfter)
	}
	if d := first.Sub(closed); d > 2*time.Second {
		t.Errorf("pod-b1 answered %v after portico closed the dead connection, want at most 2 s", d.Round(time.Millisecond))
	}
}

// partitionFor is how long testPartition cuts node-a off the API server: longer than
// deadAfter, so that portico has given up its connection and retries by then.
const partitionFor = deadAfter + 5*time.Second

// reconnectAfterPartition bounds how long after the path is back the new endpoint may
// take to answer: a connection attempt hanging at the time waits out kubeapi.DialTimeout,
// the next follows within one retry delay (400 ms), and a second is left for the
// relist and the sync.
const reconnectAfterPartition = kubeapi.DialTimeout + 1400*time.Millisecond

// testPartition drops every packet between node-a and the API server for partitionFor,
// writes a new endpoint meanwhile, and restores the path: the endpoint must answer
// within reconnectAfterPartition.
func testPartition(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	svc, dst := reconnectService(ctx, t, "Partition")
	ports := apiConnections(ctx, t)
	restore, err := suite.Cluster.DropTraffic(ctx, nodeAPIAddr())
	if err != nil {
		t.Fatal(err)
	}
	restored := false
	t.Cleanup(func() {
		if !restored {
			_ = restore(context.Background())
		}
	})
	cut := time.Now()
	if err := suite.SetEndpoints(ctx, svc, ready(b1)); err != nil {
		t.Fatal(err)
	}
	closed := waitClosed(ctx, t, ports, cut.Add(partitionFor))
	time.Sleep(time.Until(cut.Add(partitionFor)))
	if r := probeOnce(ctx, dst); !answeredBy(a1)(r) {
		t.Errorf("during the partition, %s: %s %v (server %s), want pod-a1 still", dst, r.Outcome, r.Err, r.Server)
	}
	restored = true
	if err := restore(ctx); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	first, err := firstAnswerFrom(ctx, dst, b1, healed.Add(probeFor))
	if err != nil {
		t.Fatalf("%v; portico log tail:\n%s", err, suite.Portico.LogTail(30))
	}
	t.Logf("partition of %v: portico closed its connection %v after the cut; pod-b1 answered %v after the path was back",
		partitionFor, closed.Sub(cut).Round(time.Millisecond), first.Sub(healed).Round(time.Millisecond))
	if d := first.Sub(healed); d > reconnectAfterPartition {
		t.Errorf("pod-b1 answered %v after the path was back, want at most %v; portico log tail:\n%s",
			d.Round(time.Millisecond), reconnectAfterPartition, suite.Portico.LogTail(30))
	}
}

// reconnectService creates a Service served by pod-a1 in a namespace of its own, waits
// until pod-a1 answers through it and returns it with its ClusterIP frontend.
func reconnectService(ctx context.Context, t *testing.T, name string) (*corev1.Service, netip.AddrPort) {
	t.Helper()
	svcs := apply(ctx, t, Scenario{Name: name, Services: []ServiceSetup{{Svc: service("recon"), Backends: ready(a1)}}})
	dst, err := resolve(svcs, Flow{Name: "recon", From: client, To: "recon"})
	if err != nil {
		t.Fatal(err)
	}
	// apply waited for a sync after its writes; the first probe may still race it.
	if _, err := firstAnswerFrom(ctx, dst, a1, time.Now().Add(10*time.Second)); err != nil {
		t.Fatalf("before the test: %v", err)
	}
	return svcs["recon"], dst
}

// nodeAPIAddr is node-a's address on its link to the api namespace.
func nodeAPIAddr() netip.Addr { return suite.Topo.Spec().API.NodeAddr.Addr() }

// apiConnections returns the local ports of the established TCP connections from node-a
// to the API server: portico's (nothing else in node-a talks to it).
func apiConnections(ctx context.Context, t *testing.T) []uint16 {
	t.Helper()
	ports, err := establishedToAPI(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ports) == 0 {
		t.Fatal("portico has no established connection to the API server")
	}
	return ports
}

func establishedToAPI(ctx context.Context) ([]uint16, error) {
	api := netip.AddrPortFrom(suite.Topo.APIServerIP(), cluster.APIServerPort)
	out, err := suite.Topo.Exec(ctx, nodeA, "ss", "-Htn", "state", "established", "dst", api.String()).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ss in node-a: %w: %s", err, out)
	}
	var ports []uint16
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		local, err := netip.ParseAddrPort(f[2])
		if err != nil {
			return nil, fmt.Errorf("ss line %q: %w", line, err)
		}
		ports = append(ports, local.Port())
	}
	return ports, nil
}

// waitClosed polls (every 100 ms, until deadline) until none of the connections from
// ports is established any more, and returns when.
func waitClosed(ctx context.Context, t *testing.T, ports []uint16, deadline time.Time) time.Time {
	t.Helper()
	for time.Now().Before(deadline) {
		now, err := establishedToAPI(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(ports, func(p uint16) bool { return slices.Contains(now, p) }) {
			return time.Now()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("portico still holds its silent connections (ports %v) to the API server; log tail:\n%s",
		ports, suite.Portico.LogTail(30))
	return time.Time{}
}
