package proxier

import (
	"context"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/portico-dev/portico/model"
)

// gcPercent reads the collector's target (SetGCPercent is the only way to read it).
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// gcObserver records the collector's target at each list or watch of a source and at
// each backend sync.
type gcObserver struct {
	mu             sync.Mutex
	atList, atSync []int
}

func (o *gcObserver) observe(into *[]int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	*into = append(*into, gcPercent())
}

// watching wraps lw so that each List and Watch records the target; cs tells the
// reflector, as in clientsetSources, that the fake serves no watch-lists.
func (o *gcObserver) watching(lw cache.ListerWatcher, cs *fake.Clientset) cache.ListerWatcher {
	return cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			o.observe(&o.atList)
			return lw.(cache.ListerWatcherWithContext).ListWithContext(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			o.observe(&o.atList)
			return lw.(cache.ListerWatcherWithContext).WatchWithContext(ctx, opts)
		},
	}, cs)
}

// gcBackend is a recording backend that notes the collector's target at each sync.
type gcBackend struct {
	*recordingBackend
	o *gcObserver
}

func (b gcBackend) Sync(ctx context.Context, t *model.Table, d model.Diff) error {
	b.o.observe(&b.o.atSync)
	return b.recordingBackend.Sync(ctx, t, d)
}

// TestStartUpGCTarget: the collector runs with the start-up target while the caches fill
// and the process's own target is back by the time the first sync starts.
// Not parallel: the target is the process's.
func TestStartUpGCTarget(t *testing.T) {
	old := debug.SetGCPercent(25)
	t.Cleanup(func() { debug.SetGCPercent(old) })
	o := &gcObserver{}
	cs := fake.NewClientset()
	src := clientsetSources(cs, nodeName)
	src.Services, src.EndpointSlices = o.watching(src.Services, cs), o.watching(src.EndpointSlices, cs)
	rec := &recordingBackend{}
	p := New(src, gcBackend{rec, o}, Options{
		Node: testNodeConfig(), MinSyncPeriod: fastSync, SyncPeriod: time.Hour,
		Addresses: fakeAddresses, Conntrack: &fakeConntrack{}, Recorder: newFakeRecorder(),
		Memory: &Memory{StartUpGCPercent: 300},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	rec.WaitFor(t, "a first sync", func(c []syncCall) bool { return len(c) > 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.atList) == 0 || o.atList[0] != 300 {
		t.Errorf("GC target at the first list/watch = %v, want 300 (the start-up target)", o.atList)
	}
	if len(o.atSync) == 0 || o.atSync[0] != 25 {
		t.Errorf("GC target at the first backend sync = %v, want 25 (the process's)", o.atSync)
	}
	if got := gcPercent(); got != 25 {
		t.Errorf("GC target after Run = %d, want 25", got)
	}
}

// TestAfterFirstSyncRunsOnce checks that Options.AfterFirstSync is called once, after the
// first sync reached the backend, and not again on later syncs.
func TestAfterFirstSyncRunsOnce(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	var syncsBefore atomic.Int32
	rb := &recordingBackend{}
	e := startEnvOpts(t, rb, rb, func(o *Options) {
		o.AfterFirstSync = func() {
			syncsBefore.Store(int32(len(rb.Calls())))
			calls.Add(1)
		}
	}, testRetry, dnsObjects("10.244.1.10")...)
	if _, err := e.client.CoreV1().Services("default").Create(context.Background(),
		newService("web", "10.96.0.10", svcPort("http", corev1.ProtocolTCP, 80)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.backend.WaitFor(t, "a sync of the new Service", func(c []syncCall) bool { return len(c) > 2 })
	if n := calls.Load(); n != 1 {
		t.Fatalf("AfterFirstSync called %d times, want once", n)
	}
	if n := syncsBefore.Load(); n == 0 {
		t.Errorf("AfterFirstSync ran before any Sync reached the backend")
	}
}
