package proxier

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// refused is the error of a dial to a closed port.
var refused = &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}

// scriptedLW is a ListerWatcher whose calls fail with the errors of fail, in turn, then
// succeed (or fail for ever with forever). It records when each call was made. block
// makes every call wait for its context instead.
type scriptedLW struct {
	mu      sync.Mutex
	fail    []error
	forever error
	block   bool
	calls   []time.Time
}

func (s *scriptedLW) call(ctx context.Context) error {
	s.mu.Lock()
	s.calls = append(s.calls, time.Now())
	var err error
	switch {
	case s.block:
	case len(s.fail) > 0:
		err, s.fail = s.fail[0], s.fail[1:]
	default:
		err = s.forever
	}
	s.mu.Unlock()
	if s.block {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

func (s *scriptedLW) callTimes() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.calls...)
}

func (s *scriptedLW) List(opts metav1.ListOptions) (runtime.Object, error) {
	return s.ListWithContext(context.Background(), opts)
}

func (s *scriptedLW) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	return s.WatchWithContext(context.Background(), opts)
}

func (s *scriptedLW) ListWithContext(ctx context.Context, _ metav1.ListOptions) (runtime.Object, error) {
	if err := s.call(ctx); err != nil {
		return nil, err
	}
	return &corev1.ServiceList{}, nil
}

func (s *scriptedLW) WatchWithContext(ctx context.Context, _ metav1.ListOptions) (watch.Interface, error) {
	if err := s.call(ctx); err != nil {
		return nil, err
	}
	return watch.NewFake(), nil
}

func repeat(err error, n int) []error {
	out := make([]error, n)
	for i := range out {
		out[i] = err
	}
	return out
}

// testLink is a link with delays of 10 ms doubling to 40 ms, jittered down to half, and
// a grace of 100 ms.
func testLink() *apiLink {
	l := newAPILink()
	l.backoff.initial, l.backoff.max = 10*time.Millisecond, 40*time.Millisecond
	l.grace = 100 * time.Millisecond
	return l
}

func TestBackoffDelay(t *testing.T) {
	b := defaultBackoff()
	for _, tc := range []struct {
		n        int
		full     time.Duration // the delay without jitter
		rand     float64
		expected time.Duration
	}{
		{1, 100 * time.Millisecond, 0, 100 * time.Millisecond},
		{2, 200 * time.Millisecond, 0, 200 * time.Millisecond},
		{3, 400 * time.Millisecond, 0, 400 * time.Millisecond},
		{4, 400 * time.Millisecond, 0, 400 * time.Millisecond},
		{1000, 400 * time.Millisecond, 0, 400 * time.Millisecond},
		{1, 100 * time.Millisecond, 0.999999, 50 * time.Millisecond},
		{1000, 400 * time.Millisecond, 0.5, 300 * time.Millisecond},
	} {
		b.rand = func() float64 { return tc.rand }
		got := b.delay(tc.n)
		if d := got - tc.expected; d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("delay(%d) with rand %v = %v, want %v", tc.n, tc.rand, got, tc.expected)
		}
	}
	// With the real random source every delay is within (max/2, max] once capped, and
	// they differ (jitter).
	b = defaultBackoff()
	seen := map[time.Duration]bool{}
	for range 1000 {
		d := b.delay(50)
		if d <= reconnectMax/2 || d > reconnectMax {
			t.Fatalf("capped delay %v outside (%v, %v]", d, reconnectMax/2, reconnectMax)
		}
		seen[d] = true
	}
	if len(seen) < 100 {
		t.Errorf("only %d distinct delays in 1000: no jitter", len(seen))
	}
}

// TestReconnectingRetriesUntilUp: a list that fails six times (refused, 503, 429, EOF,
// reset, 504) is retried until it succeeds, each retry after at least half the delay of
// its step.
func TestReconnectingRetriesUntilUp(t *testing.T) {
	fails := []error{
		refused,
		apierrors.NewServiceUnavailable("starting"),
		apierrors.NewTooManyRequests("busy", 1),
		errors.New("unexpected EOF"),
		&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)},
		apierrors.NewTimeoutError("gateway", 1),
	}
	lw := &scriptedLW{fail: fails}
	link := testLink()
	r := newReconnecting(lw, "Services", link)
	if _, err := r.ListWithContext(context.Background(), metav1.ListOptions{}); err != nil {
		t.Fatalf("list: %v", err)
	}
	calls := lw.callTimes()
	if len(calls) != len(fails)+1 {
		t.Fatalf("%d calls, want %d", len(calls), len(fails)+1)
	}
	for i := 1; i < len(calls); i++ {
		full := min(link.backoff.initial<<(i-1), link.backoff.max)
		if gap := calls[i].Sub(calls[i-1]); gap < full/2 {
			t.Errorf("retry %d came %v after the failure, want at least %v", i, gap, full/2)
		}
	}
	if link.failures != 0 {
		t.Errorf("the link still counts %d failures after a success", link.failures)
	}
}

