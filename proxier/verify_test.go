package proxier

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/model"
	"github.com/portico-dev/portico/proxier/health"
)

// IncRulesRepair makes fakeRecorder a Recorder; the tests of this file count repairs with
// repairRecorder.
func (r *fakeRecorder) IncRulesRepair(model.Family) {}

// repairRecorder is a fakeRecorder that counts repairs.
type repairRecorder struct {
	*fakeRecorder
	mu      sync.Mutex
	repairs map[model.Family]int
}

func (r *repairRecorder) IncRulesRepair(f model.Family) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.repairs[f]++
}

func (r *repairRecorder) Repairs(f model.Family) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.repairs[f]
}

// verifyingBackend is a recordingBackend that implements backends.Verifier. Verify
// reports a family missing from the moment the test removes its rules (Remove) until a
// full Sync of that family succeeds, as a kernel would; it returns cannotTell, when set,
// for every family. events logs the Verify and Sync calls in order.
type verifyingBackend struct {
	*recordingBackend
	mu         sync.Mutex
	missing    map[model.Family]bool
	cannotTell error
	events     []string
}

var _ backends.Verifier = (*verifyingBackend)(nil)

func (b *verifyingBackend) Verify(_ context.Context, f model.Family) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events = append(b.events, "verify "+f.String())
	switch {
	case b.cannotTell != nil:
		return b.cannotTell
	case b.missing[f]:
		return fmt.Errorf("%w: table gone", backends.ErrRulesMissing)
	}
	return nil
}

func (b *verifyingBackend) Sync(ctx context.Context, t *model.Table, d model.Diff) error {
	err := b.recordingBackend.Sync(ctx, t, d)
	b.mu.Lock()
	defer b.mu.Unlock()
	if err == nil && d.Full {
		delete(b.missing, t.Family())
	}
	b.events = append(b.events, fmt.Sprintf("sync %s full=%t ok=%t", t.Family(), d.Full, err == nil))
	return err
}

// Remove makes family f's rules missing, as `nft flush ruleset` would.
func (b *verifyingBackend) Remove(f model.Family) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.missing[f] = true
}

// SetCannotTell makes Verify fail with err (nil: answer again).
func (b *verifyingBackend) SetCannotTell(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cannotTell = err
}

// Events returns the calls so far.
func (b *verifyingBackend) Events() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.events)
}

// healthLog is a ProxyHealth that also logs RulesMissing and Updated calls.
type healthLog struct {
	*health.ProxyHealth
	mu     sync.Mutex
	events []string
}

func (h *healthLog) RulesMissing(f model.Family) {
	h.log("missing " + f.String())
	h.ProxyHealth.RulesMissing(f)
}

func (h *healthLog) Updated(f model.Family) {
	h.log("updated " + f.String())
	h.ProxyHealth.Updated(f)
}

func (h *healthLog) log(e string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, e)
}

func (h *healthLog) Events() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.events)
}

// verifyEnv is a running Proxier over a verifyingBackend.
type verifyEnv struct {
	backend *verifyingBackend
	rec     *repairRecorder
	health  *healthLog
	logs    ktesting.Buffer
	p       *Proxier
}

// verifyPeriodForTests is the VerifyPeriod of these tests.
const verifyPeriodForTests = 20 * time.Millisecond

// startVerifyEnv starts a Proxier that verifies its rules every verifyPeriodForTests, with
// one Service, and waits for the first sync of both families.
func startVerifyEnv(t *testing.T) *verifyEnv {
	t.Helper()
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.BufferLogs(true)))
	ctx, cancel := context.WithCancel(klog.NewContext(context.Background(), logger))
	e := &verifyEnv{
		backend: &verifyingBackend{recordingBackend: &recordingBackend{}, missing: map[model.Family]bool{}},
		rec:     &repairRecorder{fakeRecorder: newFakeRecorder(), repairs: map[model.Family]int{}},
		health:  &healthLog{ProxyHealth: health.NewProxyHealth(time.Hour)},
		logs:    logger.GetSink().(ktesting.Underlier).GetBuffer(),
	}
	client := fake.NewClientset(newNode(), newService("web", "10.96.0.10", svcPort("http", corev1.ProtocolTCP, 80)),
		newSlice("web-1", "web", epPort("http", corev1.ProtocolTCP, 8080), "10.244.2.1"))
	e.p = New(clientsetSources(client, nodeName), e.backend, Options{
		Node: testNodeConfig(), MinSyncPeriod: fastSync, SyncPeriod: time.Hour, VerifyPeriod: verifyPeriodForTests,
		Addresses: fakeAddresses, Conntrack: &fakeConntrack{}, Recorder: e.rec, Health: e.health,
	})
	e.p.runner.retryMin, e.p.runner.retryMax = 100*time.Millisecond, 100*time.Millisecond
	runInBackground(t, ctx, cancel, e.p)
	e.waitEvents(t, "the first sync and a check of both families", 0, "sync IPv6 full=true ok=true",
		"sync IPv4 full=true ok=true", "verify IPv4", "verify IPv6")
	return e
}

