package proxier

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/model"
)

// startEnvWithEvents is startEnv with Options.Events set to a running EventRecorder
// writing to sink; wrap, when set, wraps the recording backend.
func startEnvWithEvents(t *testing.T, sink EventSink, out *outcomes, wrap func(*recordingBackend) backends.Backend) *testEnv {
	t.Helper()
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.BufferLogs(true)))
	ctx, cancel := context.WithCancel(klog.NewContext(context.Background(), logger))
	rec := NewEventRecorder(sink, EventOptions{Count: out.count})
	e := &testEnv{
		t: t, client: fake.NewClientset(newNode()), backend: &recordingBackend{}, rec: newFakeRecorder(), ct: &fakeConntrack{},
		logs: logger.GetSink().(ktesting.Underlier).GetBuffer(),
	}
	e.rec.backendLen = e.backend.Len
	var be backends.Backend = e.backend
	if wrap != nil {
		be = wrap(e.backend)
	}
	e.p = New(clientsetSources(e.client, nodeName), be, Options{
		Node: testNodeConfig(), MinSyncPeriod: fastSync, SyncPeriod: time.Hour,
		Addresses: fakeAddresses, Conntrack: e.ct, Recorder: e.rec, Events: rec,
	})
	done := make(chan error, 2)
	go func() { rec.Run(ctx); done <- nil }()
	go func() { done <- e.p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	})
	eventually(t, "the first sync", func() bool { return e.rec.Generation() > 0 }, nil)
	e.settle(fastSync + 100*time.Millisecond)
	return e
}

// resync makes one change and waits until a sync has compiled it.
func (e *testEnv) resync(change func()) {
	e.t.Helper()
	e.settle(fastSync + 50*time.Millisecond)
	gen := e.rec.Generation()
	change()
	eventually(e.t, "a sync after the change", func() bool { return e.rec.Generation() > gen }, nil)
}

// TestInvalidObjectsGetOneEvent: a Service with an invalid port and an EndpointSlice of
// it with an invalid address each give one Event on the Service (with its UID), naming
// the field and the value — one, however many syncs report the problems again.
func TestInvalidObjectsGetOneEvent(t *testing.T) {
	t.Parallel()
	sink, out := &fakeSink{}, &outcomes{n: map[string]int{}}
	e := startEnvWithEvents(t, sink, out, nil)
	svc := newService("bigport", "10.96.5.1", svcPort("big", corev1.ProtocolTCP, 70000), svcPort("ok", corev1.ProtocolTCP, 81))
	svc.UID = "0f6b7a4e-2d1c-4e8f-9a3b-5c7d9e1f2a4b"
	e.resync(func() {
		e.create(svc)
		e.create(newSlice("bigport-1", "bigport", epPort("ok", corev1.ProtocolTCP, 8081), "10.244.2.300", "10.244.2.51"))
	})
	eventually(t, "two Events", func() bool { return len(sink.Events()) >= 2 }, func() string { return fmt.Sprint(sink.Events()) })

	for i := range 3 {
		e.resync(func() {
			e.updateService("bigport", func(s *corev1.Service) { s.Spec.Ports[1].Port = int32(82 + i) })
		})
	}
	e.resync(func() { e.updateNode(false, func(n *corev1.Node) { n.Labels[corev1.LabelTopologyZone] = "zone-b" }) })
	e.settle(fastSync + 50*time.Millisecond)

	if got := e.rec.Invalid("service"); got < 5 {
		t.Errorf("the Service's problem was reported %d times, want at least 5 (one per sync that compiled it)", got)
	}
	want := []Event{
		{Note: `service default/bigport: spec.ports[0].port: "70000" is out of range 1-65535`},
		{Note: `endpointslice default/bigport-1: endpoints[0].addresses[0]: "10.244.2.300" is not a valid IPv4 address`},
	}
	got := sink.Events()
	if len(got) != len(want) {
		t.Fatalf("%d Events, want %d:\n%v\noutcomes: %s", len(got), len(want), got, out)
	}
	ref := ObjectRef{Kind: "Service", Namespace: testNS, Name: "bigport", UID: types.UID(svc.UID)}
	for _, ev := range got {
		if ev.Regarding != ref || ev.Reason != EventReasonInvalidField {
			t.Errorf("Event %+v: want reason %s about %+v", ev, EventReasonInvalidField, ref)
		}
	}
	if !(got[0].Note == want[0].Note && got[1].Note == want[1].Note || got[0].Note == want[1].Note && got[1].Note == want[0].Note) {
		t.Errorf("notes %q and %q, want %q and %q", got[0].Note, got[1].Note, want[0].Note, want[1].Note)
	}
	if n := out.get(EventDuplicate); n < 8 {
		t.Errorf("%d duplicate warnings, want at least 8 (two per later sync)", n)
	}
	if c, ok := e.backend.Latest(model.IPv4); !ok || !hasEndpoint(c, portName("bigport", "ok", model.TCP), "10.244.2.51:8081") {
		t.Errorf("the valid port and endpoint are not programmed")
	}
}

// skippingBackend is a recordingBackend that reports one Service port as skipped in every
// Sync whose table holds it, as a backend does with a port it cannot render.
type skippingBackend struct {
	*recordingBackend
	skip model.ServicePortName
}

// Sync records the call and reports skip as skipped when the table holds it.
func (b *skippingBackend) Sync(ctx context.Context, t *model.Table, d model.Diff) error {
	if err := b.recordingBackend.Sync(ctx, t, d); err != nil {
		return err
	}
	if _, ok := t.Get(b.skip); !ok {
		return nil
	}
	return &backends.SkippedError{Family: t.Family(), Ports: []backends.SkippedPort{
		{Name: b.skip, Err: errors.New(`element comment: 130 characters, the kernel takes 128`)},
	}}
}

