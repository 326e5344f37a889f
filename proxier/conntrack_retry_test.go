package proxier

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/model"
	"github.com/portico-dev/portico/proxier/health"
)

// errConntrack is what failingConntrack returns for a call it was told to fail.
var errConntrack = errors.New("injected conntrack failure")

// ctCall is one call to failingConntrack.
type ctCall struct {
	Family model.Family
	Flows  []StaleFlow // nil for a sweep
	Sweep  *UDPServed
	Err    error
	At     time.Time
}

// failingConntrack is a ConntrackCleaner and ConntrackSweeper that records its calls and
// fails the next failNext of them.
type failingConntrack struct {
	mu       sync.Mutex
	calls    []ctCall
	failNext int
}

func (c *failingConntrack) record(call ctCall) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	call.At = time.Now()
	if c.failNext > 0 {
		c.failNext--
		call.Err = errConntrack
	}
	c.calls = append(c.calls, call)
	return call.Err
}

func (c *failingConntrack) DeleteUDP(_ context.Context, fam model.Family, flows []StaleFlow) error {
	return c.record(ctCall{Family: fam, Flows: slices.Clone(flows)})
}

func (c *failingConntrack) SweepUDP(_ context.Context, fam model.Family, served UDPServed) error {
	return c.record(ctCall{Family: fam, Sweep: &served})
}

func (c *failingConntrack) FailNext(n int) {
	c.mu.Lock()
	c.failNext = n
	c.mu.Unlock()
}

func (c *failingConntrack) Calls() []ctCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

// familyFailBackend is a recordingBackend whose syncs of one family always fail.
type familyFailBackend struct {
	*recordingBackend
	fail   model.Family
	mu     sync.Mutex
	failed int
}

var errFamily = errors.New("injected: the kernel cannot create tables of this family")

func (b *familyFailBackend) Sync(ctx context.Context, t *model.Table, d model.Diff) error {
	if t.Family() == b.fail {
		b.mu.Lock()
		b.failed++
		b.mu.Unlock()
		return errFamily
	}
	return b.recordingBackend.Sync(ctx, t, d)
}

func (b *familyFailBackend) Failed() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.failed
}

// healthRecorder is a ServiceHealthSyncer that records its last Sync.
type healthRecorder struct {
	mu    sync.Mutex
	last  map[model.ServiceName]health.ServiceEntry
	calls int
}

func (h *healthRecorder) Sync(_ context.Context, s map[model.ServiceName]health.ServiceEntry) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls++
	h.last = s
	return nil
}

func (h *healthRecorder) Last() (int, map[model.ServiceName]health.ServiceEntry) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls, h.last
}

// startEnvOpts starts a Proxier like startEnv, over backend (whose recordings are in
// rb), with the options changed by edit and the runner's retry bounds set to retry, and
// waits for its first generation.
func startEnvOpts(t *testing.T, backend backends.Backend, rb *recordingBackend, edit func(*Options), retry [2]time.Duration, objs ...runtime.Object) *testEnv {
	t.Helper()
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.BufferLogs(true)))
	ctx, cancel := context.WithCancel(klog.NewContext(context.Background(), logger))
	e := &testEnv{
		t: t, client: fake.NewClientset(objs...), backend: rb, rec: newFakeRecorder(), ct: &fakeConntrack{},
		logs: logger.GetSink().(ktesting.Underlier).GetBuffer(),
	}
	e.rec.backendLen = e.backend.Len
	opts := Options{
		Node: testNodeConfig(), MinSyncPeriod: fastSync, SyncPeriod: time.Hour,
		Addresses: fakeAddresses, Conntrack: e.ct, Recorder: e.rec,
		FamilyProbe: func(model.Family) error { return nil },
	}
	edit(&opts)
	e.p = New(clientsetSources(e.client, nodeName), backend, opts)
	e.p.runner.retryMin, e.p.runner.retryMax = retry[0], retry[1]
	runInBackground(t, ctx, cancel, e.p)
	eventually(t, "the first sync", func() bool { return e.rec.Generation() > 0 }, e.logs.String)
	e.settle(fastSync + 100*time.Millisecond)
	return e
}

// testRetry are the runner's retry bounds in most tests.
var testRetry = [2]time.Duration{100 * time.Millisecond, 400 * time.Millisecond}

func dnsObjects(addr string) []runtime.Object {
	return []runtime.Object{
		newNode(),
		newService("dns", "10.96.0.53", svcPort("dns", corev1.ProtocolUDP, 53)),
		newSlice("dns-1", "dns", epPort("dns", corev1.ProtocolUDP, 5353), addr),
	}
}

