package proxier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/model"
)

// waitTimeout bounds every wait of these tests; it is only reached when a test fails.
const waitTimeout = 10 * time.Second

// errInjected is what the recording backend returns for a sync it was told to fail.
var errInjected = errors.New("injected backend failure")

// syncCall is one recorded Backend.Sync call.
type syncCall struct {
	Family model.Family
	Diff   model.Diff
	Table  *model.Table
	// Text is the table rendered with model.State.WriteText.
	Text string
	// Err is what the call returned (errInjected for a failed call).
	Err error
	At  time.Time
}

func (c syncCall) String() string {
	return fmt.Sprintf("%s full=%t changed=%v removed=%v err=%v", c.Family, c.Diff.Full, c.Diff.Changed, c.Diff.Removed, c.Err)
}

// recordingBackend is a backends.Backend that records every Sync and can be told to fail.
type recordingBackend struct {
	mu       sync.Mutex
	calls    []syncCall
	failNext int
	prepared time.Time
}

var (
	_ backends.Backend  = (*recordingBackend)(nil)
	_ backends.Preparer = (*recordingBackend)(nil)
)

// prepareTime is how long recordingBackend.Prepare takes: longer than the informer
// caches take to fill from the fake clientset, so that a first Sync that did not wait
// for Prepare would come before its end.
const prepareTime = 100 * time.Millisecond

// Prepare takes prepareTime and records when it finished.
func (b *recordingBackend) Prepare(context.Context) error {
	time.Sleep(prepareTime)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.prepared = time.Now()
	return nil
}

// Prepared returns when Prepare finished (zero if never).
func (b *recordingBackend) Prepared() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.prepared
}

func (b *recordingBackend) Name() string { return "recording" }

func (b *recordingBackend) Sync(_ context.Context, t *model.Table, d model.Diff) error {
	var text strings.Builder
	if err := (&model.State{Tables: []*model.Table{t}}).WriteText(&text); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c := syncCall{
		Family: t.Family(),
		Diff:   model.Diff{Full: d.Full, Changed: slices.Clone(d.Changed), Removed: slices.Clone(d.Removed)},
		Table:  t,
		Text:   text.String(),
		At:     time.Now(),
	}
	if b.failNext > 0 {
		b.failNext--
		c.Err = errInjected
	}
	b.calls = append(b.calls, c)
	return c.Err
}

func (b *recordingBackend) Dump(_ context.Context, w io.Writer) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.calls {
		if _, err := fmt.Fprintln(w, c); err != nil {
			return err
		}
	}
	return nil
}

func (b *recordingBackend) Cleanup(context.Context) error { return nil }

// FailNext makes the next n Sync calls fail.
func (b *recordingBackend) FailNext(n int) {
	b.mu.Lock()
	b.failNext = n
	b.mu.Unlock()
}

// Calls returns a copy of the recorded calls.
func (b *recordingBackend) Calls() []syncCall {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.calls)
}

// Len returns the number of recorded calls.
func (b *recordingBackend) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.calls)
}

// WaitFor polls until cond holds for the recorded calls and returns them; it fails the
// test after waitTimeout.
func (b *recordingBackend) WaitFor(t testing.TB, what string, cond func([]syncCall) bool) []syncCall {
	t.Helper()
	var calls []syncCall
	eventually(t, what, func() bool {
		calls = b.Calls()
		return cond(calls)
	}, func() string { return formatCalls(calls) })
	return calls
}

// WaitForFamily waits for a call of family fam made after the first `after` calls that
// satisfies cond, and returns it.
func (b *recordingBackend) WaitForFamily(t testing.TB, what string, fam model.Family, after int, cond func(syncCall) bool) syncCall {
	t.Helper()
	var found syncCall
	b.WaitFor(t, what, func(calls []syncCall) bool {
		for _, c := range calls[min(after, len(calls)):] {
			if c.Family == fam && cond(c) {
				found = c
				return true
			}
		}
		return false
	})
	return found
}

// Latest returns the last successful call of family fam.
func (b *recordingBackend) Latest(fam model.Family) (syncCall, bool) {
	calls := b.Calls()
	for i := len(calls) - 1; i >= 0; i-- {
		if calls[i].Family == fam && calls[i].Err == nil {
			return calls[i], true
		}
	}
	return syncCall{}, false
}

// Quiet asserts that no Sync call is made during window.
func (b *recordingBackend) Quiet(t testing.TB, what string, window time.Duration) {
	t.Helper()
	n := b.Len()
	time.Sleep(window)
	if calls := b.Calls(); len(calls) != n {
		t.Fatalf("%s: got %d unexpected sync call(s):\n%s", what, len(calls)-n, formatCalls(calls[n:]))
	}
}

func formatCalls(calls []syncCall) string {
	var b strings.Builder
	for i, c := range calls {
		fmt.Fprintf(&b, "  #%d %s\n", i, c)
	}
	return b.String()
}