// TestSkippedPortGetsOneEvent: a Service port that the backend skips gives one Event on
// the Service (reason Skipped, with its UID) naming the port and the backend's reason,
// however many syncs skip it again; the Service's other port is programmed.
func TestSkippedPortGetsOneEvent(t *testing.T) {
	t.Parallel()
	sink, out := &fakeSink{}, &outcomes{n: map[string]int{}}
	skip := portName("unrenderable", "a", model.TCP)
	e := startEnvWithEvents(t, sink, out, func(r *recordingBackend) backends.Backend {
		return &skippingBackend{recordingBackend: r, skip: skip}
	})
	svc := newService("unrenderable", "10.96.5.2", svcPort("a", corev1.ProtocolTCP, 80), svcPort("b", corev1.ProtocolTCP, 81))
	svc.UID = "1f6b7a4e-2d1c-4e8f-9a3b-5c7d9e1f2a4b"
	e.resync(func() { e.create(svc) })
	for i := range 2 {
		e.resync(func() {
			e.updateService("unrenderable", func(s *corev1.Service) { s.Spec.Ports[1].Port = int32(82 + i) })
		})
	}
	eventually(t, "an Event", func() bool { return len(sink.Events()) >= 1 }, func() string { return out.String() })
	e.settle(fastSync + 50*time.Millisecond)

	got := sink.Events()
	ref := ObjectRef{Kind: "Service", Namespace: testNS, Name: "unrenderable", UID: types.UID(svc.UID)}
	note := `Service port ` + skip.String() + `: element comment: 130 characters, the kernel takes 128: not programmed (recording backend, IPv4)`
	if len(got) != 1 || got[0].Regarding != ref || got[0].Reason != EventReasonSkipped || got[0].Note != note {
		t.Fatalf("Events %+v, want one about %+v, reason %s, note %q (outcomes %s)", got, ref, EventReasonSkipped, note, out)
	}
	if n := out.get(EventDuplicate); n < 2 {
		t.Errorf("%d duplicate warnings, want at least 2 (one per later sync)", n)
	}
	if c, ok := e.backend.Latest(model.IPv4); !ok || !tableHas(c, portName("unrenderable", "b", model.TCP)) {
		t.Errorf("the Service's other port is not in the table")
	}
}

// tableHas reports whether the call's table holds port n.
func tableHas(c syncCall, n model.ServicePortName) bool {
	_, ok := c.Table.Get(n)
	return ok
}

// warningBackend is a recordingBackend that, like the ipvs backend with a scheduler the
// kernel lacks, programs one Service port otherwise than asked in every Sync whose table
// holds it, and says so through backends.Warner.
type warningBackend struct {
	*recordingBackend
	port model.ServicePortName
	mu   sync.Mutex
	warn []backends.PortWarning
}

// Sync records the call and a warning about port when the table holds it.
func (b *warningBackend) Sync(ctx context.Context, t *model.Table, d model.Diff) error {
	if err := b.recordingBackend.Sync(ctx, t, d); err != nil {
		return err
	}
	if _, ok := t.Get(b.port); ok {
		b.mu.Lock()
		b.warn = append(b.warn, backends.PortWarning{Name: b.port, Err: errors.New(`the kernel has no IPVS scheduler "mh": the default "rr" is used`)})
		b.mu.Unlock()
	}
	return nil
}

// TakeWarnings returns the warnings and forgets them.
func (b *warningBackend) TakeWarnings() []backends.PortWarning {
	b.mu.Lock()
	defer b.mu.Unlock()
	w := b.warn
	b.warn = nil
	return w
}

// TestBackendWarningGetsOneEvent: a Service port that the backend programs otherwise than
// asked gives one Event on the Service (reason Substituted) naming the port and what the
// backend did, however many syncs warn again; the sync succeeds.
func TestBackendWarningGetsOneEvent(t *testing.T) {
	t.Parallel()
	sink, out := &fakeSink{}, &outcomes{n: map[string]int{}}
	port := portName("sched", "a", model.TCP)
	e := startEnvWithEvents(t, sink, out, func(r *recordingBackend) backends.Backend {
		return &warningBackend{recordingBackend: r, port: port}
	})
	svc := newService("sched", "10.96.5.3", svcPort("a", corev1.ProtocolTCP, 80))
	svc.UID = "2a6b7a4e-2d1c-4e8f-9a3b-5c7d9e1f2a4c"
	e.resync(func() { e.create(svc) })
	e.resync(func() { e.updateService("sched", func(s *corev1.Service) { s.Spec.Ports[0].Port = 81 }) })
	eventually(t, "an Event", func() bool { return len(sink.Events()) >= 1 }, func() string { return out.String() })
	e.settle(fastSync + 50*time.Millisecond)

	got := sink.Events()
	ref := ObjectRef{Kind: "Service", Namespace: testNS, Name: "sched", UID: types.UID(svc.UID)}
	note := `Service port ` + port.String() + `: the kernel has no IPVS scheduler "mh": the default "rr" is used (recording backend, IPv4)`
	if len(got) != 1 || got[0].Regarding != ref || got[0].Reason != EventReasonSubstituted || got[0].Note != note {
		t.Fatalf("Events %+v, want one about %+v, reason %s, note %q (outcomes %s)", got, ref, EventReasonSubstituted, note, out)
	}
	if n := out.get(EventDuplicate); n < 1 {
		t.Errorf("%d duplicate warnings, want at least 1 (the later sync)", n)
	}
}
