package proxier

import (
	"math"
	"runtime/debug"
	"runtime/metrics"
)

// Memory is how the proxier keeps its footprint small on every node: a full sync
// recompiles and re-renders every Service and leaves much garbage behind, so after each
// one the garbage is collected and returned to the OS at once, and the Go runtime's soft
// memory limit follows the live heap. No limit is set before the first full
// sync: the live heap is unknown then, and a low limit would make the collector run back
// to back through the largest sync of all.
type Memory struct {
	// MinLimit is the smallest soft memory limit (bytes); 0 disables limit management
	// (e.g. when GOMEMLIMIT is set).
	MinLimit int64
	// Headroom multiplies the live heap to give the limit when that is larger than
	// MinLimit.
	Headroom float64
}

// DefaultMemory returns the proxier's default memory management: a 96 MiB floor and 1.5×
// the live heap above it.
func DefaultMemory() *Memory { return &Memory{MinLimit: 96 << 20, Headroom: 1.5} }

// AfterFullSync collects the garbage a full sync left, returns memory to the OS and moves
// the soft limit to follow the live heap.
func (m *Memory) AfterFullSync() {
	if m == nil {
		return
	}
	debug.FreeOSMemory()
	if m.MinLimit == 0 {
		return
	}
	live := liveHeap()
	debug.SetMemoryLimit(max(m.MinLimit, int64(math.Ceil(float64(live)*m.Headroom))))
}

// liveHeap returns the heap's live bytes after the last collection.
func liveHeap() int64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64())
}
