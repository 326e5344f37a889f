package nftables

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/model"
)

// A Service port whose objects the kernel rejects must not keep the others out of it.
// Rendering is guarded (guard.go); a transaction the kernel rejects is followed by checks
// (nft --check, which commits nothing) of the table's fixed part with some of the ports,
// written as a full sync writes them, to find the ports at fault. Those are skipped: left
// out of the kernel, reported in a backends.SkippedError and tried again later. See
// README.md, "Failures confined to a Service port".

// Bounds of the search for the ports at fault.
const (
	// maxConfineRounds bounds the full writes that one sync retries after the first one
	// failed, each after a search that found more ports at fault.
	maxConfineRounds = 4
	// maxSkipped bounds the ports a family may skip: with more, the fault is hardly in
	// single ports, the search gets long, and the sync fails as a whole instead.
	maxSkipped = 64
)

// Waits before the skipped ports are tried again (also tried whenever a Diff names them
// and in every full sync): doubled after every try that fails, from retryMin to retryMax.
const (
	retryMin = 10 * time.Second
	retryMax = 10 * time.Minute
)

// errTooMany stops a search that found more than maxSkipped ports at fault.
var errTooMany = fmt.Errorf("more than %d Service ports are rejected", maxSkipped)

// skip leaves the port called n out of the kernel because of err, and reports it.
func (fs *familyState) skip(n model.ServicePortName, err error) {
	fs.skipped[n] = err
	fs.report[n] = err
}

// skippedError returns the ports the sync tried and could not program, or nil.
func (fs *familyState) skippedError() error {
	if len(fs.report) == 0 {
		return nil
	}
	e := &backends.SkippedError{Family: fs.r.f.family}
	for _, n := range slices.SortedFunc(maps.Keys(fs.report), model.ServicePortName.Compare) {
		e.Ports = append(e.Ports, backends.SkippedPort{Name: n, Err: fs.report[n]})
	}
	return e
}

// retryDue reports whether skipped ports wait for a try that is due.
func (fs *familyState) retryDue() bool {
	return len(fs.skipped) > 0 && !fs.now().Before(fs.retryAt)
}

// scheduleRetry sets when the skipped ports are tried next, at the end of a sync: later
// (backing off) when this sync skipped a port or its try was due.
func (fs *familyState) scheduleRetry() {
	now := fs.now()
	if len(fs.skipped) == 0 {
		fs.retryAt, fs.retryBackoff = time.Time{}, 0
		return
	}
	if len(fs.report) == 0 && now.Before(fs.retryAt) {
		return
	}
	fs.retryBackoff = min(max(2*fs.retryBackoff, retryMin), retryMax)
	fs.retryAt = now.Add(fs.retryBackoff)
}

// fullSync rewrites the table (cold load or atomic rewrite), leaving out the ports the
// kernel rejects. The skipped ports and the suspects (the ports of a partial transaction
// that failed) are checked first; if the write still fails, the ports at fault are
// searched among the others, left out, and the write is retried.
func (fs *familyState) fullSync(ctx context.Context, t *model.Table, mark uint32, observe func(int), suspects []model.ServicePortName) error {
	clear(fs.report)
	existing, found, err := fs.listExisting(ctx)
	if err != nil {
		fs.reset()
		return err
	}
	for n := range fs.suspects {
		suspects = append(suspects, n)
	}
	fs.precheck(ctx, t, mark, existing, suspects)
	for round := 0; ; round++ {
		if err = fs.writeFull(ctx, t, mark, observe, existing, found); err == nil {
			break
		}
		if round == maxConfineRounds || ctx.Err() != nil {
			return err
		}
		if existing, found, err = fs.findAtFault(ctx, t, mark, err); err != nil {
			return err
		}
	}
	clear(fs.suspects)
	fs.scheduleRetry()
	return fs.skippedError()
}

// writeFull writes the table: loaded piece by piece into an empty kernel, else rewritten
// in one atomic transaction.
func (fs *familyState) writeFull(ctx context.Context, t *model.Table, mark uint32, observe func(int), existing existingObjects, found bool) error {
	if !found {
		return fs.coldLoad(ctx, t, mark, observe)
	}
	return fs.fullRewrite(ctx, t, mark, existing, observe)
}

// findAtFault searches, after a full write failed with writeErr, the ports at fault among
// those written, and skips them. It returns the kernel's objects for the next write, or
// writeErr when no port is at fault (or the search failed: its error is added).
func (fs *familyState) findAtFault(ctx context.Context, t *model.Table, mark uint32, writeErr error) (existingObjects, bool, error) {
	existing, found, err := fs.listExisting(ctx)
	if err != nil {
		return existing, found, writeErr
	}
	var ports, suspects []*model.ServicePort
	for _, sp := range fullOrder(t) {
		switch _, skipped := fs.skipped[sp.Name]; {
		case skipped:
		case fs.suspects[sp.Name]:
			suspects = append(suspects, sp)
		default:
			ports = append(ports, sp)
		}
	}
	ports = append(ports, suspects...) // blamed first for faults of ports together
	c := fs.newChecker(t.Node(), mark, existing)
	bad, err := c.culprits(ctx, ports)
	if err == nil && len(fs.skipped)+len(bad) > maxSkipped {
		err = errTooMany
	}
	switch {
	case err != nil:
		return existing, found, fmt.Errorf("%w (searching the Service ports at fault: %w)", writeErr, err)
	case len(bad) == 0:
		return existing, found, writeErr
	}
	for n, e := range bad {
		fs.skip(n, e)
	}
	return existing, found, nil
}

