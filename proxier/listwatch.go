package proxier

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/watchlist"
	"k8s.io/klog/v2"
)

// Reconnecting to the API server.
//
// client-go's reflector retries a failed list or watch with its own backoff: 800 ms,
// doubling up to 30 s, reset only every two minutes. After an outage of a minute a node
// could go on without the API server's changes for half a minute more. portico's
// list-watches are wrapped (reconnecting) so that a request that fails for want of the
// API server (no answer, 429, 502-504) is retried inside the wrapper, after a short,
// capped, jittered delay, and the four list-watches share one apiLink: together they
// make one attempt per delay, and the first that gets through wakes the others.
//
// A watch resumes from the last resource version the reflector saw. If the API server is
// away for longer than resumeGrace, the wrapper gives the reflector an error that it
// cannot retry in place, so the reflector spends its own delay while the server is still
// away and then relists; that relist is retried in the wrapper until the server answers.
// Resuming later would be pointless as well as slow: a restarted API server no longer
// knows the old resource version ("too old resource version"), and the reflector would
// then wait its delay after the server is back.

// Backoff of the reconnect attempts: the delay after the nth consecutive failure is
// initial·2^(n-1), at most max, scaled by a random factor in [1-jitter, 1]. Jitter spreads
// thousands of nodes over the interval; the cap bounds how late a node notices that the
// API server is back.
const (
	reconnectInitial = 100 * time.Millisecond
	reconnectMax     = 400 * time.Millisecond
	reconnectJitter  = 0.5
	// resumeGrace is how long a watch that resumes from a resource version is retried
	// before the reflector is made to relist.
	resumeGrace = time.Second
	// stillFailingEvery is how often a continuing failure is logged again.
	stillFailingEvery = 30 * time.Second
)

// backoff computes reconnect delays.
type backoff struct {
	initial, max time.Duration
	jitter       float64
	rand         func() float64 // in [0, 1)
}

func defaultBackoff() backoff {
	return backoff{initial: reconnectInitial, max: reconnectMax, jitter: reconnectJitter, rand: rand.Float64}
}

// delay returns the wait after the nth consecutive failure (n ≥ 1).
func (b backoff) delay(n int) time.Duration {
	d := b.initial
	for i := 1; i < n && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	return time.Duration(float64(d) * (1 - b.jitter*b.rand()))
}

// apiLink is the state of the connection to the API server that a node's list-watches
// share: consecutive failures, when the next attempt may be made, and a channel closed
// when a request gets through again.
type apiLink struct {
	backoff backoff
	grace   time.Duration

	mu       sync.Mutex
	failures int
	since    time.Time // first failure of the current streak
	next     time.Time // no attempt before this while failing
	up       chan struct{}
	lastLog  time.Time
}

// newAPILink returns a link with portico's reconnect backoff.
func newAPILink() *apiLink {
	return &apiLink{backoff: defaultBackoff(), grace: resumeGrace}
}

// turn waits until the caller may make a request: at once while the link is up;
// while it is down, when the shared next-attempt time comes (the caller then holds
// the attempt: the next one is pushed one delay further) or when another request got
// through.
func (l *apiLink) turn(ctx context.Context) error {
	for {
		l.mu.Lock()
		now := time.Now()
		if l.failures == 0 || !now.Before(l.next) {
			if l.failures > 0 {
				l.next = now.Add(l.backoff.delay(l.failures))
			}
			l.mu.Unlock()
			return nil
		}
		wait, up := l.next.Sub(now), l.up
		l.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-up:
			t.Stop()
			// A request got through; go at once (failures is 0 unless a new streak began).
			l.mu.Lock()
			if l.failures > 0 && l.up != up {
				l.mu.Unlock()
				continue
			}
			l.mu.Unlock()
			return nil
		case <-t.C:
		}
	}
}

// failed records a request that failed for want of the API server.
func (l *apiLink) failed(ctx context.Context, source string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if l.failures == 0 {
		l.since, l.lastLog, l.up = now, now, make(chan struct{})
		klog.FromContext(ctx).Info("API server unreachable; retrying", "source", source, "err", err.Error())
	} else if now.Sub(l.lastLog) >= stillFailingEvery {
		l.lastLog = now
		klog.FromContext(ctx).Info("API server still unreachable; retrying", "source", source,
			"for", now.Sub(l.since).Round(time.Millisecond), "attempts", l.failures+1, "err", err.Error())
	}
	l.failures++
	l.next = later(l.next, now.Add(l.backoff.delay(l.failures)))
}

