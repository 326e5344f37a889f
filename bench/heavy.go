package bench

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

// The endpoint-heavy scenario: few Services with many endpoints each, where the other
// scenarios have many Services with few. Its objects live in a namespace of their own and
// exist only while it runs (before the bulk Services are created): every proxy sees them
// alone, besides the real Service.
const (
	// HeavyNamespace holds the heavy Services and the rolled Service's pods.
	HeavyNamespace = "bench-heavy"
)

// heavyBase is the first endpoint address of the heavy Services (10.160.0.0/14).
var heavyBase = netip.MustParseAddr("10.160.0.0")

// HeavyRun is the endpoint-heavy scenario: Services × Endpoints written directly as one
// EndpointSlice each, plus one Service of RollPods pods whose slices the EndpointSlice
// controller writes; each proxy's cold sync, one-endpoint changes in the heavy slices and
// a rolling update of every pod of the rolled Service.
type HeavyRun struct {
	Services  int     `json:"services"`
	Endpoints int     `json:"endpoints"`
	RollPods  int     `json:"roll_pods"`
	RollRate  float64 `json:"roll_rate"`
	// CreatedS is how long creating the objects took (the pods' included).
	CreatedS float64     `json:"created_s"`
	Proxies  []*ProxyRun `json:"proxies"`
	Errors   []string    `json:"errors,omitempty"`
}

// Proxy returns the run of the named proxy (nil if none).
func (h *HeavyRun) Proxy(name string) *ProxyRun {
	if h == nil {
		return nil
	}
	return proxyNamed(h.Proxies, name)
}

// runHeavy creates the heavy objects, runs every nftables-mode proxy against them, and
// deletes them again (also when a proxy run fails).
func (r *runner) runHeavy(ctx context.Context) (err error) {
	o := r.o
	h := &HeavyRun{Services: o.HeavyServices, Endpoints: o.HeavyEndpoints, RollPods: o.RollPods, RollRate: o.RollRate}
	r.res.Heavy = h
	defer func() {
		if err != nil {
			h.Errors = append(h.Errors, err.Error())
		}
		r.savePartial()
	}()
	objs, err := NewObjectsIn(r.e.Cluster.RESTConfig(), HeavyNamespace, heavyBase, o.HeavyEndpoints, netns.NodeB, "zone-b")
	if err != nil {
		return err
	}
	roll := newRollKit(objs.cs, HeavyNamespace, netns.NodeB)
	defer func() {
		if derr := deleteHeavy(context.WithoutCancel(ctx), objs, roll); derr != nil {
			h.Errors = append(h.Errors, "deleting the heavy objects: "+derr.Error())
			r.logf("[heavy] deleting the objects: %v", derr)
		}
	}()
	r.logf("[heavy] creating %d Services × %d endpoints and a Service of %d pods", o.HeavyServices, o.HeavyEndpoints, o.RollPods)
	t := time.Now()
	if err := objs.EnsureNamespace(ctx); err != nil {
		return err
	}
	if err := objs.Grow(ctx, o.HeavyServices, 16); err != nil {
		return fmt.Errorf("heavy services: %w", err)
	}
	if err := roll.setup(ctx, o.RollPods); err != nil {
		return fmt.Errorf("rolled service: %w", err)
	}
	h.CreatedS = time.Since(t).Seconds()
	r.logf("[heavy] created in %.1fs", h.CreatedS)
	for _, p := range r.proxies {
		if p.Mode() != ModeNFTables {
			continue
		}
		r.logf("[heavy] %s", p.Name())
		pr, err := r.runHeavyProxy(ctx, p, objs, roll)
		h.Proxies = append(h.Proxies, pr)
		r.savePartial()
		if err != nil {
			return err
		}
	}
	return nil
}

// runHeavyProxy runs one proxy against the heavy objects: cold sync (one run), one-endpoint
// changes in random heavy Services, then the rolling update.
func (r *runner) runHeavyProxy(ctx context.Context, p Proxy, objs *Objects, roll *rollKit) (pr *ProxyRun, err error) {
	pr = &ProxyRun{Proxy: p.Name(), N: r.o.HeavyServices, Mode: p.Mode()}
	defer func() {
		if err != nil {
			pr.Errors = append(pr.Errors, err.Error())
		}
		r.stopAndClean(ctx, p, pr)
	}()
	defer sampleMemory(p, pr, r.memTrace(p.Name()+"-heavy", r.o.HeavyServices))()
	if err := resetNode(ctx, r.e.Topo, p.Mode()); err != nil {
		return pr, fmt.Errorf("preparing node-a for %s: %w", p.Name(), err)
	}
	tr := startPhase("cold-sync", r.mon, p)
	expected := slices.Concat(objs.Expected(), r.objs.extraAddrs(), roll.addrs())
	pr.Cold, err = measureCold(ctx, p, r.mon, coldOpts{topo: r.e.Topo, expected: expected, limit: r.o.ColdLimit})
	pr.Phases = append(pr.Phases, tr.end(ctx, p))
	if err != nil {
		return pr, fmt.Errorf("%s cold sync of the heavy services: %w", p.Name(), err)
	}
	if pr.Cold.DNF {
		r.logf("  %s did not finish its cold sync within %s", p.Name(), r.o.ColdLimit)
		return pr, nil
	}
	pr.Cold.RunsS, pr.Cold.FastestS = []float64{pr.Cold.KernelS}, pr.Cold.KernelS
	r.logf("  cold sync %.2fs (%d commits, unseen %d/%d)", pr.Cold.KernelS, pr.Cold.Commits, pr.Cold.Unseen, pr.Cold.Expected)
	tr = startPhase("changes", r.mon, p)
	co := changeOpts{samples: r.o.HeavyChangeSamples, spacing: r.o.ChangeSpacing, timeout: r.o.ChangeTimeout}
	pr.Change, err = measureChanges(ctx, p, r.mon, objs, objs.Count(), co, r.rng)
	pr.Phases = append(pr.Phases, tr.end(ctx, p))
	if err != nil {
		return pr, err
	}
	l := pr.Change
	r.logf("  one-endpoint change in a %d-endpoint slice: %d samples (%d missed): p50 %.1fms p99 %.1fms max %.1fms",
		r.o.HeavyEndpoints, l.Samples, l.Missed, l.P50, l.P99, l.Max)
	tr = startPhase("rolling-update", r.mon, p)
	pr.Rolling, err = measureRolling(ctx, r.mon, roll, rollOpts{rate: r.o.RollRate, timeout: r.o.ChangeTimeout})
	pr.Phases = append(pr.Phases, tr.end(ctx, p))
	if err != nil {
		return pr, err
	}
	rl := pr.Rolling
	if err := checkRolled(ctx, r.e.Topo, roll, rl); err != nil {
		rl.CheckError = err.Error()
	}
	r.logf("  rolling update of %d pods at %.0f/s in %.1fs: new endpoint -> kernel p50 %.1fms p99 %.1fms max %.1fms (%d missed, %d errors); %d commits; %s",
		rl.Pods, rl.Rate, rl.Seconds, rl.Ready.P50, rl.Ready.P99, rl.Ready.Max, rl.Ready.Missed, rl.Ready.Errors, rl.Ready.Commits, rl.CheckText())
	return pr, nil
}

// deleteHeavy removes the heavy Services, their slices and the rolled Service's pods (and
// the slices the EndpointSlice controller made for it).
func deleteHeavy(ctx context.Context, objs *Objects, roll *rollKit) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := roll.teardown(ctx); err != nil {
		return err
	}
	return objs.DeleteAll(ctx)
}
