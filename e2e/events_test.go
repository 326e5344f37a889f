//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/e2e/harness/cluster"
	"github.com/portico-dev/portico/e2e/harness/env"
	"github.com/portico-dev/portico/e2e/harness/netns"
)

// TestInvalidEndpointSliceEvent writes, next to a Service's valid EndpointSlice, one whose
// port number is out of range (the API server accepts any int32 there, while it rejects
// bad endpoint addresses). portico skips that port of that slice and tells the Service's
// owner: one Warning Event on the Service (with its UID, so that `kubectl describe
// service` shows it) naming the slice, the field and the value — one, however many syncs
// compile the Service again; a sync of another Service does not report it at all; a
// restarted portico finds its Event and writes no second one, yet still reports the next
// problem of that Service.
func TestInvalidEndpointSliceEvent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := namespaceFor(t.Name())
	svcs := map[string]*corev1.Service{}
	t.Cleanup(func() { removeAll(t, ns, svcs) })
	since := time.Now()
	svc := applyOne(ctx, t, ns, ServiceSetup{Svc: service("badslice"), Backends: ready(a1)})
	svcs[svc.Name] = svc
	bad := writeBadSlice(ctx, t, svc)
	waitProgrammed(ctx, t, since)
	runFlow(ctx, t, svcs, Flow{Name: "the valid slice is served", From: client, To: svc.Name, Expect: pods(a1), Peer: peerNode, Probes: 4})

	want := fmt.Sprintf("endpointslice %s/%s: ports[0].port: 70000 is out of range 1-65535", ns, bad.Name)
	ev := waitServiceEvents(ctx, t, svc, want)
	checkEvent(t, ev, svc)

	t.Run("each sync of the Service", func(t *testing.T) { checkDeduplicated(ctx, t, svc) })
	t.Run("a sync of another Service", func(t *testing.T) { checkNotReported(ctx, t, ns, svcs) })
	t.Run("a restart", func(t *testing.T) { checkRestart(ctx, t, svc) })
	t.Run("a new problem", func(t *testing.T) {
		setSlicePort(ctx, t, bad, 70001)
		next := fmt.Sprintf("endpointslice %s/%s: ports[0].port: 70001 is out of range 1-65535", ns, bad.Name)
		waitServiceEvents(ctx, t, svc, want, next)
		describeShows(ctx, t, ns, svc.Name, "InvalidField", want, next)
	})
}

// checkDeduplicated makes three changes to svc's endpoints: each sync reports the bad
// slice's problem again (log and metric), but no Event is written for it.
func checkDeduplicated(ctx context.Context, t *testing.T, svc *corev1.Service) {
	before, beforeEvents := invalidSlices(ctx, t), eventOutcomes(ctx, t)
	for _, backends := range [][]env.Backend{ready(a1, a2), ready(a2), ready(a1)} {
		since := time.Now()
		if err := suite.SetEndpoints(ctx, svc, backends); err != nil {
			t.Fatal(err)
		}
		waitProgrammed(ctx, t, since)
	}
	if n := invalidSlices(ctx, t) - before; n < 3 {
		t.Fatalf("the slice's problem was reported %v more times over three syncs of the Service, want at least 3", n)
	}
	after := eventOutcomes(ctx, t)
	for _, outcome := range []string{"written", "exists", "failed"} {
		if n := after[outcome] - beforeEvents[outcome]; n != 0 {
			t.Errorf("portico_events_total{outcome=%q} grew by %v over three syncs, want 0 (they are duplicates)", outcome, n)
		}
	}
	if n := after["duplicate"] - beforeEvents["duplicate"]; n < 3 {
		t.Errorf("portico_events_total{outcome=\"duplicate\"} grew by %v over three syncs, want at least 3", n)
	}
	if evs := serviceEvents(ctx, t, svc); len(evs) != 1 {
		t.Errorf("%d Events about the Service after three more syncs, want 1:\n%s", len(evs), notesOf(evs))
	}
}

// checkNotReported adds another Service: the sync that programs it does not compile, log
// or report the bad Service again.
func checkNotReported(ctx context.Context, t *testing.T, ns string, svcs map[string]*corev1.Service) {
	before, beforeEvents := invalidSlices(ctx, t), eventOutcomes(ctx, t)
	since := time.Now()
	other := applyOne(ctx, t, ns, ServiceSetup{Svc: service("bystander"), Backends: ready(a2)})
	svcs[other.Name] = other
	waitProgrammed(ctx, t, since)
	if n := invalidSlices(ctx, t) - before; n != 0 {
		t.Errorf("a sync of another Service reported the bad slice's problem %v times, want 0", n)
	}
	after := eventOutcomes(ctx, t)
	for outcome, n := range after {
		if d := n - beforeEvents[outcome]; d != 0 {
			t.Errorf("portico_events_total{outcome=%q} grew by %v in a sync of another Service, want 0", outcome, d)
		}
	}
}

// checkRestart restarts portico: it compiles svc again, finds its own Event and writes no
// second one.
func checkRestart(ctx context.Context, t *testing.T, svc *corev1.Service) {
	if err := suite.Portico.Stop(); err != nil {
		t.Fatalf("stopping portico: %v", err)
	}
	if err := suite.Portico.Start(ctx); err != nil {
		t.Fatalf("starting portico again: %v", err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for eventOutcomes(ctx, t)["exists"] < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the restarted portico did not find its Event in 15 s: outcomes %v", eventOutcomes(ctx, t))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out := eventOutcomes(ctx, t); out["written"] != 0 || out["exists"] != 1 || out["failed"] != 0 {
		t.Errorf("after the restart, outcomes %v; want exists 1, written 0, failed 0", out)
	}
	if evs := serviceEvents(ctx, t, svc); len(evs) != 1 {
		t.Errorf("%d Events about the Service after a restart, want 1:\n%s", len(evs), notesOf(evs))
	}
}

// setSlicePort sets the port number of slice s's first port.
func setSlicePort(ctx context.Context, t *testing.T, s *discoveryv1.EndpointSlice, port int32) {
	t.Helper()
	api := suite.Cluster.Client().DiscoveryV1().EndpointSlices(s.Namespace)
	cur, err := api.Get(ctx, s.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading EndpointSlice %s: %v", s.Name, err)
	}
	cur.Ports[0].Port = &port
	if _, err := api.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("setting ports[0].port of EndpointSlice %s to %d: %v", s.Name, port, err)
	}
}