// succeeded records a request that got through, and wakes the list-watches waiting for
// their turn.
func (l *apiLink) succeeded(ctx context.Context, source string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failures == 0 {
		return
	}
	klog.FromContext(ctx).Info("API server reachable again", "source", source,
		"after", time.Since(l.since).Round(time.Millisecond), "failedAttempts", l.failures)
	l.failures = 0
	close(l.up)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// unreachable reports whether err means that the API server could not be reached or
// could not serve for now, so that the same request may succeed later: no answer at all
// (refused, reset, timed out, TLS, EOF), 429 (after the REST client honoured its
// Retry-After), 502, 503 and 504 (except that a resource version is newer than the server
// knows, which the reflector handles). Any other answer, such as 410 (too old resource
// version), 403 or 404, is the reflector's to handle, with its own backoff.
func unreachable(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
	}
	switch status.Status().Code {
	case 429, 502, 503:
		return true
	case 504:
		return !apierrors.HasStatusCause(err, metav1.CauseTypeResourceVersionTooLarge)
	}
	return false
}

// relistError ends a watch that could not resume within the grace period. It keeps the
// cause's message but not the cause itself: client-go would recognise a refused
// connection or a 429 in it and retry the stale watch with its own backoff, instead of
// returning to relist.
type relistError struct{ msg string }

func (e *relistError) Error() string { return e.msg }

// reconnecting is a ListerWatcher that retries requests that fail for want of the API
// server (see the comment at the top of this file).
type reconnecting struct {
	inner  cache.ListerWatcherWithContext
	source string
	link   *apiLink
	// noWatchList is the inner ListerWatcher's answer to
	// IsWatchListSemanticsUnSupported (fakes in tests).
	noWatchList bool
}

// newReconnecting wraps lw; source names it in logs.
func newReconnecting(lw cache.ListerWatcher, source string, link *apiLink) *reconnecting {
	return &reconnecting{
		inner:       cache.ToListerWatcherWithContext(lw),
		source:      source,
		link:        link,
		noWatchList: watchlist.DoesClientNotSupportWatchListSemantics(lw),
	}
}

// IsWatchListSemanticsUnSupported passes on the inner ListerWatcher's answer.
func (r *reconnecting) IsWatchListSemanticsUnSupported() bool { return r.noWatchList }

// ListWithContext lists, retrying while the API server cannot be reached.
func (r *reconnecting) ListWithContext(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	var out runtime.Object
	err := r.retry(ctx, false, func(ctx context.Context) error {
		var err error
		out, err = r.inner.ListWithContext(ctx, opts)
		return err
	})
	return out, err
}

// WatchWithContext starts a watch, retrying while the API server cannot be reached. A
// watch that resumes from a resource version is retried for the grace period only; one
// that starts with the initial events (a relist) until it succeeds.
func (r *reconnecting) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	resume := opts.SendInitialEvents == nil || !*opts.SendInitialEvents
	var out watch.Interface
	err := r.retry(ctx, resume, func(ctx context.Context) error {
		var err error
		out, err = r.inner.WatchWithContext(ctx, opts)
		return err
	})
	return out, err
}

// List lists without a context (cache.Lister).
func (r *reconnecting) List(opts metav1.ListOptions) (runtime.Object, error) {
	return r.ListWithContext(context.Background(), opts)
}

// Watch watches without a context (cache.Watcher).
func (r *reconnecting) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	return r.WatchWithContext(context.Background(), opts)
}

// retry runs call until it succeeds, fails for another reason than an unreachable API
// server, or ctx ends; with resume, for the grace period only.
func (r *reconnecting) retry(ctx context.Context, resume bool, call func(context.Context) error) error {
	start := time.Now()
	for {
		if err := r.link.turn(ctx); err != nil {
			return err
		}
		err := call(ctx)
		if err == nil {
			r.link.succeeded(ctx, r.source)
			return nil
		}
		if ctx.Err() != nil || !unreachable(err) {
			return err
		}
		r.link.failed(ctx, r.source, err)
		if resume && time.Since(start) >= r.link.grace {
			return &relistError{msg: "resuming the " + r.source + " watch: " + err.Error() +
				" (the API server has been unreachable too long to resume; relisting when it answers)"}
		}
	}
}
