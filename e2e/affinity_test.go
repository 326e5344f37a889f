//go:build e2e

package e2e

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/portico-dev/portico/e2e/harness/netns"
	"github.com/portico-dev/portico/e2e/harness/traffic"
)

// TestSessionAffinityTimeout checks that ClientIP affinity expires: with timeoutSeconds 2
// a client sticks to one endpoint while it keeps connecting, and after staying away
// longer than the timeout it is balanced afresh. (Stickiness itself is in the static
// table: SessionAffinity.)
func TestSessionAffinityTimeout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const timeout = 2 // seconds
	svcs := apply(ctx, t, Scenario{
		Name:     "AffinityTimeout",
		Services: []ServiceSetup{{Svc: service("sticky", affinity(timeout)), Backends: ready(a1, b1, b2)}},
	})
	dst, err := resolve(svcs, Flow{Name: "affinity", To: "sticky"})
	if err != nil {
		t.Fatal(err)
	}
	src := suite.Topo.ClientIPs(netns.IPv4)[0]
	valid := map[netip.Addr]bool{}
	for _, p := range []string{a1, b1, b2} {
		valid[suite.Topo.PodIP(p, netns.IPv4)] = true
	}
	// round probes a few times in quick succession (well within the timeout): every probe
	// must reach the same endpoint, which the round returns.
	round := func(n int) netip.Addr {
		t.Helper()
		st := traffic.ProbeN(ctx, suite.Topo, client, src, dst, traffic.TCP, probeTimeout, 4)
		if st.OK() != st.Sent || len(st.Servers) != 1 {
			t.Fatalf("round %d: want 4 answers from one endpoint (affinity within the timeout), got %s", n, st)
		}
		for s := range st.Servers {
			if !valid[s.Addr()] {
				t.Fatalf("round %d: answered by %s, not an endpoint of the Service", n, s)
			}
			return s.Addr()
		}
		return netip.Addr{}
	}
	seen := map[netip.Addr]bool{round(0): true}
	// After timeout+1 s without traffic the client's affinity entry has expired and it is
	// balanced at random over 3 endpoints, so each round lands on the endpoint it used
	// first with probability 1/3. Staying on one endpoint for 8 rounds in a row when
	// affinity does expire has probability (1/3)^8 = 1/6561 (about 0.015%); with affinity
	// that never expires it is certain. Most runs end after one or two rounds.
	const maxRounds = 8
	rounds := 0
	for rounds < maxRounds && len(seen) < 2 {
		rounds++
		time.Sleep((timeout + 1) * time.Second)
		seen[round(rounds)] = true
	}
	if len(seen) < 2 {
		t.Errorf("after %d rounds each preceded by %ds without traffic, the client always reached %v: the %ds affinity never expired",
			rounds, timeout+1, sortedAddrs(seen), timeout)
	} else {
		t.Logf("the client moved to another endpoint after %d round(s): %v", rounds, sortedAddrs(seen))
	}
}