// TestReconnectingCapped: twenty failures in a row take about twenty capped delays, not
// an exponential series (10 ms·2^20 would be hours).
func TestReconnectingCapped(t *testing.T) {
	lw := &scriptedLW{fail: repeat(refused, 20)}
	r := newReconnecting(lw, "Services", testLink())
	start := time.Now()
	if _, err := r.ListWithContext(context.Background(), metav1.ListOptions{}); err != nil {
		t.Fatalf("list: %v", err)
	}
	if took := time.Since(start); took > 20*40*time.Millisecond+time.Second {
		t.Errorf("20 failures took %v, want at most 20 capped delays of 40 ms (plus slack)", took)
	}
}

// TestReconnectingNoSpin: a dead server whose every request fails at once is tried once
// per delay, not in a loop.
func TestReconnectingNoSpin(t *testing.T) {
	lw := &scriptedLW{forever: refused}
	r := newReconnecting(lw, "Services", testLink())
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := r.ListWithContext(ctx, metav1.ListOptions{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("list returned %v, want the context's deadline", err)
	}
	// Delays are at least 5, 10, then 20 ms: at most 3 + 500/20 = 28 calls.
	if n := len(lw.callTimes()); n > 28 || n < 5 {
		t.Errorf("%d calls in 500 ms, want between 5 and 28", n)
	}
}

// TestReconnectingStopsOnCancel: cancelling the context ends the retries, both while
// waiting between attempts and while a request hangs.
func TestReconnectingStopsOnCancel(t *testing.T) {
	for _, tc := range []struct {
		name string
		lw   *scriptedLW
	}{
		{"waiting", &scriptedLW{forever: refused}},
		{"in a request", &scriptedLW{block: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			link := testLink()
			link.backoff.initial, link.backoff.max = time.Hour, time.Hour
			r := newReconnecting(tc.lw, "Services", link)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				_, err := r.WatchWithContext(ctx, metav1.ListOptions{SendInitialEvents: new(true)})
				done <- err
			}()
			time.Sleep(50 * time.Millisecond)
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("watch returned %v, want context.Canceled", err)
				}
			case <-time.After(time.Second):
				t.Fatal("the watch did not return within 1 s of the cancel")
			}
		})
	}
}

// TestReconnectingPassesThrough: an answer that is not about reaching the server ends
// the call at once, with the server's error.
func TestReconnectingPassesThrough(t *testing.T) {
	gr := schema.GroupResource{Resource: "servicecidrs"}
	for _, err := range []error{
		apierrors.NewResourceExpired("too old resource version: 1 (5)"),
		apierrors.NewForbidden(gr, "", errors.New("RBAC")),
		apierrors.NewNotFound(gr, ""),
		apierrors.NewInternalError(errors.New("boom")),
		&apierrors.StatusError{ErrStatus: metav1.Status{Code: 504, Reason: metav1.StatusReasonTimeout,
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: metav1.CauseTypeResourceVersionTooLarge}}}}},
	} {
		lw := &scriptedLW{forever: err}
		r := newReconnecting(lw, "ServiceCIDRs", testLink())
		_, got := r.WatchWithContext(context.Background(), metav1.ListOptions{SendInitialEvents: new(true)})
		if got != err {
			t.Errorf("%v: watch returned %v, want the server's error", err, got)
		}
		if n := len(lw.callTimes()); n != 1 {
			t.Errorf("%v: %d calls, want 1", err, n)
		}
	}
}