// writeBadSlice writes a second IPv4 EndpointSlice of svc, whose port is 70000.
func writeBadSlice(ctx context.Context, t *testing.T, svc *corev1.Service) *discoveryv1.EndpointSlice {
	t.Helper()
	s := backendtest.EndpointSlice(suite.Topo.Spec(), svc, netns.IPv4, ready(a2))
	s.Name = svc.Name + "-invalid"
	big := int32(70000)
	s.Ports[0].Port = &big
	api := suite.Cluster.Client().DiscoveryV1().EndpointSlices(svc.Namespace)
	got, err := api.Create(ctx, s, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("writing the EndpointSlice with port 70000: %v", err)
	}
	t.Cleanup(func() {
		if err := api.Delete(context.Background(), s.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("deleting %s: %v", s.Name, err)
		}
	})
	return got
}

// serviceEvents returns the events.k8s.io/v1 Events about svc (by its UID) that portico
// wrote.
func serviceEvents(ctx context.Context, t *testing.T, svc *corev1.Service) []eventsv1.Event {
	t.Helper()
	list, err := suite.Cluster.Client().EventsV1().Events(svc.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing Events: %v", err)
	}
	var out []eventsv1.Event
	for _, ev := range list.Items {
		if ev.Regarding.UID == svc.UID && ev.ReportingController == "portico.dev/portico" {
			out = append(out, ev)
		}
	}
	return out
}

// waitServiceEvents waits until portico's Events about svc say notes, one each, and
// returns the one saying the last of them.
func waitServiceEvents(ctx context.Context, t *testing.T, svc *corev1.Service, notes ...string) eventsv1.Event {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		evs := serviceEvents(ctx, t, svc)
		if last, ok := saying(evs, notes); ok {
			return last
		}
		if len(evs) > len(notes) || time.Now().After(deadline) {
			t.Fatalf("Events about Service %s:\n%s\nwant one saying each of %q; portico's log:\n%s",
				svc.Name, notesOf(evs), notes, suite.Portico.LogTail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// saying reports whether evs are one Event for each of notes, and returns the one saying
// the last note.
func saying(evs []eventsv1.Event, notes []string) (eventsv1.Event, bool) {
	if len(evs) != len(notes) {
		return eventsv1.Event{}, false
	}
	var last eventsv1.Event
	for i, note := range notes {
		n := 0
		for _, ev := range evs {
			if ev.Note == note {
				n++
				if i == len(notes)-1 {
					last = ev
				}
			}
		}
		if n != 1 {
			return eventsv1.Event{}, false
		}
	}
	return last, true
}

// checkEvent checks what the Event says besides its note.
func checkEvent(t *testing.T, ev eventsv1.Event, svc *corev1.Service) {
	t.Helper()
	want := corev1.ObjectReference{APIVersion: "v1", Kind: "Service", Namespace: svc.Namespace, Name: svc.Name, UID: svc.UID}
	if ev.Regarding != want {
		t.Errorf("the Event is about %+v, want %+v", ev.Regarding, want)
	}
	if ev.Type != corev1.EventTypeWarning || ev.Reason != "InvalidField" || ev.Action != "Sync" || ev.ReportingInstance != netns.NodeA {
		t.Errorf("Event type %q, reason %q, action %q, reported by %q; want Warning, InvalidField, Sync, %s",
			ev.Type, ev.Reason, ev.Action, ev.ReportingInstance, netns.NodeA)
	}
}

// invalidSlices reads portico's count of EndpointSlice problems.
func invalidSlices(ctx context.Context, t *testing.T) float64 {
	t.Helper()
	m, err := suite.Portico.Scrape(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return m["portico_invalid_objects_total{kind=endpointslice}"]
}

// eventOutcomes reads portico_events_total by outcome.
func eventOutcomes(ctx context.Context, t *testing.T) map[string]float64 {
	t.Helper()
	m, err := suite.Portico.Scrape(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, outcome := range []string{"written", "exists", "duplicate", "failed"} {
		out[outcome] = m["portico_events_total{outcome="+outcome+"}"]
	}
	return out
}

// notesOf lists evs, one a line, for a failure message.
func notesOf(evs []eventsv1.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "  %s %s %s: %s\n", ev.Name, ev.Type, ev.Reason, ev.Note)
	}
	return b.String()
}

// describeShows runs `kubectl describe service` from node-a and checks that its output
// has each of want.
func describeShows(ctx context.Context, t *testing.T, ns, name string, want ...string) {
	t.Helper()
	root, err := cluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	kubectl := filepath.Join(root, ".cache", "bin", "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		t.Fatalf("kubectl (make cluster-bins builds it): %v", err)
	}
	out, err := suite.Topo.Exec(ctx, netns.NodeA, kubectl, "--kubeconfig", suite.Cluster.Kubeconfig(),
		"describe", "service", "-n", ns, name).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl describe service: %v\n%s", err, out)
	}
	for _, w := range want {
		if !strings.Contains(string(out), w) {
			t.Errorf("kubectl describe service does not show %q:\n%s", w, out)
		}
	}
}
