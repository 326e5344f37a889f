//go:build e2e

package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

// TestStaleUDPAfterRestart changes the endpoints of a UDP Service while portico is down.
// Connected UDP sockets (one conntrack entry each, DNATed to pod-a1) keep talking; the
// kernel keeps the old rules and entries, so pod-a1 still answers them. After the start,
// portico's first sync sweeps the entries whose DNAT target is no longer an endpoint: the
// sockets reach pod-a2 within seconds, where the stale entries would last as long as the
// sockets keep talking.
func TestStaleUDPAfterRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	svcs := apply(ctx, t, Scenario{
		Name: "RestartUDP",
		Services: []ServiceSetup{{
			Svc:      service("dns", loadBalancer(), ports(udp("dns", 53))),
			Backends: ready(a1),
			LB:       []string{"192.168.60.52"},
		}},
	})
	svc := svcs["dns"]
	socks := dialUDP(ctx, t, svcs, "dns", viaClusterIP, viaNodePort)
	each := socks.each
	each(t, "before the restart", 3, time.Second, answeredBy(a1), "want an answer from pod-a1")

	t.Cleanup(func() {
		if !suite.Portico.Running() {
			sctx, scancel := context.WithTimeout(context.Background(), time.Minute)
			defer scancel()
			if err := suite.Portico.Start(sctx); err != nil {
				t.Errorf("starting portico again: %v", err)
			}
		}
	})
	if err := suite.Portico.Stop(); err != nil {
		t.Fatalf("stopping portico: %v", err)
	}
	if err := suite.SetEndpoints(ctx, svc, ready(a2)); err != nil {
		t.Fatalf("replacing pod-a1 with pod-a2 while portico is down: %v", err)
	}
	// The kernel still has the old rules and the sockets' entries.
	each(t, "portico down, endpoints changed", 3, time.Second, answeredBy(a1), "want pod-a1 still (the old rules)")
	socks.requireEntriesTo(t, a1)

	start := time.Now()
	if err := suite.Portico.Start(ctx); err != nil { // waits until it has synced
		t.Fatalf("starting portico: %v", err)
	}
	t.Logf("portico started and synced in %v", time.Since(start).Round(time.Millisecond))
	// 300 ms apart for 3 s: a stale entry would outlive that by far (the socket keeps it
	// alive), while the sweep follows the first sync.
	each(t, "after the restart", 10, 300*time.Millisecond, answeredBy(a2),
		"never reached pod-a2 (the entry to pod-a1 left from before the restart was not deleted)")
	entries, err := conntrackEntries(nodeA, "udp")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.replySrc.Addr() == suite.Topo.PodIP(a1, netns.IPv4) {
			t.Errorf("an entry DNATed to pod-a1 is left: %v", e)
		}
	}
}
