package proxier

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

func TestMemoryNilIsSafe(t *testing.T) {
	var m *Memory
	m.AfterFullSync() // must not panic
}

func TestMemoryLimitFollowsLiveHeap(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })

	// A floor far above any test heap: the limit is the floor.
	m := &Memory{MinLimit: 1 << 40, Headroom: 1.5}
	m.AfterFullSync()
	if got := debug.SetMemoryLimit(-1); got != 1<<40 {
		t.Fatalf("limit = %d, want the floor %d", got, int64(1<<40))
	}

	// A tiny floor: the limit is the live heap times the headroom.
	ballast := make([]byte, 32<<20)
	ballast[len(ballast)-1] = 1
	m = &Memory{MinLimit: 1, Headroom: 2}
	m.AfterFullSync()
	got := debug.SetMemoryLimit(-1)
	live := liveHeap()
	if live < 32<<20 {
		t.Fatalf("live heap %d below the 32 MiB ballast", live)
	}
	if want := int64(math.Ceil(float64(live) * 2)); got != want {
		t.Fatalf("limit = %d, want 2 × live heap = %d", got, want)
	}
	runtime.KeepAlive(ballast)

	// MinLimit 0 leaves the limit alone.
	debug.SetMemoryLimit(math.MaxInt64)
	(&Memory{}).AfterFullSync()
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Fatalf("limit changed to %d with management disabled", got)
	}
}

// TestStartUpGCPercent: the start-up target holds until restored, and 0 leaves the
// process's target alone.
func TestStartUpGCPercent(t *testing.T) {
	old := debug.SetGCPercent(25)
	t.Cleanup(func() { debug.SetGCPercent(old) })

	restore := (&Memory{StartUpGCPercent: 100}).startUp()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GC percent during start-up = %d, want 100", got)
	}
	restore()
	if got := debug.SetGCPercent(25); got != 25 {
		t.Errorf("GC percent after start-up = %d, want 25 back", got)
	}

	// The end of the start-up collects the start-up's garbage and returns it to the OS
	// (debug.FreeOSMemory: a forced collection).
	forced := func() uint64 {
		s := []metrics.Sample{{Name: "/gc/cycles/forced:gc-cycles"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	before := forced()
	(&Memory{}).startUp()()
	if got := forced() - before; got != 1 {
		t.Errorf("the end of the start-up forced %d collections, want 1", got)
	}
	var nilMemory *Memory
	nilMemory.startUp()()
	if got := debug.SetGCPercent(25); got != 25 {
		t.Errorf("GC percent = %d after a start-up with no target, want 25 untouched", got)
	}
}