// TestResumeGivesUp: a watch resuming from a resource version is retried for the grace
// period only, then fails with an error that client-go does not retry in place (so the
// reflector relists); a watch starting with the initial events is retried until it
// succeeds.
func TestResumeGivesUp(t *testing.T) {
	link := testLink()
	lw := &scriptedLW{fail: repeat(refused, 15)}
	r := newReconnecting(lw, "EndpointSlices", link)
	start := time.Now()
	_, err := r.WatchWithContext(context.Background(), metav1.ListOptions{ResourceVersion: "42"})
	if took := time.Since(start); err == nil || took < link.grace || took > link.grace+time.Second {
		t.Fatalf("resuming watch: %v after %v, want an error after the %v grace", err, took, link.grace)
	}
	var relist *relistError
	if !errors.As(err, &relist) || utilnet.IsConnectionRefused(err) || apierrors.IsTooManyRequests(err) {
		t.Errorf("resuming watch ended with %#v: client-go would retry it in place", err)
	}
	before := len(lw.callTimes())
	if _, err := r.WatchWithContext(context.Background(), metav1.ListOptions{SendInitialEvents: new(true)}); err != nil {
		t.Fatalf("watch with initial events: %v", err)
	}
	if n := len(lw.callTimes()) - before; n != 15-before+1 {
		t.Errorf("the watch with initial events made %d calls, want every remaining failure and one success (%d)", n, 15-before+1)
	}
}

// TestLinkShared: list-watches sharing a link make one attempt per delay between them,
// and the first to get through wakes the others at once.
func TestLinkShared(t *testing.T) {
	link := testLink()
	a, b := &scriptedLW{forever: refused}, &scriptedLW{forever: refused}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	for _, lw := range []*scriptedLW{a, b} {
		r := newReconnecting(lw, "x", link)
		wg.Go(func() { _, _ = r.ListWithContext(ctx, metav1.ListOptions{}) })
	}
	wg.Wait()
	if n := len(a.callTimes()) + len(b.callTimes()); n > 28 {
		t.Errorf("two list-watches made %d calls in 500 ms, want at most 28 between them (one per delay)", n)
	}

	// A waits a full hour's delay; B's success must wake it.
	link = testLink()
	link.backoff.initial, link.backoff.max = time.Hour, time.Hour
	a = &scriptedLW{fail: []error{refused}}
	ra, rb := newReconnecting(a, "a", link), newReconnecting(&scriptedLW{}, "b", link)
	done := make(chan time.Time, 1)
	go func() {
		_, _ = ra.ListWithContext(context.Background(), metav1.ListOptions{})
		done <- time.Now()
	}()
	for len(a.callTimes()) == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	// Let the shared next-attempt time come, as it would after one delay: B claims that
	// turn (which pushes the next one an hour away for A), and its success must wake A.
	link.mu.Lock()
	link.next = time.Now()
	link.mu.Unlock()
	woke := time.Now()
	if _, err := rb.ListWithContext(context.Background(), metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-done:
		if d := at.Sub(woke); d > 200*time.Millisecond {
			t.Errorf("A retried %v after B got through, want at once", d)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("A was not woken by B's success")
	}
}

// fakeAPI is an API server holding Services, for a real informer: it can go away (every
// request refused, every watch closed) and come back restarted (watches from a resource
// version it handed out before are too old).
type fakeAPI struct {
	mu       sync.Mutex
	down     bool
	rv       int
	oldest   int
	services map[string]*corev1.Service
	history  []watch.Event // every change, in resource version order
	watchers []*watch.RaceFreeFakeWatcher
}

func newFakeAPI() *fakeAPI { return &fakeAPI{services: map[string]*corev1.Service{}} }

func (f *fakeAPI) IsWatchListSemanticsUnSupported() bool { return true }

func (f *fakeAPI) List(opts metav1.ListOptions) (runtime.Object, error) {
	return f.ListWithContext(context.Background(), opts)
}

func (f *fakeAPI) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	return f.WatchWithContext(context.Background(), opts)
}

func (f *fakeAPI) ListWithContext(context.Context, metav1.ListOptions) (runtime.Object, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, refused
	}
	l := &corev1.ServiceList{ListMeta: metav1.ListMeta{ResourceVersion: strconv.Itoa(f.rv)}}
	for _, s := range f.services {
		l.Items = append(l.Items, *s.DeepCopy())
	}
	return l, nil
}

func (f *fakeAPI) WatchWithContext(_ context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, refused
	}
	rv, _ := strconv.Atoi(opts.ResourceVersion)
	if rv < f.oldest {
		return nil, apierrors.NewResourceExpired("too old resource version")
	}
	w := watch.NewRaceFreeFake()
	for _, e := range f.history {
		if v, _ := strconv.Atoi(e.Object.(*corev1.Service).ResourceVersion); v > rv {
			w.Action(e.Type, e.Object.DeepCopyObject())
		}
	}
	f.watchers = append(f.watchers, w)
	return w, nil
}

