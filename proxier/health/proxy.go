// Package health serves the health checks that kube-proxy serves: the node-wide /healthz
// and /livez endpoints, and one server per healthCheckNodePort of the Services with
// externalTrafficPolicy: Local. Their answers (status codes, headers and JSON bodies) match
// kube-proxy's, so that load balancers and probes configured for kube-proxy keep working.
package health

import (
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"

	"github.com/portico-dev/portico/model"
)

// ToBeDeletedTaint is the taint the cluster autoscaler puts on a node it is about to
// delete; /healthz fails on such a node so that load balancers drain it.
const ToBeDeletedTaint = "ToBeDeletedByClusterAutoscaler"

// ProbeRecorder counts the answers of /healthz and /livez by HTTP status code.
// *metrics.Metrics implements it (kubeproxy_proxy_healthz_total, kubeproxy_proxy_livez_total).
type ProbeRecorder interface {
	// IncHealthz counts one answer of /healthz.
	IncHealthz(code int)
	// IncLivez counts one answer of /livez.
	IncLivez(code int)
}

// FamilyHealth is the health of the rules of one IP family, as reported in Report.Status.
type FamilyHealth struct {
	// LastUpdated is when the rules of the family were last synced successfully.
	LastUpdated time.Time `json:"lastUpdated"`
	// Healthy is false when an update has waited for a sync longer than the timeout, or
	// while the family's rules are missing from the kernel and not repaired yet.
	Healthy bool `json:"healthy"`
}

// Report is the JSON body of /healthz and /livez, field for field kube-proxy's.
type Report struct {
	// LastUpdated is the most recent successful sync of any family; in an answer with
	// status 200 it is the current time, as kube-proxy reports.
	LastUpdated time.Time `json:"lastUpdated"`
	// CurrentTime is when the report was made.
	CurrentTime time.Time `json:"currentTime"`
	// NodeEligible is set in /healthz answers only: false when the node is being deleted
	// or is tainted ToBeDeletedByClusterAutoscaler.
	NodeEligible *bool `json:"nodeEligible,omitempty"`
	// Healthy is true when every family is healthy; it does not include NodeEligible.
	Healthy bool `json:"healthy"`
	// Status is the health of each family, keyed "IPv4" or "IPv6".
	Status map[string]FamilyHealth `json:"status,omitempty"`
	// MissingPermissions is set in /healthz answers only: the API permissions portico
	// needs and lacks ("list endpointslices.discovery.k8s.io"); any makes it 503.
	MissingPermissions []string `json:"missingPermissions,omitempty"`
}

// ProxyHealth tracks whether the proxier keeps the rules up to date, and whether the node
// should receive load-balanced traffic; it answers /healthz and /livez from that. It is
// safe for concurrent use.
//
// A family becomes unhealthy when an update queued by QueuedUpdate waits more than twice
// the sync period for the Updated call of a sync, or at once when RulesMissing reports its
// rules gone from the kernel; it is healthy again after the next Updated. Like kube-proxy,
// the proxier should call Updated for each family when its sync loop starts.
type ProxyHealth struct {
	clock    clock.PassiveClock
	timeout  time.Duration
	recorder ProbeRecorder

	mu           sync.RWMutex
	lastUpdated  map[model.Family]time.Time
	oldestQueued map[model.Family]time.Time
	missing      map[model.Family]bool
	nodeEligible bool
	// permissions are the API permissions portico lacks (SetMissingPermissions);
	// permsKnown is set by the first call, and with requirePerms (WithPermissionCheck)
	// /healthz fails until then.
	permissions              []string
	permsKnown, requirePerms bool
}

// Option configures a ProxyHealth.
type Option func(*ProxyHealth)

// WithClock makes the ProxyHealth read time from c instead of the system clock.
func WithClock(c clock.PassiveClock) Option {
	return func(h *ProxyHealth) { h.clock = c }
}

// WithRecorder makes the ProxyHealth count its /healthz and /livez answers in r.
func WithRecorder(r ProbeRecorder) Option {
	return func(h *ProxyHealth) { h.recorder = r }
}

// WithPermissionCheck makes /healthz fail until SetMissingPermissions has been called once:
// a first sync that completes before portico has learnt whether it may list what it
// watches must not make the pod Ready for a moment.
func WithPermissionCheck() Option {
	return func(h *ProxyHealth) { h.requirePerms = true }
}

// NewProxyHealth returns a ProxyHealth whose families turn unhealthy when an update waits
// more than 2×syncPeriod (kube-proxy's health timeout). The node counts as not eligible
// until SyncNode reports it.
func NewProxyHealth(syncPeriod time.Duration, opts ...Option) *ProxyHealth {
	h := &ProxyHealth{
		clock:        clock.RealClock{},
		timeout:      2 * syncPeriod,
		lastUpdated:  map[model.Family]time.Time{},
		oldestQueued: map[model.Family]time.Time{},
		missing:      map[model.Family]bool{},
	}
	for _, o := range opts {
		o(h)
	}
	return h
}

