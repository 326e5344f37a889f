package proxier

import (
	"context"
	"fmt"
	"time"

	"k8s.io/klog/v2"

	"github.com/portico-dev/portico/model"
)

// conntrackTimeout bounds one family's conntrack cleanup in a sync: a slow or stuck
// netlink socket delays the sync by at most this, and the cleanup is tried again later.
const conntrackTimeout = 5 * time.Second

// conntrackState is what is left to clear in the conntrack table, per family, until a
// cleanup succeeds: the stale UDP flows of the syncs since the last successful cleanup,
// and the sweep of the first sync after a start.
type conntrackState struct {
	flows    map[model.Family]map[StaleFlow]struct{}
	sweep    map[model.Family]bool
	failures map[model.Family]int
	next     map[model.Family]time.Time
}

func newConntrackState() conntrackState {
	return conntrackState{
		flows:    map[model.Family]map[StaleFlow]struct{}{},
		sweep:    map[model.Family]bool{},
		failures: map[model.Family]int{},
		next:     map[model.Family]time.Time{},
	}
}

// queueStaleFlows records what the sync of family fam from prev to t leaves to clear: the
// first sync after a start (prev is nil) does not know what the kernel's entries point
// to, so it asks for a sweep (conntrack_sweep.go); the others add their stale flows.
func (p *Proxier) queueStaleFlows(fam model.Family, prev, t *model.Table, d model.Diff) {
	if prev == nil {
		p.ct.sweep[fam] = true
		return
	}
	flows := staleUDPFlows(prev, t, d)
	if len(flows) == 0 {
		return
	}
	set := p.ct.flows[fam]
	if set == nil {
		set = map[StaleFlow]struct{}{}
		p.ct.flows[fam] = set
	}
	for _, f := range flows {
		set[f] = struct{}{}
	}
}

// clearConntrack runs the conntrack cleanup family fam has pending, bounded by
// conntrackTimeout. A failure keeps the work for the next sync, which a timer asks for
// after a backoff (the runner's retry bounds); nothing is forgotten.
func (p *Proxier) clearConntrack(ctx context.Context, fam model.Family, now time.Time) {
	if !p.ct.sweep[fam] && len(p.ct.flows[fam]) == 0 || now.Before(p.ct.next[fam]) {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, conntrackTimeout)
	defer cancel()
	err := p.runConntrack(cctx, fam)
	if err == nil {
		p.ct.failures[fam] = 0
		delete(p.ct.next, fam)
		return
	}
	p.ct.failures[fam]++
	wait := p.runner.backoff(p.ct.failures[fam])
	p.ct.next[fam] = now.Add(wait)
	time.AfterFunc(wait, p.runner.Request)
	klog.FromContext(ctx).Error(err, "Clearing stale UDP conntrack entries failed; trying again later",
		"family", fam, "retryIn", wait, "failures", p.ct.failures[fam])
}

// runConntrack does family fam's pending work: the sweep, which covers every stale flow,
// or else the stale flows. What succeeds is forgotten.
func (p *Proxier) runConntrack(ctx context.Context, fam model.Family) error {
	if p.ct.sweep[fam] {
		if err := p.sweepConntrack(ctx, fam); err != nil {
			return err
		}
		p.ct.sweep[fam] = false
		delete(p.ct.flows, fam)
		return nil
	}
	flows := make([]StaleFlow, 0, len(p.ct.flows[fam]))
	for f := range p.ct.flows[fam] {
		flows = append(flows, f)
	}
	sortFlows(flows)
	if err := p.opts.Conntrack.DeleteUDP(ctx, fam, flows); err != nil {
		return fmt.Errorf("deleting %d stale UDP flow(s) of %s: %w", len(flows), fam, err)
	}
	delete(p.ct.flows, fam)
	return nil
}

// conntrackPending reports whether family fam has conntrack work waiting.
func (p *Proxier) conntrackPending(fam model.Family) bool {
	return p.ct.sweep[fam] || len(p.ct.flows[fam]) > 0
}
