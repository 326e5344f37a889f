package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

// Parallel connections per probe round: a one-endpoint change is found when a connection
// lands on the one new endpoint of ten, so each round opens several; after an
// all-endpoints change any connection finds one.
const (
	probeParallelOne = 4
	probeParallelAll = 1
)

// trafficOpts are the traffic changes' parameters.
type trafficOpts struct {
	samples int // per kind
	spacing time.Duration
	timeout time.Duration
	budget  time.Duration
	// endpoints is how many endpoints a bulk Service has (an all-endpoints change
	// replaces that many).
	endpoints int
}

// trafficRun is what measureTraffic works with.
type trafficRun struct {
	topo *netns.Topology
	mon  *Monitor // nil: no nf_tables notifications (iptables-legacy)
	objs *Objects
	live *liveAddrs
	rng  *rand.Rand
}

// measureTraffic makes spaced changes, alternately of one endpoint and of all the
// endpoints of a random Service, each to never-used live addresses, and times each from
// the API write until a connection from node-a to the Service's ClusterIP is answered by
// a new endpoint — and, beside it, until the first nf_tables notification holding any of
// the new addresses (the kernel side; none with iptables-legacy).
func measureTraffic(ctx context.Context, t trafficRun, n int, o trafficOpts) *TrafficChanges {
	tc := &TrafficChanges{One: &TrafficLatency{Parallel: probeParallelOne}, All: &TrafficLatency{Parallel: probeParallelAll},
		ProbeRoundMS: float64(probeRound.Microseconds()) / 1e3}
	start := time.Now()
	for k := 0; k < 2*o.samples && ctx.Err() == nil; k++ {
		tl, count := tc.One, 1
		if k%2 == 1 {
			tl, count = tc.All, o.endpoints
		}
		if o.budget > 0 && time.Since(start) > o.budget {
			tc.One.Traffic.CutShort, tc.All.Traffic.CutShort = true, true
			break
		}
		time.Sleep(o.spacing)
		if err := trafficSample(ctx, t, t.rng.IntN(n), t.live.take(count), tl, o.timeout); err != nil {
			tl.Traffic.Errors++
			tl.LastError = err.Error()
		}
	}
	for _, tl := range []*TrafficLatency{tc.One, tc.All} {
		tl.Traffic.Samples, tl.Kernel.Samples = len(tl.Traffic.Values), len(tl.Kernel.Values)
		tl.Traffic.finish()
		tl.Kernel.finish()
	}
	return tc
}

// trafficSample makes one change of Service i to addrs and records its times in tl.
func trafficSample(ctx context.Context, t trafficRun, i int, addrs []netip.Addr, tl *TrafficLatency, timeout time.Duration) error {
	srv, err := serveLive(t.topo, addrs)
	if err != nil {
		return err
	}
	defer srv.Close()
	dst := netip.AddrPortFrom(t.objs.ClusterIP(i), 80)
	type probed struct {
		at     time.Time
		opened int
	}
	res := make(chan probed, 1)
	var ws []*Watch
	ch, err := t.objs.ReplaceEndpoints(ctx, i, addrs, t.rng, func() {
		if t.mon != nil {
			for _, a := range addrs {
				ws = append(ws, t.mon.Watch(a))
			}
		}
		go func() {
			at, opened := probeUntil(ctx, t.topo, netns.NodeA, dst, addrs, tl.Parallel, timeout)
			res <- probed{at, opened}
		}()
	})
	defer func() {
		for _, w := range ws {
			t.mon.Unwatch(w)
		}
	}()
	if err != nil {
		<-res
		return fmt.Errorf("writing the change: %w", err)
	}
	p := <-res
	tl.Connections += p.opened
	if p.at.IsZero() {
		tl.Traffic.Missed++
	} else {
		tl.Traffic.Values = append(tl.Traffic.Values, p.at.Sub(ch.Written).Seconds()*1e3)
	}
	if len(ws) > 0 {
		if at := firstSeen(ws, time.Second); at.IsZero() { // traffic flows only once the kernel has it
			tl.Kernel.Missed++
		} else {
			tl.Kernel.Values = append(tl.Kernel.Values, at.Sub(ch.Written).Seconds()*1e3)
		}
	}
	return nil
}

// firstSeen waits up to wait for the watches and returns the earliest moment one of the
// addresses appeared in a notification (zero if none did).
func firstSeen(ws []*Watch, wait time.Duration) time.Time {
	deadline := time.Now().Add(wait)
	for {
		var first time.Time
		for _, w := range ws {
			select {
			case <-w.Done():
				if first.IsZero() || w.At.Before(first) {
					first = w.At
				}
			default:
			}
		}
		if !first.IsZero() || time.Now().After(deadline) {
			return first
		}
		time.Sleep(time.Millisecond)
	}
}
