package proxier

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
	clocktesting "k8s.io/utils/clock/testing"
)

// fakeSink is an EventSink that records the Events it writes.
type fakeSink struct {
	mu      sync.Mutex
	events  []Event
	err     func(Event) error
	hold    chan struct{} // when set, each write waits for it to be closed
	entered chan Event    // when set, receives each event as its write starts
}

// Write records ev, after waiting for hold and with err's answer when they are set.
func (s *fakeSink) Write(ctx context.Context, ev Event) error {
	s.mu.Lock()
	hold, entered, errf := s.hold, s.entered, s.err
	s.mu.Unlock()
	if entered != nil {
		entered <- ev
	}
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if errf != nil {
		if err := errf(ev); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, ev)
	return nil
}

// Events returns the events written so far.
func (s *fakeSink) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.events...)
}

func (s *fakeSink) setErr(f func(Event) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = f
}

// outcomes counts EventOptions.Count calls.
type outcomes struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *outcomes) count(outcome string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.n[outcome]++
}

func (o *outcomes) get(outcome string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[outcome]
}

// String lists the counts, for failure messages.
func (o *outcomes) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return fmt.Sprint(o.n)
}

// recorderEnv is a running EventRecorder over a fakeSink and a fake clock.
type recorderEnv struct {
	rec   *EventRecorder
	sink  *fakeSink
	clock *clocktesting.FakeClock
	out   *outcomes
	logs  ktesting.Buffer
}

// startRecorder runs an EventRecorder with opts (its Count and Clock replaced) until the
// test ends.
func startRecorder(t *testing.T, sink *fakeSink, opts EventOptions) *recorderEnv {
	t.Helper()
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.BufferLogs(true)))
	e := &recorderEnv{
		sink:  sink,
		clock: clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		out:   &outcomes{n: map[string]int{}},
		logs:  logger.GetSink().(ktesting.Underlier).GetBuffer(),
	}
	opts.Count, opts.Clock = e.out.count, e.clock
	e.rec = NewEventRecorder(sink, opts)
	ctx, cancel := context.WithCancel(klog.NewContext(context.Background(), logger))
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.rec.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return e
}

// waitOutcome waits until outcome has been counted n times.
func (e *recorderEnv) waitOutcome(t *testing.T, outcome string, n int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d %q outcome(s)", n, outcome), func() bool { return e.out.get(outcome) >= n },
		func() string { return "outcomes: " + e.out.String() })
	if got := e.out.get(outcome); got != n {
		t.Fatalf("%d %q outcomes, want %d (%s)", got, outcome, n, e.out)
	}
}

// expectOutcomes checks the counts of the outcomes named in want.
func (e *recorderEnv) expectOutcomes(t *testing.T, want map[string]int) {
	t.Helper()
	for outcome, n := range want {
		if got := e.out.get(outcome); got != n {
			t.Errorf("%d %q outcome(s), want %d (all: %s)", got, outcome, n, e.out)
		}
	}
}

func svcRef(name string) ObjectRef {
	return ObjectRef{Kind: "Service", Namespace: "ns", Name: name, UID: types.UID("uid-" + name)}
}

// TestEventRecorderDeduplicates: the same warning about the same object is written once
// per Refresh, however often it is reported; another note is another Event.
func TestEventRecorderDeduplicates(t *testing.T) {
	e := startRecorder(t, &fakeSink{}, EventOptions{Refresh: 30 * time.Minute})
	for range 5 {
		e.rec.Warn(svcRef("web"), EventReasonInvalidField, "port 0")
	}
	e.waitOutcome(t, EventWritten, 1)
	e.expectOutcomes(t, map[string]int{EventDuplicate: 4})

	e.rec.Warn(svcRef("web"), EventReasonInvalidField, "port 1")
	e.waitOutcome(t, EventWritten, 2)

	e.clock.Step(29 * time.Minute)
	e.rec.Warn(svcRef("web"), EventReasonInvalidField, "port 0")
	e.expectOutcomes(t, map[string]int{EventDuplicate: 5})
	e.clock.Step(time.Minute)
	e.rec.Warn(svcRef("web"), EventReasonInvalidField, "port 0")
	e.waitOutcome(t, EventWritten, 3)

	got := e.sink.Events()
	want := []string{"port 0", "port 1", "port 0"}
	for i, ev := range got {
		if ev.Note != want[i] || ev.Regarding != svcRef("web") || ev.Reason != EventReasonInvalidField {
			t.Errorf("event %d = %+v, want note %q about %v", i, ev, want[i], svcRef("web"))
		}
	}
}

