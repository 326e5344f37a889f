package proxier

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
)

// failingPrepare is a recording backend whose Prepare returns err.
type failingPrepare struct {
	recordingBackend
	err error
}

func (b *failingPrepare) Prepare(context.Context) error { return b.err }

// runWithPrepareError runs a Proxier whose backend's Prepare returns prepErr, over a
// clientset whose lists fail when apiDown (the caches never sync), and returns what Run
// returned, or ok=false when Run was still running after wait.
func runWithPrepareError(t *testing.T, prepErr error, apiDown bool, wait time.Duration) (be *failingPrepare, ok bool, err error) {
	t.Helper()
	client := fake.NewClientset(newNode())
	if apiDown {
		client.PrependReactor("list", "*", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, errors.New("API server unreachable")
		})
	}
	be = &failingPrepare{err: prepErr}
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.BufferLogs(true)))
	ctx, cancel := context.WithCancel(klog.NewContext(context.Background(), logger))
	p := New(clientsetSources(client, nodeName), be, Options{
		Node: testNodeConfig(), MinSyncPeriod: fastSync, SyncPeriod: time.Hour,
		Addresses: fakeAddresses, Conntrack: &fakeConntrack{}, Recorder: newFakeRecorder(),
	})
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case err = <-done:
		cancel()
		return be, true, err
	case <-time.After(wait):
	}
	cancel()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return after its context ended")
	}
	return be, false, nil
}

// TestPrepareMissingToolStops: a backend whose start-up work finds a program missing makes
// Run return that error at once, naming the backend, even while the API server cannot be
// reached (no retry loop behind a green start), and nothing is synced.
func TestPrepareMissingToolStops(t *testing.T) {
	t.Parallel()
	_, lookErr := exec.LookPath("portico-no-such-program")
	for _, apiDown := range []bool{false, true} {
		t.Run(fmt.Sprintf("apiDown=%t", apiDown), func(t *testing.T) {
			prepErr := fmt.Errorf("nftables is not usable: could not find nftables binary: %w", lookErr)
			be, ok, err := runWithPrepareError(t, prepErr, apiDown, waitTimeout)
			if !ok {
				t.Fatal("Run kept running although the backend's program is missing")
			}
			if !errors.Is(err, exec.ErrNotFound) || !strings.Contains(err.Error(), "backend recording cannot run on this node") {
				t.Errorf("Run: %v, want an error naming the backend and wrapping exec.ErrNotFound", err)
			}
			if n := be.Len(); n != 0 {
				t.Errorf("%d syncs, want none", n)
			}
		})
	}
}

// TestPrepareTransientErrorRunsOn: any other start-up error is logged and the proxier runs
// on; the first sync happens.
func TestPrepareTransientErrorRunsOn(t *testing.T) {
	t.Parallel()
	be, ok, err := runWithPrepareError(t, errors.New("nft --check: resource busy"), false, time.Second)
	if ok {
		t.Fatalf("Run returned %v on a transient start-up error", err)
	}
	if be.Len() == 0 {
		t.Error("no sync within a second of a transient start-up error")
	}
}