// eventually polls cond until it holds, failing the test after waitTimeout with what and
// the output of detail.
func eventually(t testing.TB, what string, cond func() bool, detail func() string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			msg := ""
			if detail != nil {
				msg = detail()
			}
			t.Fatalf("timed out waiting for %s\n%s", what, msg)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Node addresses returned by fakeAddresses.
var (
	nodeIPv4 = netip.MustParseAddr("192.168.50.10")
	nodeIPv6 = netip.MustParseAddr("fd00:50::10")
)

// fakeAddresses is an AddressSource with the node's two fixed addresses.
func fakeAddresses() ([]netip.Addr, error) {
	// node-a's addresses in the e2e topology, as the compile golden files have them.
	return backendtest.NodeAddrs(), nil
}

// deleteCall is one recorded ConntrackCleaner.DeleteUDP call.
type deleteCall struct {
	Family model.Family
	Flows  []StaleFlow
}

// fakeConntrack is a ConntrackCleaner that only records the flows it is asked to delete.
type fakeConntrack struct {
	mu    sync.Mutex
	calls []deleteCall
}

func (c *fakeConntrack) DeleteUDP(_ context.Context, family model.Family, flows []StaleFlow) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, deleteCall{Family: family, Flows: slices.Clone(flows)})
	return nil
}

// Calls returns a copy of the recorded calls.
func (c *fakeConntrack) Calls() []deleteCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

// fakeRecorder is a Recorder that counts calls.
type fakeRecorder struct {
	mu          sync.Mutex
	syncs       map[model.Family]int // ObserveSync
	fullSyncs   map[model.Family]int
	syncErrors  map[model.Family]int
	invalid     map[string]int
	queued      int // SetLastQueued
	generation  uint64
	generations int // SetGeneration
	changes     [2]int
	programming int // ObserveNetworkProgramming
	// backendLen, when set, is read at every SetGeneration: lenAtGen then tells how many
	// backend calls the syncs completed so far have made.
	backendLen func() int
	lenAtGen   int
}

func newFakeRecorder() *fakeRecorder {
	return &fakeRecorder{
		syncs:      map[model.Family]int{},
		fullSyncs:  map[model.Family]int{},
		syncErrors: map[model.Family]int{},
		invalid:    map[string]int{},
	}
}

var _ Recorder = (*fakeRecorder)(nil)

func (r *fakeRecorder) lock() func() {
	r.mu.Lock()
	return r.mu.Unlock
}

func (r *fakeRecorder) ObserveSync(f model.Family, full bool, _ time.Duration) {
	defer r.lock()()
	r.syncs[f]++
	if full {
		r.fullSyncs[f]++
	}
}

func (r *fakeRecorder) ObserveNetworkProgramming(model.Family, time.Duration) {
	defer r.lock()()
	r.programming++
}

func (r *fakeRecorder) SetLastSync(model.Family, time.Time) {}

func (r *fakeRecorder) SetLastQueued(model.Family, time.Time) {
	defer r.lock()()
	r.queued++
}

func (r *fakeRecorder) SetPending(int, int) {}

func (r *fakeRecorder) IncChanges(services, endpoints int) {
	defer r.lock()()
	r.changes[0] += services
	r.changes[1] += endpoints
}

func (r *fakeRecorder) IncSyncError(_ string, f model.Family) {
	defer r.lock()()
	r.syncErrors[f]++
}

func (r *fakeRecorder) IncInvalid(kind string) {
	defer r.lock()()
	r.invalid[kind]++
}

func (r *fakeRecorder) SetGeneration(n uint64) {
	defer r.lock()()
	r.generation = n
	r.generations++
	if r.backendLen != nil {
		r.lenAtGen = r.backendLen()
	}
}

// CallsAtGeneration returns the number of backend calls made when the last successful
// sync completed.
func (r *fakeRecorder) CallsAtGeneration() int {
	defer r.lock()()
	return r.lenAtGen
}

func (r *fakeRecorder) SetNoLocalEndpoints(string, model.Family, int) {}

// Generation returns the last generation set (the number of successful syncs).
func (r *fakeRecorder) Generation() uint64 {
	defer r.lock()()
	return r.generation
}

// Queued returns the number of SetLastQueued calls (one per family per queued change).
func (r *fakeRecorder) Queued() int {
	defer r.lock()()
	return r.queued
}

// Invalid returns the IncInvalid count of kind.
func (r *fakeRecorder) Invalid(kind string) int {
	defer r.lock()()
	return r.invalid[kind]
}

// SyncErrors returns the IncSyncError count of family f.
func (r *fakeRecorder) SyncErrors(f model.Family) int {
	defer r.lock()()
	return r.syncErrors[f]
}

// Programming returns the number of ObserveNetworkProgramming calls.
func (r *fakeRecorder) Programming() int {
	defer r.lock()()
	return r.programming
}