// QueuedUpdate records that family f has a change waiting for a sync. Only the oldest
// waiting change counts.
func (h *ProxyHealth) QueuedUpdate(f model.Family) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, pending := h.oldestQueued[f]; !pending {
		h.oldestQueued[f] = h.clock.Now()
	}
}

// Updated records that the rules of family f were synced successfully: no change waits any
// more.
func (h *ProxyHealth) Updated(f model.Family) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.oldestQueued, f)
	delete(h.missing, f)
	h.lastUpdated[f] = h.clock.Now()
}

// RulesMissing records that the rules of family f were found missing from the kernel
// (deleted or flushed by someone else): f is unhealthy from now until the next Updated,
// which the sync that repairs them calls.
func (h *ProxyHealth) RulesMissing(f model.Family) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.missing[f] = true
}

// SyncNode records the state of this node's Node object; nil means the node is unknown
// (not yet seen or deleted). The node is eligible for traffic when it exists, is not being
// deleted and has no ToBeDeletedTaint.
func (h *ProxyHealth) SyncNode(node *corev1.Node) {
	eligible := nodeEligible(node)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nodeEligible = eligible
}

// nodeEligible reports whether node may receive load-balanced traffic.
func nodeEligible(node *corev1.Node) bool {
	if node == nil || !node.DeletionTimestamp.IsZero() {
		return false
	}
	return !slices.ContainsFunc(node.Spec.Taints, func(t corev1.Taint) bool {
		return t.Key == ToBeDeletedTaint
	})
}

// NodeEligible reports whether the node, as last given to SyncNode, may receive
// load-balanced traffic.
func (h *ProxyHealth) NodeEligible() bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.nodeEligible
}

// SetMissingPermissions records the API permissions portico needs and lacks (none: nil).
// While any is missing, /healthz answers 503 and names them, so that the pod is not Ready;
// /livez ignores them (a restart would not grant them).
func (h *ProxyHealth) SetMissingPermissions(perms []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.permissions, h.permsKnown = perms, true
}

// IsHealthy reports whether every family keeps its rules up to date. It ignores node
// eligibility, as the serviceProxyHealthy field of the Service health checks does.
func (h *ProxyHealth) IsHealthy() bool { return h.Health().Healthy }

// Health returns the current report, without NodeEligible.
func (h *ProxyHealth) Health() Report {
	h.mu.RLock()
	defer h.mu.RUnlock()
	now := h.clock.Now()
	r := Report{CurrentTime: now, Healthy: true, Status: map[string]FamilyHealth{}}
	for _, f := range h.families() {
		last := h.lastUpdated[f]
		if last.After(r.LastUpdated) {
			r.LastUpdated = last
		}
		ok := h.familyHealthy(f, now)
		r.Status[f.String()] = FamilyHealth{LastUpdated: last, Healthy: ok}
		r.Healthy = r.Healthy && ok
	}
	return r
}

// families returns every family that was updated, has a queued update or is missing its
// rules. Callers hold mu.
func (h *ProxyHealth) families() []model.Family {
	seen := map[model.Family]bool{}
	var out []model.Family
	add := func(f model.Family) {
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	for f := range h.lastUpdated {
		add(f)
	}
	for f := range h.oldestQueued {
		add(f)
	}
	for f := range h.missing {
		add(f)
	}
	return out
}

// familyHealthy reports whether f has its rules and no update waiting longer than the
// timeout. Callers hold mu.
func (h *ProxyHealth) familyHealthy(f model.Family, now time.Time) bool {
	queued, pending := h.oldestQueued[f]
	return !h.missing[f] && (!pending || now.Sub(queued) < h.timeout)
}

// Handler returns the handler of the health server: /healthz and /livez, 404 otherwise.
//
// Both answer 200 when every family is healthy and 503 otherwise, with a JSON Report.
// /healthz also answers 503 when the node is not eligible and reports nodeEligible; /livez
// ignores the node, so that a draining node's proxier is not restarted.
func (h *ProxyHealth) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", h.serveHealthz)
	mux.HandleFunc("/livez", h.serveLivez)
	return mux
}

func (h *ProxyHealth) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	r := h.Health()
	eligible := h.NodeEligible()
	r.NodeEligible = &eligible
	h.mu.RLock()
	r.MissingPermissions = h.permissions
	checked := h.permsKnown || !h.requirePerms
	h.mu.RUnlock()
	code := writeReport(w, r, r.Healthy && eligible && checked && len(r.MissingPermissions) == 0)
	if h.recorder != nil {
		h.recorder.IncHealthz(code)
	}
}

func (h *ProxyHealth) serveLivez(w http.ResponseWriter, _ *http.Request) {
	r := h.Health()
	code := writeReport(w, r, r.Healthy)
	if h.recorder != nil {
		h.recorder.IncLivez(code)
	}
}

// writeReport answers r with status 200 when ok and 503 otherwise, and returns the status.
// A healthy answer reports the current time as lastUpdated, as kube-proxy does.
func writeReport(w http.ResponseWriter, r Report, ok bool) int {
	code := http.StatusServiceUnavailable
	if ok {
		code = http.StatusOK
		r.LastUpdated = r.CurrentTime
	}
	body, _ := json.Marshal(r) // A Report always marshals.
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(body)
	return code
}
