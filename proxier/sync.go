package proxier

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"k8s.io/klog/v2"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/model"
	"github.com/portico-dev/portico/proxier/health"
)

// sync is one run of the runner: compile what changed, hand each family's difference to
// the backend, clear stale conntrack entries, then do the follow-up work. Families are
// independent: one whose backend sync fails keeps its last good rules and backs off on
// its own (families.go) while the others, the conntrack cleanup and the work after the
// sync (health check servers, metrics) go on. sync returns an error, for the runner to
// back off, only when no family synced.
func (p *Proxier) sync(ctx context.Context) error {
	start := time.Now()
	ch := p.tracker.Take()
	state := p.compileChanges(ctx, ch)
	compiled := time.Since(start)
	full := start.Sub(p.lastFull) >= p.opts.FullSyncPeriod
	res := p.syncFamilies(ctx, state, full, start)
	if len(res.failed) > 0 {
		// The compiled state keeps the changes (the failed families' next diff holds them);
		// their change times wait for the retry, and so do the change counts when nothing
		// synced.
		rq := changes{triggers: familyTriggers(ch, res.failed), queued: ch.queued}
		if len(res.synced) == 0 {
			rq.services, rq.eps = ch.services, ch.eps
		}
		p.tracker.Requeue(rq)
	}
	ch.triggers = familyTriggers(ch, res.synced) // none of a family the node lacks
	// Every family failed now or waits for its retry.
	if len(res.synced) == 0 {
		p.syncServiceHealth(ctx, state)
		return errors.Join(res.errs...)
	}
	p.lastFull = cond(full, start, p.lastFull) // a failed family is full anyway (needFull)
	if ch.node || res.rewrote {
		p.opts.Memory.AfterFullSync()
	}
	if p.pendingWork(state) {
		p.runner.Request() // let the backend finish (e.g. delete what it emptied)
	}
	p.afterSync(ctx, state, ch)
	klog.FromContext(ctx).V(2).Info("Synced", "full", full, "services", len(ch.dirty), "took", time.Since(start),
		"compiling", compiled, "failedFamilies", res.failed)
	if !p.synced && p.opts.AfterFirstSync != nil {
		p.opts.AfterFirstSync()
	}
	p.synced = true
	return nil
}

// familiesResult is what syncFamilies did.
type familiesResult struct {
	synced, failed []model.Family
	errs           []error
	rewrote        bool
}

// syncFamilies syncs each family of state that is not backing off, the family with the
// fewer Service ports first, then runs the conntrack cleanup of each family that synced.
// A failure is logged and starts that family's backoff. (The kernel tools read every
// table there is before they write: nft loading an empty IPv6 table's fixed part next to
// an IPv4 one of 10,000 Services took 15 MiB instead of 4.)
func (p *Proxier) syncFamilies(ctx context.Context, state *model.State, full bool, now time.Time) familiesResult {
	var res familiesResult
	tables := slices.Clone(state.Tables)
	slices.SortStableFunc(tables, func(a, b *model.Table) int { return cmp.Compare(a.Len(), b.Len()) })
	for _, t := range tables {
		fam := t.Family()
		if p.familyWaiting(fam, now) {
			res.failed = append(res.failed, fam)
			continue
		}
		wasFull, err := p.syncFamily(ctx, t, full)
		if err != nil {
			wait := p.familyFailed(fam, now)
			klog.FromContext(ctx).Error(err, "Syncing an IP family failed; it keeps its last good rules, the other families go on",
				"family", fam, "retryIn", wait)
			res.errs = append(res.errs, err)
			res.failed = append(res.failed, fam)
			continue
		}
		p.familySynced(fam)
		res.synced = append(res.synced, fam)
		res.rewrote = res.rewrote || wasFull
	}
	for _, fam := range res.synced {
		p.clearConntrack(ctx, fam, now)
	}
	return res
}

