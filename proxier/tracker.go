package proxier

import (
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/portico-dev/portico/model"
)

// maxTriggerTimes bounds how many change times are kept per Service between two syncs.
const maxTriggerTimes = 32

// trigger is when a change of an EndpointSlice of one family was made.
type trigger struct {
	at     time.Time
	family model.Family
}

// tracker collects what changed since the last sync: dirty Service names, the times the
// changes were triggered (for the network programming latency) and node changes.
type tracker struct {
	mu       sync.Mutex
	dirty    map[model.ServiceName]struct{}
	triggers map[model.ServiceName][]trigger
	node     bool
	queued   time.Time // when the oldest pending change arrived; zero when none
	services int       // pending Service changes
	slices   int       // pending EndpointSlice changes
	notify   func()
}

func newTracker(notify func()) *tracker {
	return &tracker{
		dirty:    map[model.ServiceName]struct{}{},
		triggers: map[model.ServiceName][]trigger{},
		notify:   notify,
	}
}

// ServiceChanged marks a Service dirty.
func (t *tracker) ServiceChanged(name model.ServiceName) {
	t.mark(func() {
		t.dirty[name] = struct{}{}
		t.services++
	})
}

// SliceChanged marks the Service of an EndpointSlice dirty; at is the slice's
// last-change-trigger-time (zero when unknown) and fam its address family.
func (t *tracker) SliceChanged(name model.ServiceName, fam model.Family, at time.Time) {
	t.mark(func() {
		t.dirty[name] = struct{}{}
		t.slices++
		if !at.IsZero() && len(t.triggers[name]) < maxTriggerTimes {
			t.triggers[name] = append(t.triggers[name], trigger{at: at, family: fam})
		}
	})
}

// NodeChanged records a change of this node's Node object.
func (t *tracker) NodeChanged() { t.mark(func() { t.node = true }) }

func (t *tracker) mark(f func()) {
	t.mu.Lock()
	f()
	if t.queued.IsZero() {
		t.queued = time.Now()
	}
	t.mu.Unlock()
	t.notify()
}

// changes is what a sync takes from the tracker.
type changes struct {
	dirty         []model.ServiceName
	triggers      map[model.ServiceName][]trigger
	node          bool
	queued        time.Time
	services, eps int
}

// Take returns the pending changes and resets the tracker.
func (t *tracker) Take() changes {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := changes{
		dirty:    slices.Collect(maps.Keys(t.dirty)),
		triggers: t.triggers,
		node:     t.node,
		queued:   t.queued,
		services: t.services,
		eps:      t.slices,
	}
	t.dirty = map[model.ServiceName]struct{}{}
	t.triggers = map[model.ServiceName][]trigger{}
	t.node, t.queued, t.services, t.slices = false, time.Time{}, 0, 0
	return c
}

// Pending returns the number of pending Service and EndpointSlice changes.
func (t *tracker) Pending() (services, slices int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.services, t.slices
}

// Requeue puts changes back after a failed sync so that they are retried, with the
// trigger times they had.
func (t *tracker) Requeue(c changes) {
	t.mu.Lock()
	for _, n := range c.dirty {
		t.dirty[n] = struct{}{}
	}
	for n, ts := range c.triggers {
		merged := append(ts, t.triggers[n]...)
		t.triggers[n] = merged[:min(len(merged), maxTriggerTimes)]
	}
	t.node = t.node || c.node
	if t.queued.IsZero() || (!c.queued.IsZero() && c.queued.Before(t.queued)) {
		t.queued = c.queued
	}
	t.services += c.services
	t.slices += c.eps
	t.mu.Unlock()
}