// TestConntrackCleanupRetried makes the cleanup of stale UDP flows fail twice: it is tried
// again after the runner's backoff, with the flows of a change made meanwhile added, until
// it succeeds; the rules are not synced again for it.
func TestConntrackCleanupRetried(t *testing.T) {
	t.Parallel()
	ct := &failingConntrack{}
	rb := &recordingBackend{}
	e := startEnvOpts(t, rb, rb, func(o *Options) { o.Conntrack = ct }, testRetry, dnsObjects("10.244.2.53")...)
	dns := portName("dns", "dns", model.UDP)
	// The first sync of each family sweeps (the restart case).
	for _, fam := range []model.Family{model.IPv4, model.IPv6} {
		if !slices.ContainsFunc(ct.Calls(), func(c ctCall) bool { return c.Family == fam && c.Sweep != nil }) {
			t.Fatalf("no start-up sweep of %s: %+v", fam, ct.Calls())
		}
	}
	n, first := rb.Len(), len(ct.Calls())
	ct.FailNext(2)
	e.updateSlice("dns-1", func(s *discoveryv1.EndpointSlice) { setEndpoints(s, "10.244.2.54") })
	e.waitCall("the second endpoint", model.IPv4, n, func(c syncCall) bool { return hasEndpoint(c, dns, "10.244.2.54:5353") })
	eventually(t, "the first failure", func() bool { return len(ct.Calls()) > first }, nil)
	// A change while the retry waits adds its flows to those not cleared yet.
	e.updateSlice("dns-1", func(s *discoveryv1.EndpointSlice) { setEndpoints(s, "10.244.2.55") })
	eventually(t, "a successful cleanup", func() bool {
		calls := ct.Calls()
		return len(calls) > first && calls[len(calls)-1].Err == nil
	}, func() string { return formatCt(ct.Calls()) })
	calls := ct.Calls()[first:]
	fe := netip.MustParseAddrPort("10.96.0.53:53")
	old := StaleFlow{Frontend: fe, Endpoint: netip.MustParseAddrPort("10.244.2.53:5353")}
	mid := StaleFlow{Frontend: fe, Endpoint: netip.MustParseAddrPort("10.244.2.54:5353")}
	if len(calls) != 3 || calls[0].Err == nil || calls[1].Err == nil {
		t.Fatalf("cleanup calls:\n%s\nwant two failures and a success", formatCt(calls))
	}
	if !slices.Equal(calls[0].Flows, []StaleFlow{old}) {
		t.Errorf("first try %v, want [%v]", calls[0].Flows, old)
	}
	if last := calls[2]; !slices.Equal(last.Flows, []StaleFlow{old, mid}) {
		t.Errorf("successful try %v, want [%v %v]: a failed flow was forgotten", last.Flows, old, mid)
	}
	if gap := calls[2].At.Sub(calls[1].At); gap < e.p.runner.retryMin {
		t.Errorf("retried %v after a failure; want the backoff (at least %v)", gap, e.p.runner.retryMin)
	}
	// Once it succeeded, nothing is retried.
	time.Sleep(2 * e.p.runner.retryMax)
	if got := len(ct.Calls()) - first; got != 3 {
		t.Errorf("%d cleanup calls after the success, want none more:\n%s", got-3, formatCt(ct.Calls()[first:]))
	}
}

// TestFailedSweepRetried: the start-up sweep fails once and is tried again.
func TestFailedSweepRetried(t *testing.T) {
	t.Parallel()
	ct := &failingConntrack{failNext: 1}
	rb := &recordingBackend{}
	startEnvOpts(t, rb, rb, func(o *Options) {
		o.Conntrack = ct
		o.Node.Families = []model.Family{model.IPv4}
	}, testRetry, dnsObjects("10.244.2.53")...)
	eventually(t, "the second sweep", func() bool { return len(ct.Calls()) >= 2 }, func() string { return formatCt(ct.Calls()) })
	calls := ct.Calls()
	if calls[0].Sweep == nil || calls[0].Err == nil || calls[1].Sweep == nil || calls[1].Err != nil {
		t.Fatalf("calls:\n%s\nwant a failed sweep, then a successful one", formatCt(calls))
	}
	want := []netip.AddrPort{netip.MustParseAddrPort("10.244.2.53:5353")}
	if got := calls[1].Sweep.ByFrontend[netip.MustParseAddrPort("10.96.0.53:53")]; !slices.Equal(got, want) {
		t.Errorf("sweep serves %v for the ClusterIP, want %v", got, want)
	}
}

func formatCt(calls []ctCall) string {
	var out string
	for i, c := range calls {
		what := "delete"
		if c.Sweep != nil {
			what = "sweep"
		}
		out += "  #" + string(rune('0'+i)) + " " + c.Family.String() + " " + what + " " + flowsString(c.Flows) + " err=" + errString(c.Err) + "\n"
	}
	return out
}

func flowsString(flows []StaleFlow) string {
	var out string
	for _, f := range flows {
		out += flowString(f) + " "
	}
	return out
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}