// waitEvents waits until the backend's events from index from on contain want, in
// order (not necessarily adjacent), and returns the index after the last one.
func (e *verifyEnv) waitEvents(t *testing.T, what string, from int, want ...string) int {
	t.Helper()
	end := 0
	eventually(t, what, func() bool {
		var ok bool
		end, ok = subsequence(e.backend.Events(), from, want)
		return ok
	}, func() string { return strings.Join(e.backend.Events()[from:], "\n") })
	return end
}

// subsequence reports whether events[from:] holds want in order, and where the last one
// ends.
func subsequence(events []string, from int, want []string) (int, bool) {
	i := 0
	for j := from; j < len(events) && i < len(want); j++ {
		if events[j] == want[i] {
			i++
			from = j + 1
		}
	}
	return from, i == len(want)
}

// TestRulesRepairedWhenMissing: rules removed behind the proxier's back are found by the
// periodic check, counted, reported on /healthz until a full sync of that family (retried
// when it fails) puts them back; the other family is left alone.
func TestRulesRepairedWhenMissing(t *testing.T) {
	t.Parallel()
	e := startVerifyEnv(t)
	start := len(e.backend.Events())
	e.backend.Quiet(t, "checks that find the rules intact", quietWindow)
	if !e.health.IsHealthy() {
		t.Fatalf("unhealthy before anything was removed: %+v", e.health.Health())
	}

	e.backend.FailNext(1) // the first repair fails: the family stays unhealthy until the retry
	n := e.backend.Len()
	e.backend.Remove(model.IPv4)
	end := e.waitEvents(t, "the failed repair, then the repair", start,
		"verify IPv4", "sync IPv4 full=true ok=false", "sync IPv4 full=true ok=true")
	events := e.backend.Events()
	failed := slices.Index(events[start:], "sync IPv4 full=true ok=false") + start
	if i := slices.Index(events[failed:end], "verify IPv4"); i >= 0 {
		t.Errorf("IPv4 verified while its full sync was pending (event %d):\n%s", failed+i, strings.Join(events[start:end], "\n"))
	}
	for _, c := range e.backend.Calls()[n:] {
		if c.Family == model.IPv6 {
			t.Errorf("the repair of IPv4 synced IPv6: %s", c)
		}
	}
	if got := e.rec.Repairs(model.IPv4); got != 1 {
		t.Errorf("IPv4 repairs counted: %d, want 1", got)
	}
	if got := e.rec.Repairs(model.IPv6); got != 0 {
		t.Errorf("IPv6 repairs counted: %d, want 0", got)
	}
	// Unhealthy from the check to the successful repair, not at the failed one.
	h := e.health.Events()
	missing := slices.Index(h, "missing IPv4")
	if missing < 0 || !slices.Contains(h[missing+1:], "updated IPv4") {
		t.Fatalf("health calls %v: want missing IPv4, then updated IPv4 after the repair", h)
	}
	eventually(t, "healthy again", e.health.IsHealthy, func() string { return fmt.Sprintf("%+v", e.health.Health()) })
	if !strings.Contains(e.logs.String(), "The rules are missing from the kernel") || !strings.Contains(e.logs.String(), "family=\"IPv4\"") {
		t.Errorf("the repair was not logged with its family:\n%s", e.logs.String())
	}
	e.waitEvents(t, "checks of both families after the repair", end, "verify IPv4", "verify IPv6")
}

// TestVerifyCannotTell: a check that cannot tell is logged and changes nothing: no sync,
// no repair, healthy.
func TestVerifyCannotTell(t *testing.T) {
	t.Parallel()
	e := startVerifyEnv(t)
	e.backend.SetCannotTell(errors.New("netlink: permission denied"))
	from := len(e.backend.Events())
	e.waitEvents(t, "checks", from, "verify IPv4", "verify IPv6", "verify IPv4")
	e.backend.Quiet(t, "checks that cannot tell", quietWindow)
	if got := e.rec.Repairs(model.IPv4) + e.rec.Repairs(model.IPv6); got != 0 {
		t.Errorf("%d repairs counted, want none", got)
	}
	if !e.health.IsHealthy() {
		t.Errorf("unhealthy after checks that cannot tell: %+v", e.health.Health())
	}
	if !strings.Contains(e.logs.String(), "Cannot verify the rules") || !strings.Contains(e.logs.String(), "permission denied") {
		t.Errorf("the failed check was not logged:\n%s", e.logs.String())
	}
}