// TestEventRecorderObjectBudget: one object gets ObjectBurst different warnings at once,
// then one per ObjectInterval, whatever the notes.
func TestEventRecorderObjectBudget(t *testing.T) {
	e := startRecorder(t, &fakeSink{}, EventOptions{ObjectBurst: 3, ObjectInterval: 10 * time.Minute, Burst: 10})
	for i := range 5 {
		e.rec.Warn(svcRef("churn"), EventReasonInvalidField, fmt.Sprintf("endpoints[%d]", i))
	}
	e.rec.Warn(svcRef("other"), EventReasonInvalidField, "endpoints[0]")
	e.waitOutcome(t, EventWritten, 4)
	e.expectOutcomes(t, map[string]int{EventObjectLimited: 2})

	e.clock.Step(10 * time.Minute)
	e.rec.Warn(svcRef("churn"), EventReasonInvalidField, "endpoints[5]")
	e.rec.Warn(svcRef("churn"), EventReasonInvalidField, "endpoints[6]")
	e.waitOutcome(t, EventWritten, 5)
	e.expectOutcomes(t, map[string]int{EventObjectLimited: 3})
}

// TestEventRecorderRateLimit: the node writes at most Burst Events at once, then one per
// 1/QPS; the others wait in the queue.
func TestEventRecorderRateLimit(t *testing.T) {
	e := startRecorder(t, &fakeSink{}, EventOptions{QPS: 1, Burst: 2})
	for i := range 4 {
		e.rec.Warn(svcRef(fmt.Sprint("svc", i)), EventReasonInvalidField, "bad")
	}
	e.waitOutcome(t, EventWritten, 2)
	eventually(t, "the recorder to wait for a token", e.clock.HasWaiters, nil)
	if got := len(e.sink.Events()); got != 2 {
		t.Fatalf("%d Events written before the next token, want 2", got)
	}
	e.clock.Step(999 * time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	if got := len(e.sink.Events()); got != 2 {
		t.Fatalf("%d Events written 999 ms later, want 2", got)
	}
	e.clock.Step(time.Millisecond)
	e.waitOutcome(t, EventWritten, 3)
	eventually(t, "the recorder to wait for a token", e.clock.HasWaiters, nil)
	e.clock.Step(time.Second)
	e.waitOutcome(t, EventWritten, 4)
}

// TestEventRecorderQueueBound: while a write hangs, at most QueueSize warnings wait; the
// others are dropped and counted, and may be reported again later.
func TestEventRecorderQueueBound(t *testing.T) {
	sink := &fakeSink{hold: make(chan struct{}), entered: make(chan Event, 10)}
	e := startRecorder(t, sink, EventOptions{QueueSize: 2, Burst: 10})
	e.rec.Warn(svcRef("svc0"), EventReasonInvalidField, "bad")
	<-sink.entered // Run holds svc0 in the sink; the queue is empty
	for i := 1; i <= 4; i++ {
		e.rec.Warn(svcRef(fmt.Sprint("svc", i)), EventReasonInvalidField, "bad")
	}
	e.expectOutcomes(t, map[string]int{EventQueueFull: 2})
	close(sink.hold)
	e.waitOutcome(t, EventWritten, 3)
	e.rec.Warn(svcRef("svc4"), EventReasonInvalidField, "bad")
	e.waitOutcome(t, EventWritten, 4)
	var names []string
	for _, ev := range sink.Events() {
		names = append(names, ev.Regarding.Name)
	}
	if got := strings.Join(names, " "); got != "svc0 svc1 svc2 svc4" {
		t.Errorf("written: %s, want svc0 svc1 svc2 svc4", got)
	}
}

// TestEventRecorderDenied: a recorder that may not write Events logs that once, with a
// hint, and keeps going: it writes once it may.
func TestEventRecorderDenied(t *testing.T) {
	sink := &fakeSink{}
	sink.setErr(func(Event) error {
		return apierrors.NewForbidden(schema.GroupResource{Group: "events.k8s.io", Resource: "events"}, "x", fmt.Errorf("RBAC: denied"))
	})
	e := startRecorder(t, sink, EventOptions{Burst: 10})
	for i := range 3 {
		e.rec.Warn(svcRef(fmt.Sprint("svc", i)), EventReasonInvalidField, "bad")
	}
	e.waitOutcome(t, EventFailed, 3)
	if n := strings.Count(e.logs.String(), "Cannot write Events"); n != 1 {
		t.Errorf("the denial was logged %d times, want once:\n%s", n, e.logs.String())
	}
	if !strings.Contains(e.logs.String(), "create on events.k8s.io events") {
		t.Errorf("the log lacks the RBAC hint:\n%s", e.logs.String())
	}
	sink.setErr(nil)
	e.rec.Warn(svcRef("svc3"), EventReasonInvalidField, "bad")
	e.waitOutcome(t, EventWritten, 1)
}

// TestEventRecorderLeavesObjectToReporter: when the same Event exists already (another
// node wrote it), this node sends nothing more about that object for Refresh.
func TestEventRecorderLeavesObjectToReporter(t *testing.T) {
	sink := &fakeSink{}
	sink.setErr(func(ev Event) error {
		if ev.Note == "taken" {
			return fmt.Errorf("event ns/web.1234: %w", ErrEventExists)
		}
		return nil
	})
	e := startRecorder(t, sink, EventOptions{Burst: 10, Refresh: 30 * time.Minute})
	e.rec.Warn(svcRef("web"), EventReasonInvalidField, "taken")
	e.waitOutcome(t, EventExists, 1)
	e.rec.Warn(svcRef("web"), EventReasonInvalidField, "another")
	e.rec.Warn(svcRef("db"), EventReasonInvalidField, "another")
	e.waitOutcome(t, EventWritten, 1)
	e.expectOutcomes(t, map[string]int{EventDuplicate: 1})
	e.clock.Step(30 * time.Minute)
	e.rec.Warn(svcRef("web"), EventReasonInvalidField, "another")
	e.waitOutcome(t, EventWritten, 2)
}

// TestEventRecorderOwnEventAfterRestart: an Event this node wrote before it restarted
// is not written again, and the object stays this node's: its next problem is written.
func TestEventRecorderOwnEventAfterRestart(t *testing.T) {
	sink := &fakeSink{}
	sink.setErr(func(ev Event) error {
		if ev.Note == "before the restart" {
			return fmt.Errorf("event ns/web.1234: %w", ErrOwnEventExists)
		}
		return nil
	})
	e := startRecorder(t, sink, EventOptions{Burst: 10, Refresh: 30 * time.Minute})
	e.rec.Warn(svcRef("web"), EventReasonInvalidField, "before the restart")
	e.waitOutcome(t, EventExists, 1)
	e.rec.Warn(svcRef("web"), EventReasonInvalidField, "before the restart")
	e.rec.Warn(svcRef("web"), EventReasonInvalidField, "after the restart")
	e.waitOutcome(t, EventWritten, 1)
	e.expectOutcomes(t, map[string]int{EventDuplicate: 1, EventExists: 1})
	if got := e.sink.Events(); len(got) != 1 || got[0].Note != "after the restart" {
		t.Errorf("written: %+v, want only the new problem", got)
	}
}

// TestEventRecorderTooMany: the recorder remembers at most MaxTracked warnings; it makes
// room by forgetting the expired ones.
func TestEventRecorderTooMany(t *testing.T) {
	e := startRecorder(t, &fakeSink{}, EventOptions{MaxTracked: 2, Burst: 10, Refresh: 30 * time.Minute})
	for i := range 3 {
		e.rec.Warn(svcRef(fmt.Sprint("svc", i)), EventReasonInvalidField, "bad")
	}
	e.waitOutcome(t, EventWritten, 2)
	e.expectOutcomes(t, map[string]int{EventTooMany: 1})
	e.clock.Step(30 * time.Minute)
	e.rec.Warn(svcRef("svc2"), EventReasonInvalidField, "bad")
	e.waitOutcome(t, EventWritten, 3)
}

// TestPackedUID: a canonical UUID survives packing; anything else is unknown.
func TestPackedUID(t *testing.T) {
	for _, tc := range []struct{ in, want types.UID }{
		{"0f6b7a4e-2d1c-4e8f-9a3b-5c7d9e1f2a4b", "0f6b7a4e-2d1c-4e8f-9a3b-5c7d9e1f2a4b"},
		{"0F6B7A4E-2D1C-4E8F-9A3B-5C7D9E1F2A4B", ""},
		{"0f6b7a4e2d1c4e8f9a3b5c7d9e1f2a4b0000", ""},
		{"0f6b7a4e-2d1c-4e8f-9a3b-5c7d9e1f2a4g", ""},
		{"uid-1", ""},
		{"", ""},
	} {
		if got := packUID(tc.in).UID(); got != tc.want {
			t.Errorf("packUID(%q).UID() = %q, want %q", tc.in, got, tc.want)
		}
	}
}