// cond returns a when c holds, else b.
func cond[T any](c bool, a, b T) T {
	if c {
		return a
	}
	return b
}

// compileChanges recompiles the dirty Services (all of them after a node change). Each
// problem is logged, counted and sent to Options.Events.
func (p *Proxier) compileChanges(ctx context.Context, ch changes) *model.State {
	node := p.nodeInfo(ctx)
	dirty := ch.dirty
	if p.compiler.NodeChanged(node) {
		dirty = p.allServiceNames()
	}
	state, problems := p.compiler.Update(node, dirty, p.source)
	for _, err := range problems {
		klog.FromContext(ctx).Error(err, "Skipping an invalid field or object; the rest is still served")
		p.opts.Recorder.IncInvalid(invalidKind(err))
		p.reportProblem(err)
	}
	return state
}

// syncFamily hands one table's difference to the backend and, when it succeeds, clears
// stale UDP flows and updates the per-family bookkeeping. It reports whether the backend
// rewrote the whole family. A backends.SkippedError is a success for every Service port
// but those it names: each is logged, counted as an invalid object and reported on its
// Service (Options.Events), and the backend keeps trying them (when they change, in full
// syncs, and after a backoff that it reports as pending work).
func (p *Proxier) syncFamily(ctx context.Context, t *model.Table, full bool) (bool, error) {
	fam := t.Family()
	prev := p.applied[fam]
	d := model.Compare(prev, t)
	d.Full = d.Full || full || p.needFull[fam]
	if d.Empty() && !p.backendPending(fam) {
		p.opts.Health.Updated(fam)
		p.opts.Recorder.SetLastSync(fam, time.Now())
		return false, nil
	}
	start := time.Now()
	err := p.backend.Sync(ctx, t, d)
	if skipped, ok := backends.AsSkipped(err); ok {
		for _, sp := range skipped.Ports {
			klog.FromContext(ctx).Error(sp.Err, "Skipping a Service port the backend cannot program; the others are synced",
				"servicePort", sp.Name.String(), "family", fam, "backend", p.backend.Name())
			p.opts.Recorder.IncInvalid("serviceport")
			p.reportSkipped(fam, sp)
		}
		err = nil
	}
	p.reportWarnings(ctx, fam)
	if err != nil {
		p.needFull[fam] = true
		p.opts.Recorder.IncSyncError(p.backend.Name(), fam)
		return false, fmt.Errorf("%s backend, %s: %w", p.backend.Name(), fam, err)
	}
	p.opts.Recorder.ObserveSync(fam, d.Full, time.Since(start))
	p.applied[fam] = t
	p.needFull[fam] = false
	p.opts.Health.Updated(fam)
	p.opts.Recorder.SetLastSync(fam, time.Now())
	p.trackPorts(t, d)
	p.queueStaleFlows(fam, prev, t, d) // cleared by sync once every family is done
	return d.Full, nil
}

// backendPending reports whether the backend has work left for family fam.
func (p *Proxier) backendPending(fam model.Family) bool {
	d, ok := p.backend.(backends.Deferrer)
	return ok && d.PendingWork(fam)
}

func (p *Proxier) pendingWork(state *model.State) bool {
	for _, t := range state.Tables {
		if p.backendPending(t.Family()) {
			return true
		}
	}
	return false
}

// afterSync records metrics and updates the health check servers after a sync in which at
// least one family synced.
func (p *Proxier) afterSync(ctx context.Context, state *model.State, ch changes) {
	now := time.Now()
	for _, triggers := range ch.triggers {
		for _, t := range triggers {
			p.opts.Recorder.ObserveNetworkProgramming(t.family, now.Sub(t.at))
		}
	}
	p.gen++
	p.opts.Recorder.SetGeneration(p.gen)
	p.opts.Recorder.IncChanges(ch.services, ch.eps)
	s, e := p.tracker.Pending()
	p.opts.Recorder.SetPending(s, e)
	for _, t := range state.Tables {
		for _, policy := range []string{policyInternal, policyExternal} {
			p.opts.Recorder.SetNoLocalEndpoints(policy, t.Family(), len(p.noLocal[noLocalKey{t.Family(), policy}]))
		}
	}
	p.syncServiceHealth(ctx, state)
}

