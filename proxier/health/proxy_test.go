package health

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/portico-dev/portico/model"
)

const syncPeriod = 30 * time.Second

var start = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func readyNode() *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}}
}

func deletingNode() *corev1.Node {
	n := readyNode()
	n.DeletionTimestamp = &metav1.Time{Time: start}
	return n
}

func taintedNode() *corev1.Node {
	n := readyNode()
	n.Spec.Taints = []corev1.Taint{
		{Key: "other", Effect: corev1.TaintEffectNoSchedule},
		{Key: ToBeDeletedTaint, Effect: corev1.TaintEffectNoSchedule},
	}
	return n
}

// probe is what one GET of /healthz or /livez returned.
type probe struct {
	code int
	body map[string]any
	raw  string
}

func get(t *testing.T, h http.Handler, path string) probe {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	res := rec.Result()
	raw, _ := io.ReadAll(res.Body)
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q", path, ct)
	}
	if v := res.Header.Get("X-Content-Type-Options"); v != "nosniff" {
		t.Errorf("%s: X-Content-Type-Options %q", path, v)
	}
	p := probe{code: res.StatusCode, raw: string(raw)}
	if err := json.Unmarshal(raw, &p.body); err != nil {
		t.Fatalf("%s: body %q: %v", path, raw, err)
	}
	return p
}

// counts is a ProbeRecorder that remembers every code.
type counts struct{ healthz, livez []int }

func (c *counts) IncHealthz(code int) { c.healthz = append(c.healthz, code) }
func (c *counts) IncLivez(code int)   { c.livez = append(c.livez, code) }

type step struct {
	// advance moves the clock before the step's action.
	advance time.Duration
	// do acts on the ProxyHealth; nil does nothing.
	do func(h *ProxyHealth)
}

func updated(f model.Family) func(*ProxyHealth)         { return func(h *ProxyHealth) { h.Updated(f) } }
func queued(f model.Family) func(*ProxyHealth)          { return func(h *ProxyHealth) { h.QueuedUpdate(f) } }
func missing(f model.Family) func(*ProxyHealth)         { return func(h *ProxyHealth) { h.RulesMissing(f) } }
func node(n *corev1.Node) func(*ProxyHealth)            { return func(h *ProxyHealth) { h.SyncNode(n) } }
func wait(d time.Duration) step                         { return step{advance: d} }
func act(do func(*ProxyHealth)) step                    { return step{do: do} }
func after(d time.Duration, do func(*ProxyHealth)) step { return step{advance: d, do: do} }

