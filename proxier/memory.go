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
//
// While the informer caches fill, the collector may run with a larger target
// (StartUpGCPercent): the initial LIST decodes every Service and EndpointSlice into
// objects that become garbage as soon as they are turned into cache records, and with
// the small heap of a starting process a low target made the collector run every few
// milliseconds (at 10,000 Services it took about half of the CPU time the LIST needed,
// and doubled it). The heap is at its smallest then; the process's own target is back
// before the first sync, whose peak sets the footprint (keeping the start-up target
// through the first compile saved ~0.1 s but raised the Go runtime's peak mapping by
// 5–12 MiB).
type Memory struct {
	// MinLimit is the smallest soft memory limit (bytes); 0 disables limit management
	// (e.g. when GOMEMLIMIT is set).
	MinLimit int64
	// Headroom multiplies the live heap to give the limit when that is larger than
	// MinLimit.
	Headroom float64
	// StartUpGCPercent is the garbage collector's target (as GOGC) while the informer
	// caches fill; 0 keeps the process's target (e.g. when GOGC is set).
	StartUpGCPercent int
}

// DefaultMemory returns the proxier's default memory management: a 96 MiB floor and 1.5×
// the live heap above it, and Go's default collector target during the start-up.
func DefaultMemory() *Memory {
	return &Memory{MinLimit: 96 << 20, Headroom: 1.5, StartUpGCPercent: 100}
}

// startUp sets the collector's target for the start-up and returns the function that
// ends it, once the informer caches are complete: it restores the previous target and
// collects the start-up's garbage and returns it to the OS. The LIST's garbage is then
// no longer part of the footprint when the first full sync starts: at 10,000 Services
// the RSS was ~80 MB when the caches were complete and ~98 MB at the end of the first
// sync; returned first, the sync starts from what the caches hold.
func (m *Memory) startUp() (end func()) {
	if m == nil {
		return func() {}
	}
	restore := func() {}
	if m.StartUpGCPercent != 0 {
		prev := debug.SetGCPercent(m.StartUpGCPercent)
		restore = func() { debug.SetGCPercent(prev) }
	}
	return func() {
		restore()
		debug.FreeOSMemory()
	}
}

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