// syncServiceHealth updates the health check node port servers to state. It runs after
// every sync, even one in which every family failed.
func (p *Proxier) syncServiceHealth(ctx context.Context, state *model.State) {
	if p.opts.ServiceHealth != nil {
		if err := p.opts.ServiceHealth.Sync(ctx, p.healthChecks(state)); err != nil {
			klog.FromContext(ctx).Error(err, "Updating health check node port servers")
		}
	}
}

// Policy labels of the no-local-endpoints metric.
const (
	policyInternal = "internal"
	policyExternal = "external"
)

// noLocalKey selects one no-local-endpoints count.
type noLocalKey struct {
	family model.Family
	policy string
}

// trackPorts updates, from the ports d names, the Services with a healthCheckNodePort and
// the Local-policy ports that have no local endpoint.
func (p *Proxier) trackPorts(t *model.Table, d model.Diff) {
	names := d.Changed
	if d.Full {
		names = t.Names()
		p.noLocal[noLocalKey{t.Family(), policyInternal}] = map[model.ServicePortName]bool{}
		p.noLocal[noLocalKey{t.Family(), policyExternal}] = map[model.ServicePortName]bool{}
	}
	for _, n := range d.Removed {
		p.setNoLocal(t.Family(), n, nil)
	}
	for _, n := range names {
		sp, _ := t.Get(n)
		p.setNoLocal(t.Family(), n, sp)
		if sp != nil && sp.HealthCheckNodePort != 0 {
			p.hcNames[n.Service()] = true
		}
	}
}

func (p *Proxier) setNoLocal(fam model.Family, n model.ServicePortName, sp *model.ServicePort) {
	for _, c := range []struct {
		policy string
		none   bool
	}{
		{policyInternal, sp != nil && sp.Internal.Endpoints == model.LocalEndpoints && sp.Verdict(model.Internal) == model.Drop},
		{policyExternal, sp != nil && sp.External.Endpoints == model.LocalEndpoints && sp.Verdict(model.External) == model.Drop},
	} {
		k := noLocalKey{fam, c.policy}
		if p.noLocal[k] == nil {
			p.noLocal[k] = map[model.ServicePortName]bool{}
		}
		if c.none {
			p.noLocal[k][n] = true
		} else {
			delete(p.noLocal[k], n)
		}
	}
}

// healthChecks returns the health check entries of every Service that has one, with the
// number of endpoints on this node.
func (p *Proxier) healthChecks(state *model.State) map[model.ServiceName]health.ServiceEntry {
	out := map[model.ServiceName]health.ServiceEntry{}
	for _, t := range state.Tables {
		for name := range p.hcNames {
			p.addHealthChecks(out, t, name)
		}
	}
	for name := range p.hcNames {
		if _, ok := out[name]; !ok {
			delete(p.hcNames, name)
		}
	}
	return out
}

func (p *Proxier) addHealthChecks(out map[model.ServiceName]health.ServiceEntry, t *model.Table, name model.ServiceName) {
	for _, pn := range p.compiler.Ports(name, t.Family()) {
		sp, ok := t.Get(pn)
		if !ok || sp.HealthCheckNodePort == 0 {
			continue
		}
		hc := out[name]
		hc.Port = sp.HealthCheckNodePort
		hc.LocalEndpoints = max(hc.LocalEndpoints, len(sp.Local))
		out[name] = hc
	}
}

// invalidKind tells which kind of object a compile problem is about, for the metric.
func invalidKind(err error) string {
	msg := err.Error()
	for _, k := range []string{"endpointslice", "service"} {
		if len(msg) > len(k) && msg[:len(k)] == k {
			return k
		}
	}
	return "other"
}
