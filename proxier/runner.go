package proxier

import (
	"context"
	"time"

	"k8s.io/klog/v2"
)

// runner calls a sync function when asked to, coalescing requests: it never runs twice
// within minInterval, runs at least every maxInterval, and after a failure retries with
// exponential backoff (from retryMin up to retryMax) until a run succeeds.
type runner struct {
	minInterval, maxInterval time.Duration
	retryMin, retryMax       time.Duration
	sync                     func(ctx context.Context) error
	trigger                  chan struct{}
	now                      func() time.Time
	// check, when set, runs every checkEvery between syncs, in the loop's goroutine (so
	// never during a sync); when it returns true a sync is due as soon as minInterval
	// allows. A sync requested while it runs cancels its context (see runCheck): check
	// must then return soon, report false and change nothing.
	check      func(ctx context.Context) bool
	checkEvery time.Duration
}

// maxCheckInterruptions is how many checks in a row a requested sync may cancel; the next
// one runs to its end whatever is requested meanwhile, so that constant churn cannot keep
// the rules from being checked.
const maxCheckInterruptions = 3

func newRunner(minInterval, maxInterval time.Duration, sync func(context.Context) error) *runner {
	return &runner{
		minInterval: minInterval,
		maxInterval: maxInterval,
		retryMin:    time.Second,
		retryMax:    30 * time.Second,
		sync:        sync,
		trigger:     make(chan struct{}, 1),
		now:         time.Now,
	}
}

// Request asks for a sync as soon as minInterval allows. It never blocks.
func (r *runner) Request() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// setCheck makes Run call check every interval between syncs (see runner.check). It must
// be called before Run; an interval of zero or less turns the check off.
func (r *runner) setCheck(every time.Duration, check func(context.Context) bool) {
	r.checkEvery, r.check = every, check
}

// checkTicks returns the channel that tells Run to call check (nil, never ready, without
// a check) and the function that stops it.
func (r *runner) checkTicks() (<-chan time.Time, func()) {
	if r.check == nil || r.checkEvery <= 0 {
		return nil, func() {}
	}
	t := time.NewTicker(r.checkEvery)
	return t.C, t.Stop
}

// runState is the runner loop's bookkeeping.
type runState struct {
	lastRun  time.Time
	pending  bool
	failures int
	// recheck: the last check was cancelled by a requested sync, and runs again after it;
	// interrupted counts the checks cancelled in a row.
	recheck     bool
	interrupted int
}

// Run loops until ctx is done. The first sync runs immediately. Between syncs it runs the
// check set by setCheck, if any.
func (r *runner) Run(ctx context.Context) {
	st := runState{pending: true}
	timer := time.NewTimer(0)
	defer timer.Stop()
	checks, stopChecks := r.checkTicks()
	defer stopChecks()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.trigger:
			st.pending = true
		case <-checks:
			r.runCheck(ctx, &st)
		case <-timer.C:
		}
		due := r.due(st)
		if wait := due.Sub(r.now()); wait > 0 {
			resetTimer(timer, wait)
			continue
		}
		r.runOnce(ctx, &st)
		if st.recheck {
			r.runCheck(ctx, &st)
		}
		resetTimer(timer, r.due(st).Sub(r.now()))
	}
}

// runCheck runs the check. A sync requested meanwhile cancels it, unless the last
// maxCheckInterruptions checks were all cancelled: a change does not wait for a check
// (with iptables, a check runs a dozen commands per family), and the cancelled check runs
// again right after the sync. It records in st whether a sync is due.
func (r *runner) runCheck(ctx context.Context, st *runState) {
	if st.interrupted >= maxCheckInterruptions {
		st.recheck, st.interrupted = false, 0
		st.pending = r.check(ctx) || st.pending
		return
	}
	checkCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	requested := make(chan bool, 1)
	done := make(chan struct{})
	go func() {
		select {
		case <-r.trigger:
			cancel()
			requested <- true
		case <-done:
			requested <- false
		}
	}()
	repair := r.check(checkCtx)
	close(done)
	if <-requested {
		st.pending, st.recheck = true, true
		st.interrupted++
		klog.FromContext(ctx).V(4).Info("A sync was requested during the rules check; the check runs again after it", "interruptedInARow", st.interrupted)
	} else {
		st.recheck, st.interrupted = false, 0
	}
	st.pending = repair || st.pending
}

// due returns when the next sync should run.
func (r *runner) due(st runState) time.Time {
	if st.failures > 0 {
		return st.lastRun.Add(r.backoff(st.failures))
	}
	if st.pending {
		return st.lastRun.Add(r.minInterval)
	}
	return st.lastRun.Add(r.maxInterval)
}

func (r *runner) backoff(failures int) time.Duration {
	d := r.retryMin
	for i := 1; i < failures && d < r.retryMax; i++ {
		d *= 2
	}
	return max(min(d, r.retryMax), r.minInterval)
}

func (r *runner) runOnce(ctx context.Context, st *runState) {
	st.lastRun = r.now()
	st.pending = false
	if err := r.sync(ctx); err != nil {
		st.failures++
		klog.FromContext(ctx).Error(err, "Sync failed; keeping the last good rules", "retryIn", r.backoff(st.failures))
		return
	}
	st.failures = 0
}

func resetTimer(t *time.Timer, d time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(max(d, 0))
}
