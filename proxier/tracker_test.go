package proxier

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/portico-dev/portico/model"
)

var (
	svcA = model.ServiceName{Namespace: "ns", Name: "a"}
	svcB = model.ServiceName{Namespace: "ns", Name: "b"}
	t0   = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

// countingTracker returns a tracker and a pointer to its number of notifications.
func countingTracker() (*tracker, *int) {
	n := new(int)
	return newTracker(func() { *n++ }), n
}

func sortedNames(c changes) []model.ServiceName {
	names := slices.Clone(c.dirty)
	slices.SortFunc(names, func(a, b model.ServiceName) int {
		return model.ServicePortName{Namespace: a.Namespace, Name: a.Name}.Compare(model.ServicePortName{Namespace: b.Namespace, Name: b.Name})
	})
	return names
}

func TestTrackerTake(t *testing.T) {
	tr, notified := countingTracker()
	before := time.Now()
	tr.ServiceChanged(svcA)
	tr.SliceChanged(svcA, model.IPv4, t0)
	tr.SliceChanged(svcB, model.IPv6, t0.Add(time.Second))
	tr.SliceChanged(svcB, model.IPv4, time.Time{}) // no trigger time
	tr.NodeChanged()
	after := time.Now()
	if *notified != 5 {
		t.Errorf("notified %d times, want 5 (once per change)", *notified)
	}
	if s, e := tr.Pending(); s != 1 || e != 3 {
		t.Errorf("Pending() = %d, %d; want 1, 3", s, e)
	}

	c := tr.Take()
	if got := sortedNames(c); !slices.Equal(got, []model.ServiceName{svcA, svcB}) {
		t.Errorf("dirty = %v, want [a b]", got)
	}
	if !c.node || c.services != 1 || c.eps != 3 {
		t.Errorf("Take: node=%t services=%d eps=%d; want true, 1, 3", c.node, c.services, c.eps)
	}
	if c.queued.Before(before) || c.queued.After(after) {
		t.Errorf("queued = %v, want the time of the first change", c.queued)
	}
	if got := c.triggers[svcA]; !slices.Equal(got, []trigger{{at: t0, family: model.IPv4}}) {
		t.Errorf("triggers of a = %v", got)
	}
	if got := c.triggers[svcB]; !slices.Equal(got, []trigger{{at: t0.Add(time.Second), family: model.IPv6}}) {
		t.Errorf("triggers of b = %v; want only the one with a time", got)
	}

	// Take resets everything.
	if s, e := tr.Pending(); s != 0 || e != 0 {
		t.Errorf("Pending() after Take = %d, %d; want 0, 0", s, e)
	}
	c = tr.Take()
	if len(c.dirty) != 0 || len(c.triggers) != 0 || c.node || !c.queued.IsZero() || c.services != 0 || c.eps != 0 {
		t.Errorf("second Take = %+v, want nothing", c)
	}
}

func TestTrackerBoundsTriggers(t *testing.T) {
	tr, _ := countingTracker()
	for i := range maxTriggerTimes + 10 {
		tr.SliceChanged(svcA, model.IPv4, t0.Add(time.Duration(i)*time.Second))
	}
	c := tr.Take()
	if len(c.triggers[svcA]) != maxTriggerTimes {
		t.Fatalf("kept %d trigger times, want %d", len(c.triggers[svcA]), maxTriggerTimes)
	}
	if c.triggers[svcA][0].at != t0 || c.eps != maxTriggerTimes+10 {
		t.Errorf("want the oldest times kept and every change counted; got first=%v eps=%d", c.triggers[svcA][0].at, c.eps)
	}
}

func TestTrackerRequeue(t *testing.T) {
	tr, notified := countingTracker()
	tr.ServiceChanged(svcA)
	tr.SliceChanged(svcA, model.IPv4, t0)
	tr.NodeChanged()
	failed := tr.Take()

	// Changes that arrive while the failed sync runs.
	time.Sleep(time.Millisecond)
	tr.SliceChanged(svcA, model.IPv6, t0.Add(2*time.Second))
	tr.SliceChanged(svcB, model.IPv4, t0.Add(time.Second))
	n := *notified
	tr.Requeue(failed)
	if *notified != n {
		t.Errorf("Requeue notified; the runner retries on its own")
	}
	if s, e := tr.Pending(); s != 1 || e != 3 {
		t.Errorf("Pending() after Requeue = %d, %d; want 1, 3", s, e)
	}

	c := tr.Take()
	if got := sortedNames(c); !slices.Equal(got, []model.ServiceName{svcA, svcB}) {
		t.Errorf("dirty = %v, want [a b]", got)
	}
	if !c.node {
		t.Error("the node change was lost")
	}
	if c.queued != failed.queued {
		t.Errorf("queued = %v, want the earlier %v of the failed changes", c.queued, failed.queued)
	}
	want := []trigger{{at: t0, family: model.IPv4}, {at: t0.Add(2 * time.Second), family: model.IPv6}}
	if got := c.triggers[svcA]; !slices.Equal(got, want) {
		t.Errorf("triggers of a = %v, want the requeued one first: %v", got, want)
	}
	if got := c.triggers[svcB]; len(got) != 1 {
		t.Errorf("triggers of b = %v, want 1", got)
	}

	// Requeueing nothing changes nothing.
	tr.Requeue(changes{})
	if c := tr.Take(); len(c.dirty) != 0 || c.node || !c.queued.IsZero() {
		t.Errorf("Take after requeueing nothing = %+v", c)
	}
}

// TestTrackerRequeueBoundsTriggers checks that failed syncs do not let the trigger times
// of a Service grow past maxTriggerTimes.
func TestTrackerRequeueBoundsTriggers(t *testing.T) {
	tr, _ := countingTracker()
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	i := 0
	for range 3 { // three failed syncs, each with a full set of new changes meanwhile
		for range maxTriggerTimes {
			tr.SliceChanged(svcA, model.IPv4, at(i))
			i++
		}
		failed := tr.Take()
		for range maxTriggerTimes {
			tr.SliceChanged(svcA, model.IPv4, at(i))
			i++
		}
		tr.Requeue(failed)
	}
	got := tr.Take().triggers[svcA]
	if len(got) > maxTriggerTimes {
		t.Fatalf("kept %d trigger times after failed syncs, want at most %d", len(got), maxTriggerTimes)
	}
	if len(got) == 0 || got[0].at != at(0) {
		t.Errorf("want the oldest trigger time kept, got %v", got)
	}
}

func TestEventRouting(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.1"}}
	annotated := svc.DeepCopy()
	annotated.Annotations = map[string]string{"x": "y"}
	changed := svc.DeepCopy()
	changed.Spec.ClusterIP = "10.96.0.2"

	t.Run("services", func(t *testing.T) {
		tr, notified := countingTracker()
		serviceEvent(tr, svc, annotated)
		if *notified != 0 {
			t.Error("an update that changes nothing portico reads was queued")
		}
		serviceEvent(tr, svc, changed)
		serviceEvent(tr, nil, cache.DeletedFinalStateUnknown{Key: "ns/a", Obj: svc})
		serviceEvent(tr, nil, "not a service")
		if *notified != 2 {
			t.Errorf("notified %d times, want 2", *notified)
		}
		if c := tr.Take(); !slices.Equal(c.dirty, []model.ServiceName{svcA}) || c.services != 2 {
			t.Errorf("dirty %v services %d; want [a], 2", c.dirty, c.services)
		}
	})

	t.Run("slices", func(t *testing.T) {
		tr, notified := countingTracker()
		unlabelled := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "x"}}
		sliceEvent(tr, unlabelled)
		if *notified != 0 {
			t.Error("a slice without the service-name label was queued")
		}
		v6 := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: "ns", Name: "a-v6",
				Labels:      map[string]string{discoveryv1.LabelServiceName: "a"},
				Annotations: map[string]string{TriggerTimeAnnotation: t0.Format(time.RFC3339Nano)},
			},
			AddressType: discoveryv1.AddressTypeIPv6,
		}
		sliceEvent(tr, cache.DeletedFinalStateUnknown{Key: "ns/a-v6", Obj: v6})
		bad := v6.DeepCopy()
		bad.Labels[discoveryv1.LabelServiceName] = "b"
		bad.Annotations[TriggerTimeAnnotation] = "yesterday"
		sliceEvent(tr, bad)
		c := tr.Take()
		if got := sortedNames(c); !slices.Equal(got, []model.ServiceName{svcA, svcB}) || c.eps != 2 {
			t.Errorf("dirty %v eps %d; want [a b], 2", got, c.eps)
		}
		if got := c.triggers[svcA]; !slices.Equal(got, []trigger{{at: t0, family: model.IPv6}}) {
			t.Errorf("triggers of a = %v, want the IPv6 slice's time", got)
		}
		if got := c.triggers[svcB]; len(got) != 0 {
			t.Errorf("an unparsable trigger time gave triggers %v", got)
		}
	})

	t.Run("node", func(t *testing.T) {
		tr, notified := countingTracker()
		var seen []*corev1.Node
		onNode := func(n *corev1.Node) { seen = append(seen, n) }
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{"a": "b"}}}
		relabelled := node.DeepCopy()
		relabelled.Labels["a"] = "c"
		nodeEvent(tr, onNode, node, node.DeepCopy())
		if *notified != 0 || len(seen) != 0 {
			t.Error("an unchanged Node was passed on")
		}
		nodeEvent(tr, onNode, node, relabelled)
		nodeEvent(tr, onNode, nil, nil) // deleted
		if *notified != 2 || len(seen) != 2 || seen[0] != relabelled || seen[1] != nil {
			t.Errorf("notified %d, passed %v; want 2 and [relabelled, nil]", *notified, seen)
		}
		if !tr.Take().node {
			t.Error("node change not recorded")
		}
	})
}