func TestProxyHealth(t *testing.T) {
	timeout := 2 * syncPeriod
	tests := []struct {
		name         string
		steps        []step
		healthz      int
		livez        int
		eligible     bool
		healthy      bool
		lastUpdated  time.Duration // offset from start of the reported lastUpdated when unhealthy
		neverUpdated bool          // no family was ever updated: lastUpdated is the zero time
		unhealthyFam []string
	}{{
		name:    "fresh start",
		steps:   []step{act(node(readyNode()))},
		healthz: 200, livez: 200, eligible: true, healthy: true,
	}, {
		name:    "loop started",
		steps:   []step{act(node(readyNode())), act(updated(model.IPv4)), wait(time.Hour)},
		healthz: 200, livez: 200, eligible: true, healthy: true,
	}, {
		name: "queued update not yet late",
		steps: []step{
			act(node(readyNode())), act(updated(model.IPv4)),
			after(time.Second, queued(model.IPv4)), wait(timeout - time.Nanosecond),
		},
		healthz: 200, livez: 200, eligible: true, healthy: true,
	}, {
		name: "queued update older than twice the sync period",
		steps: []step{
			act(node(readyNode())), act(updated(model.IPv4)),
			after(time.Second, queued(model.IPv4)), wait(timeout),
		},
		healthz: 503, livez: 503, eligible: true, healthy: false,
		unhealthyFam: []string{"IPv4"},
	}, {
		name: "only the oldest queued update counts",
		steps: []step{
			act(node(readyNode())), act(updated(model.IPv4)),
			after(time.Second, queued(model.IPv4)), after(timeout/2, queued(model.IPv4)), wait(timeout / 2),
		},
		healthz: 503, livez: 503, eligible: true, healthy: false,
		unhealthyFam: []string{"IPv4"},
	}, {
		name: "update clears a late queued update",
		steps: []step{
			act(node(readyNode())), act(updated(model.IPv4)),
			after(time.Second, queued(model.IPv4)), wait(3 * timeout), act(updated(model.IPv4)),
		},
		healthz: 200, livez: 200, eligible: true, healthy: true,
	}, {
		name: "queued without any update is late too",
		steps: []step{
			act(node(readyNode())), act(queued(model.IPv6)), wait(timeout),
		},
		healthz: 503, livez: 503, eligible: true, healthy: false,
		neverUpdated: true,
		unhealthyFam: []string{"IPv6"},
	}, {
		name: "one late family of two",
		steps: []step{
			act(node(readyNode())), act(updated(model.IPv4)), act(updated(model.IPv6)),
			after(time.Second, queued(model.IPv6)), act(queued(model.IPv4)), wait(timeout - time.Second),
			act(updated(model.IPv4)), wait(time.Second),
		},
		healthz: 503, livez: 503, eligible: true, healthy: false,
		lastUpdated:  timeout,
		unhealthyFam: []string{"IPv6"},
	}, {
		name: "rules missing: unhealthy at once",
		steps: []step{
			act(node(readyNode())), act(updated(model.IPv4)), act(updated(model.IPv6)),
			after(time.Second, missing(model.IPv6)),
		},
		healthz: 503, livez: 503, eligible: true, healthy: false,
		unhealthyFam: []string{"IPv6"},
	}, {
		name: "rules missing: healthy again after the repair sync",
		steps: []step{
			act(node(readyNode())), act(updated(model.IPv4)),
			after(time.Second, missing(model.IPv4)), after(time.Second, updated(model.IPv4)),
		},
		healthz: 200, livez: 200, eligible: true, healthy: true,
	}, {
		name: "rules missing: another family's sync does not repair them",
		steps: []step{
			act(node(readyNode())), act(updated(model.IPv4)), act(updated(model.IPv6)),
			act(missing(model.IPv4)), after(time.Second, updated(model.IPv6)),
		},
		healthz: 503, livez: 503, eligible: true, healthy: false,
		lastUpdated:  time.Second,
		unhealthyFam: []string{"IPv4"},
	}, {
		name:    "rules missing before any update",
		steps:   []step{act(node(readyNode())), act(missing(model.IPv4))},
		healthz: 503, livez: 503, eligible: true, healthy: false,
		neverUpdated: true,
		unhealthyFam: []string{"IPv4"},
	}, {
		name:    "node being deleted",
		steps:   []step{act(updated(model.IPv4)), act(node(deletingNode()))},
		healthz: 503, livez: 200, eligible: false, healthy: true,
	}, {
		name:    "node tainted by the cluster autoscaler",
		steps:   []step{act(updated(model.IPv4)), act(node(taintedNode()))},
		healthz: 503, livez: 200, eligible: false, healthy: true,
	}, {
		name:    "node not known",
		steps:   []step{act(updated(model.IPv4))},
		healthz: 503, livez: 200, eligible: false, healthy: true,
	}, {
		name:    "node back to ready",
		steps:   []step{act(node(taintedNode())), act(node(readyNode()))},
		healthz: 200, livez: 200, eligible: true, healthy: true,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := clocktesting.NewFakePassiveClock(start)
			rec := &counts{}
			h := NewProxyHealth(syncPeriod, WithClock(clk), WithRecorder(rec))
			for _, s := range tc.steps {
				clk.SetTime(clk.Now().Add(s.advance))
				if s.do != nil {
					s.do(h)
				}
			}
			now := clk.Now()
			handler := h.Handler()

			hz := get(t, handler, "/healthz")
			lz := get(t, handler, "/livez")
			if hz.code != tc.healthz || lz.code != tc.livez {
				t.Fatalf("/healthz %d /livez %d, want %d %d\n%s\n%s", hz.code, lz.code, tc.healthz, tc.livez, hz.raw, lz.raw)
			}
			if !slices.Equal(rec.healthz, []int{tc.healthz}) || !slices.Equal(rec.livez, []int{tc.livez}) {
				t.Errorf("recorded healthz %v livez %v", rec.healthz, rec.livez)
			}
			if h.IsHealthy() != tc.healthy || h.NodeEligible() != tc.eligible {
				t.Errorf("IsHealthy %v NodeEligible %v, want %v %v", h.IsHealthy(), h.NodeEligible(), tc.healthy, tc.eligible)
			}
			checkBody(t, "/healthz", hz, tc.healthy, &tc.eligible)
			checkBody(t, "/livez", lz, tc.healthy, nil)
			last := start.Add(tc.lastUpdated)
			if tc.neverUpdated {
				last = time.Time{}
			}
			checkTimes(t, "/healthz", hz, now, last)
			checkTimes(t, "/livez", lz, now, last)
			checkStatus(t, hz, tc.unhealthyFam)
		})
	}
}

// checkBody checks the fields of a report body.
func checkBody(t *testing.T, path string, p probe, healthy bool, eligible *bool) {
	t.Helper()
	if p.body["healthy"] != healthy {
		t.Errorf("%s: healthy %v, want %v", path, p.body["healthy"], healthy)
	}
	got, present := p.body["nodeEligible"]
	switch {
	case eligible == nil && present:
		t.Errorf("%s: unexpected nodeEligible %v", path, got)
	case eligible != nil && got != *eligible:
		t.Errorf("%s: nodeEligible %v, want %v", path, got, *eligible)
	}
}