func (f *fakeAPI) set(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rv++
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, ResourceVersion: strconv.Itoa(f.rv)}}
	e := watch.Event{Type: watch.Added, Object: s}
	if _, exists := f.services[name]; exists {
		e.Type = watch.Modified
	}
	f.services[name] = s
	f.history = append(f.history, e)
	for _, w := range f.watchers {
		w.Action(e.Type, s.DeepCopy())
	}
}

func (f *fakeAPI) remove(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rv++
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, ResourceVersion: strconv.Itoa(f.rv)}}
	delete(f.services, name)
	f.history = append(f.history, watch.Event{Type: watch.Deleted, Object: s})
	for _, w := range f.watchers {
		w.Delete(s.DeepCopy())
	}
}

// stop takes the server away: watches end, requests are refused.
func (f *fakeAPI) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = true
	for _, w := range f.watchers {
		w.Stop()
	}
	f.watchers = nil
}

// start brings it back as a restarted server that no longer knows earlier resource
// versions.
func (f *fakeAPI) start() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = false
	f.oldest = f.rv
}

// TestInformerReconnectsAfterOutage runs client-go's informer over a wrapped fake API
// server that goes away for 3 s and comes back restarted, with a Service added and one
// removed meanwhile: the informer must hold the new state within 500 ms of the server's
// return (client-go's reflector alone takes seconds: its backoff has grown to 1.6-3.2 s
// by then, and the too-old resource version costs it another delay).
func TestInformerReconnectsAfterOutage(t *testing.T) {
	api := newFakeAPI()
	api.set("old")
	api.set("gone")
	inf := cache.NewSharedIndexInformer(newReconnecting(api, "Services", newAPILink()), &corev1.Service{}, 0, cache.Indexers{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { inf.RunWithContext(ctx) })
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("the informer did not sync")
	}
	has := func(name string) bool {
		_, ok, _ := inf.GetStore().GetByKey("ns/" + name)
		return ok
	}

	// A watch that ends within a second of its start makes the reflector relist on its
	// own: let it be an established one.
	time.Sleep(1200 * time.Millisecond)
	api.stop()
	time.Sleep(3 * time.Second)
	api.set("new")
	api.remove("gone")
	api.start()
	back := time.Now()
	for !has("new") || has("gone") {
		if time.Since(back) > 5*time.Second {
			t.Fatalf("5 s after the server came back the informer has new=%v gone=%v", has("new"), has("gone"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if took := time.Since(back); took > 500*time.Millisecond {
		t.Errorf("the informer caught up %v after the server came back, want at most 500 ms", took)
	} else {
		t.Logf("the informer caught up %v after the server came back", took.Round(time.Millisecond))
	}
	// A change after the relist arrives through the new watch.
	api.set("later")
	deadline := time.Now().Add(2 * time.Second)
	for !has("later") {
		if time.Now().After(deadline) {
			t.Fatal("a change after the reconnect did not reach the informer")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRelistedSliceCausesNoSync: the relist after a reconnect hands every unchanged
// EndpointSlice to the handler again, with the resource version it already has; that
// must not mark its Service dirty (the sync it would cause could hold the next real change
// back by minSyncPeriod). A new version does.
func TestRelistedSliceCausesNoSync(t *testing.T) {
	w := &watchers{slices: newSliceIndex()}
	tr := newTracker(func() {})
	h := w.sliceHandler(tr)
	rec := func(rv, addr string) *sliceRecord {
		return compactSlice(&discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-1", ResourceVersion: rv,
				Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{addr}}},
		})
	}
	v7 := rec("7", "10.0.0.1")
	h.OnAdd(v7, true)
	if d := tr.Take().dirty; len(d) != 1 {
		t.Fatalf("after the add: dirty %v, want ns/web", d)
	}
	h.OnUpdate(v7, rec("7", "10.0.0.1"))
	if d := tr.Take().dirty; len(d) != 0 {
		t.Errorf("the same resource version again marked %v dirty, want nothing", d)
	}
	h.OnUpdate(v7, rec("8", "10.0.0.2"))
	if d := tr.Take().dirty; len(d) != 1 {
		t.Errorf("a new resource version: dirty %v, want ns/web", d)
	}
}