// TestVerifyPeriod checks the default period and that the check is only set up for a
// backend that implements backends.Verifier.
func TestVerifyPeriod(t *testing.T) {
	for _, tc := range []struct {
		sync, verify, want time.Duration
	}{
		{30 * time.Second, 0, 10 * time.Second},
		{time.Hour, 0, 10 * time.Second},
		{4 * time.Second, 0, 2 * time.Second},
		{30 * time.Second, time.Second, time.Second},
		{30 * time.Second, -1, -1},
		{0, 0, 0},
	} {
		p := New(Sources{}, &verifyingBackend{recordingBackend: &recordingBackend{}}, Options{SyncPeriod: tc.sync, VerifyPeriod: tc.verify})
		if got := p.verifyPeriod(); got != tc.want {
			t.Errorf("syncPeriod %v, VerifyPeriod %v: period %v, want %v", tc.sync, tc.verify, got, tc.want)
		}
		p.startVerifying(context.Background())
		if on := p.runner.check != nil; on != (tc.want > 0) {
			t.Errorf("syncPeriod %v, VerifyPeriod %v: check set %t, want %t", tc.sync, tc.verify, on, tc.want > 0)
		}
	}
	p := New(Sources{}, &recordingBackend{}, Options{SyncPeriod: 30 * time.Second})
	p.startVerifying(context.Background())
	if p.runner.check != nil {
		t.Error("check set up for a backend that cannot verify")
	}
}

// TestRunnerCheck: the runner calls its check between runs; a check that returns true
// causes a run, one that returns false does not.
func TestRunnerCheck(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	checks, answer := 0, false
	_, log := startRunner(t, time.Millisecond, time.Hour, func(r *runner) {
		r.setCheck(10*time.Millisecond, func(context.Context) bool {
			mu.Lock()
			defer mu.Unlock()
			checks++
			a := answer
			answer = false
			return a
		})
	}, nil)
	log.waitRuns(t, 1)
	eventually(t, "three checks", func() bool { mu.Lock(); defer mu.Unlock(); return checks >= 3 }, nil)
	if n := len(log.Times()); n != 1 {
		t.Fatalf("%d runs after checks that found nothing, want 1", n)
	}
	mu.Lock()
	answer = true
	mu.Unlock()
	log.waitRuns(t, 2)
}

// TestRunnerCancelsCheckForSync: a sync requested while the check runs cancels the check
// and runs at once; the check runs again after the sync; after maxCheckInterruptions
// cancelled checks in a row, the next one runs to its end and the sync waits for it.
func TestRunnerCancelsCheckForSync(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	release := make(chan struct{})
	ended := make(chan bool, 16) // whether each check was cancelled
	r, log := startRunner(t, time.Millisecond, time.Hour, func(r *runner) {
		r.setCheck(20*time.Millisecond, func(ctx context.Context) bool {
			select {
			case started <- struct{}{}:
			case <-ctx.Done():
				return false
			}
			select {
			case <-ctx.Done():
				ended <- true
			case <-release:
				ended <- false
			}
			return false
		})
	}, nil)
	log.waitRuns(t, 1)
	for i := range maxCheckInterruptions + 1 {
		waitFor(t, started, "check %d to start", i)
		r.Request()
		runs := i + 2
		if i == maxCheckInterruptions {
			select {
			case <-ended:
				t.Fatalf("check %d was cancelled after %d cancelled in a row", i, maxCheckInterruptions)
			case <-time.After(50 * time.Millisecond):
			}
			if n := len(log.Times()); n != runs-1 {
				t.Fatalf("%d runs while the uncancellable check %d ran, want %d", n, i, runs-1)
			}
			close(release)
		}
		if cancelled := waitFor(t, ended, "check %d to end", i); cancelled != (i < maxCheckInterruptions) {
			t.Fatalf("check %d cancelled: %t, want %t", i, cancelled, i < maxCheckInterruptions)
		}
		log.waitRuns(t, runs)
	}
}

// waitFor receives from ch, failing the test after waitTimeout.
func waitFor[T any](t *testing.T, ch <-chan T, what string, args ...any) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for "+what, args...)
	}
	var zero T
	return zero
}