// checkTimes checks currentTime, and lastUpdated: now when the answer is 200, the last
// update otherwise.
func checkTimes(t *testing.T, path string, p probe, now, last time.Time) {
	t.Helper()
	if p.body["currentTime"] != now.Format(time.RFC3339Nano) {
		t.Errorf("%s: currentTime %v, want %v", path, p.body["currentTime"], now)
	}
	want := now
	if p.code != http.StatusOK {
		want = last
	}
	if p.body["lastUpdated"] != want.Format(time.RFC3339Nano) {
		t.Errorf("%s: lastUpdated %v, want %v", path, p.body["lastUpdated"], want)
	}
}

// checkStatus checks that exactly the families of unhealthy are reported unhealthy.
func checkStatus(t *testing.T, p probe, unhealthy []string) {
	t.Helper()
	status, _ := p.body["status"].(map[string]any)
	for fam, v := range status {
		fh, _ := v.(map[string]any)
		if want := !slices.Contains(unhealthy, fam); fh["healthy"] != want {
			t.Errorf("status %s healthy %v, want %v", fam, fh["healthy"], want)
		}
		if _, ok := fh["lastUpdated"]; !ok {
			t.Errorf("status %s has no lastUpdated", fam)
		}
	}
	for _, fam := range unhealthy {
		if _, ok := status[fam]; !ok {
			t.Errorf("status has no %s: %s", fam, p.raw)
		}
	}
}

func TestProxyHealthBodyFields(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(start)
	h := NewProxyHealth(syncPeriod, WithClock(clk))
	h.SyncNode(readyNode())
	h.Updated(model.IPv4)
	hz := get(t, h.Handler(), "/healthz")
	want := `{"lastUpdated":"2025-01-02T03:04:05Z","currentTime":"2025-01-02T03:04:05Z",` +
		`"nodeEligible":true,"healthy":true,"status":{"IPv4":{"lastUpdated":"2025-01-02T03:04:05Z","healthy":true}}}`
	if hz.raw != want {
		t.Errorf("/healthz body\n got %s\nwant %s", hz.raw, want)
	}
	lz := get(t, h.Handler(), "/livez")
	want = `{"lastUpdated":"2025-01-02T03:04:05Z","currentTime":"2025-01-02T03:04:05Z",` +
		`"healthy":true,"status":{"IPv4":{"lastUpdated":"2025-01-02T03:04:05Z","healthy":true}}}`
	if lz.raw != want {
		t.Errorf("/livez body\n got %s\nwant %s", lz.raw, want)
	}
}

func TestProxyHealthNotFound(t *testing.T) {
	h := NewProxyHealth(syncPeriod)
	for _, path := range []string{"/", "/metrics", "/healthz/x"} {
		rec := httptest.NewRecorder()
		h.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", path, rec.Code)
		}
	}
}

// TestProxyHealthMissingPermissions: while API permissions are missing, /healthz answers
// 503 and names them (the pod is not Ready), /livez stays 200 (a restart would not grant
// them); once granted, /healthz is 200 again.
func TestProxyHealthMissingPermissions(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(start)
	h := NewProxyHealth(syncPeriod, WithClock(clk))
	h.SyncNode(readyNode())
	h.Updated(model.IPv4)
	h.SetMissingPermissions([]string{"list endpointslices.discovery.k8s.io"})
	hz := get(t, h.Handler(), "/healthz")
	if hz.code != http.StatusServiceUnavailable || !strings.Contains(hz.raw, `"missingPermissions":["list endpointslices.discovery.k8s.io"]`) {
		t.Errorf("/healthz with a missing permission: %d %s, want 503 naming it", hz.code, hz.raw)
	}
	if lz := get(t, h.Handler(), "/livez"); lz.code != http.StatusOK || strings.Contains(lz.raw, "missingPermissions") {
		t.Errorf("/livez with a missing permission: %d %s, want 200 without it", lz.code, lz.raw)
	}
	h.SetMissingPermissions(nil)
	if hz := get(t, h.Handler(), "/healthz"); hz.code != http.StatusOK {
		t.Errorf("/healthz once granted: %d %s, want 200", hz.code, hz.raw)
	}
}

// TestProxyHealthWaitsForThePermissionCheck: with WithPermissionCheck, /healthz fails until
// the first check has answered, even with every family synced.
func TestProxyHealthWaitsForThePermissionCheck(t *testing.T) {
	h := NewProxyHealth(syncPeriod, WithClock(clocktesting.NewFakePassiveClock(start)), WithPermissionCheck())
	h.SyncNode(readyNode())
	h.Updated(model.IPv4)
	if hz := get(t, h.Handler(), "/healthz"); hz.code != http.StatusServiceUnavailable {
		t.Errorf("/healthz before the first permission check: %d, want 503", hz.code)
	}
	h.SetMissingPermissions(nil)
	if hz := get(t, h.Handler(), "/healthz"); hz.code != http.StatusOK {
		t.Errorf("/healthz after a check finding nothing missing: %d %s, want 200", hz.code, hz.raw)
	}
}