// precheck checks, before a full write, the ports most likely to be rejected — those
// skipped so far and the suspects — and skips those the kernel rejects; the others are
// written, and those skipped so far become suspects: a port that conflicts with another
// one is accepted alone, and must stay the one blamed rather than knock out the port it
// conflicts with. When even the check of the table's fixed part fails, the earlier skips
// stay (unreported) and the write tells what is wrong.
func (fs *familyState) precheck(ctx context.Context, t *model.Table, mark uint32, existing existingObjects, suspects []model.ServicePortName) {
	earlier := fs.skipped
	fs.skipped = map[model.ServicePortName]error{}
	ports := portsNamed(t, slices.Concat(suspects, slices.Collect(maps.Keys(earlier))))
	if len(ports) == 0 {
		return
	}
	bad, err := fs.newChecker(t.Node(), mark, existing).isolate(ctx, ports, false)
	if err != nil {
		for _, sp := range ports {
			if e, ok := earlier[sp.Name]; ok {
				fs.skipped[sp.Name] = e
			}
		}
		return
	}
	for n, e := range bad {
		fs.skip(n, e)
	}
	for n := range earlier {
		if _, rejected := bad[n]; !rejected {
			fs.suspects[n] = true
		}
	}
}

// portsNamed returns the ports of t called names, sorted by name, each once.
func portsNamed(t *model.Table, names []model.ServicePortName) []*model.ServicePort {
	slices.SortFunc(names, model.ServicePortName.Compare)
	var out []*model.ServicePort
	for _, n := range slices.Compact(names) {
		if sp, ok := t.Get(n); ok {
			out = append(out, sp)
		}
	}
	return out
}

// partialSync writes the ports d names (and the skipped ports due for a try). When the
// kernel rejects the transaction and a check finds the fault in the table's Service ports
// (a changed port rejected alone, or the table's ports rejected together: a changed port
// conflicting with another one), the sync goes on as a full one, which leaves the ports at
// fault out (the changed ones checked and blamed first; the failed transaction had already
// changed the mirror). A failure that no check explains is returned, and the next sync is
// full.
func (fs *familyState) partialSync(ctx context.Context, t *model.Table, mark uint32, observe func(int), d model.Diff) (cleanupOnly bool, err error) {
	clear(fs.report)
	d = fs.retrySkipped(ctx, t, mark, d)
	w := fs.partialTransaction(t, d)
	if observe != nil {
		observe(w.size())
	}
	cleanupOnly = len(w.deletes) > 0 && len(w.deletes) == w.size()
	if err := fs.apply(ctx, w); err != nil {
		fs.reset()
		for _, n := range d.Changed {
			fs.suspects[n] = true
		}
		if !fs.portsRejected(ctx, t, mark, d.Changed) {
			return cleanupOnly, fmt.Errorf("nftables transaction of %d operations: %w", w.size(), err)
		}
		return false, fs.fullSync(ctx, t, mark, observe, nil)
	}
	fs.committed()
	fs.scheduleRetry()
	return cleanupOnly, fs.skippedError()
}

// portsRejected reports whether the kernel accepts the table's fixed part but rejects it
// with the objects of the named ports, or with those of every port of t not skipped.
func (fs *familyState) portsRejected(ctx context.Context, t *model.Table, mark uint32, names []model.ServicePortName) bool {
	if ctx.Err() != nil {
		return false
	}
	existing, _, err := fs.listExisting(ctx)
	if err != nil {
		return false
	}
	c := fs.newChecker(t.Node(), mark, existing)
	if c.check(ctx, nil) != nil {
		return false
	}
	if ports := portsNamed(t, slices.Clone(names)); len(ports) > 0 && c.check(ctx, ports) != nil {
		return true
	}
	all := slices.DeleteFunc(fullOrder(t), func(sp *model.ServicePort) bool {
		_, skipped := fs.skipped[sp.Name]
		return skipped
	})
	return c.check(ctx, all) != nil
}

