package proxier

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/portico-dev/portico/model"
	"github.com/portico-dev/portico/proxier/health"
)

// Recorder receives the proxier's measurements; the metrics package implements it with
// kube-proxy's metric names.
type Recorder interface {
	// ObserveSync records the duration of a sync of family f that called the backend.
	ObserveSync(f model.Family, full bool, d time.Duration)
	// ObserveNetworkProgramming records the time from an EndpointSlice change to its rules.
	ObserveNetworkProgramming(f model.Family, d time.Duration)
	// SetLastSync records the time of the last successful sync of family f.
	SetLastSync(f model.Family, t time.Time)
	// SetLastQueued records the time of the last queued change of family f.
	SetLastQueued(f model.Family, t time.Time)
	// SetPending records the number of changes waiting for a sync.
	SetPending(services, endpoints int)
	// IncChanges counts changes that a sync has applied.
	IncChanges(services, endpoints int)
	// IncSyncError counts failed syncs of family f.
	IncSyncError(backend string, f model.Family)
	// IncInvalid counts objects or fields skipped as invalid.
	IncInvalid(kind string)
	// SetGeneration records the number of successful syncs so far.
	SetGeneration(n uint64)
	// SetNoLocalEndpoints records how many Service ports with a Local policy
	// ("internal" or "external") have no endpoint on this node.
	SetNoLocalEndpoints(policy string, f model.Family, n int)
	// IncRulesRepair counts a repair of family f: the backend found its rules missing from
	// the kernel (backends.Verifier) and a full sync was requested.
	IncRulesRepair(f model.Family)
}

// HealthTracker follows the proxier's progress for /healthz and /livez.
type HealthTracker interface {
	// QueuedUpdate says a change of family f is waiting for a sync.
	QueuedUpdate(f model.Family)
	// Updated says family f was synced.
	Updated(f model.Family)
	// RulesMissing says the rules of family f are missing from the kernel: f is
	// unhealthy until the next Updated of f (the sync that repairs them).
	RulesMissing(f model.Family)
	// SyncNode passes the current Node object (nil when deleted).
	SyncNode(node *corev1.Node)
}

// ServiceHealthSyncer runs the healthCheckNodePort servers.
type ServiceHealthSyncer interface {
	// Sync makes the running servers match services.
	Sync(ctx context.Context, services map[model.ServiceName]health.ServiceEntry) error
}

type nopRecorder struct{}

func (nopRecorder) ObserveSync(model.Family, bool, time.Duration)         {}
func (nopRecorder) ObserveNetworkProgramming(model.Family, time.Duration) {}
func (nopRecorder) SetLastSync(model.Family, time.Time)                   {}
func (nopRecorder) SetLastQueued(model.Family, time.Time)                 {}
func (nopRecorder) SetPending(int, int)                                   {}
func (nopRecorder) IncChanges(int, int)                                   {}
func (nopRecorder) IncSyncError(string, model.Family)                     {}
func (nopRecorder) IncInvalid(string)                                     {}
func (nopRecorder) SetGeneration(uint64)                                  {}
func (nopRecorder) SetNoLocalEndpoints(string, model.Family, int)         {}
func (nopRecorder) IncRulesRepair(model.Family)                           {}

type nopHealth struct{}

func (nopHealth) QueuedUpdate(model.Family) {}
func (nopHealth) Updated(model.Family)      {}
func (nopHealth) RulesMissing(model.Family) {}
func (nopHealth) SyncNode(*corev1.Node)     {}