// retrySkipped decides what a partial sync does with the skipped ports: those d removes
// are forgotten; those d changes, or all of them when their try is due, are checked with
// the table's fixed part. The ones the kernel accepts now are written (added to the
// Diff's Changed), the others stay out (taken out of Changed) and are reported.
func (fs *familyState) retrySkipped(ctx context.Context, t *model.Table, mark uint32, d model.Diff) model.Diff {
	for _, n := range d.Removed {
		delete(fs.skipped, n)
	}
	due := fs.retryDue()
	var try []model.ServicePortName
	for n := range fs.skipped {
		switch _, ok := t.Get(n); {
		case !ok:
			delete(fs.skipped, n)
		case due || slices.Contains(d.Changed, n):
			try = append(try, n)
		}
	}
	if len(try) == 0 {
		return d
	}
	ports := portsNamed(t, try)
	bad, err := fs.newChecker(t.Node(), mark, fs.mirrorExisting()).isolate(ctx, ports, false)
	changed := slices.DeleteFunc(slices.Clone(d.Changed), func(n model.ServicePortName) bool {
		_, skipped := fs.skipped[n]
		return skipped
	})
	for _, sp := range ports {
		switch e, rejected := bad[sp.Name]; {
		case err != nil: // nothing could be checked: they stay out, unreported
		case rejected:
			fs.skip(sp.Name, e)
		default:
			delete(fs.skipped, sp.Name)
			changed = append(changed, sp.Name)
		}
	}
	return model.Diff{Full: d.Full, Changed: changed, Removed: d.Removed}
}

// mirrorExisting returns the objects of the kernel that a check needs to know of (the
// endpoint maps, which the head of a full sync flushes), as the mirror knows them.
func (fs *familyState) mirrorExisting() existingObjects {
	return existingObjects{sets: slices.Sorted(maps.Keys(fs.epMaps))}
}

// checker asks the kernel, without changing anything, whether it accepts the table's
// fixed part (the head of a full sync, for the table's Node settings and the kernel's
// endpoint maps) together with the objects of some ports, rendered into a mirror of its
// own.
type checker struct {
	fs       *familyState
	node     model.Node
	mark     uint32
	existing existingObjects
	// checks counts the checks run (the tests read it).
	checks int
}

func (fs *familyState) newChecker(node model.Node, mark uint32, existing existingObjects) *checker {
	return &checker{fs: fs, node: node, mark: mark, existing: existing}
}

// check returns the kernel's answer for the fixed part with the objects of ports.
func (c *checker) check(ctx context.Context, ports []*model.ServicePort) error {
	c.checks++
	scratch := newFamilyState(c.fs.nft, c.fs.r.f)
	scratch.batched = c.fs.batched
	_, err := scratch.stream(ctx, true, func(emit func(*txWriter) error) error {
		w, err := scratch.renderPorts(c.node, ports, c.mark, c.existing, minChunkOps, emit)
		if err != nil {
			return err
		}
		return emit(w)
	})
	return err
}

// culprits returns the ports at fault after a write of ports failed: those the kernel
// rejects on their own; if there are none, the first that it rejects together with the
// ports before it; none when the ports together are accepted (the failure lies
// elsewhere).
func (c *checker) culprits(ctx context.Context, ports []*model.ServicePort) (map[model.ServicePortName]error, error) {
	bad, err := c.isolate(ctx, ports, true)
	if err != nil || len(bad) > 0 {
		return bad, err
	}
	return c.firstConflict(ctx, ports)
}

// isolate returns the ports whose objects the kernel rejects on their own (with the fixed
// part), by bisection: a group that fails is split in halves until single ports remain.
// failed says that ports fail together (not checked again). It fails when even the fixed
// part is rejected (then no port can be blamed), when the context ends, or past
// maxSkipped ports.
func (c *checker) isolate(ctx context.Context, ports []*model.ServicePort, failed bool) (map[model.ServicePortName]error, error) {
	if err := c.check(ctx, nil); err != nil {
		return nil, fmt.Errorf("the table without Service ports is rejected: %w", err)
	}
	bad := map[model.ServicePortName]error{}
	return bad, c.bisect(ctx, ports, failed, bad)
}

func (c *checker) bisect(ctx context.Context, ports []*model.ServicePort, failed bool, bad map[model.ServicePortName]error) error {
	if len(ports) == 0 {
		return nil
	}
	if !failed {
		err := c.check(ctx, ports)
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case len(ports) == 1:
			bad[ports[0].Name] = fmt.Errorf("the kernel rejects its objects: %w", err)
			if len(bad) > maxSkipped {
				return errTooMany
			}
			return nil
		}
	}
	mid := len(ports) / 2
	if err := c.bisect(ctx, ports[:mid], false, bad); err != nil {
		return err
	}
	return c.bisect(ctx, ports[mid:], false, bad)
}

// firstConflict returns the first port, in the order of ports, that the kernel rejects
// together with the ports before it (the shortest rejected prefix ends with it), or none
// when all of ports are accepted. It is for faults that no port has alone (two ports
// claiming overlapping elements): O(log n) checks of up to n ports.
func (c *checker) firstConflict(ctx context.Context, ports []*model.ServicePort) (map[model.ServicePortName]error, error) {
	hiErr := c.check(ctx, ports)
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case hiErr == nil:
		return nil, nil
	}
	lo, hi := 0, len(ports) // the first lo ports are accepted, the first hi rejected
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		err := c.check(ctx, ports[:mid])
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case err != nil:
			hi, hiErr = mid, err
		default:
			lo = mid
		}
	}
	return map[model.ServicePortName]error{
		ports[hi-1].Name: fmt.Errorf("the kernel rejects its objects together with those of the Service ports written before it: %w", hiErr),
	}, nil
}
