package proxier

import (
	"slices"
	"strings"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/portico-dev/portico/model"
)

// TestSliceHandlerKeepsIndex drives the EndpointSlice handler as an informer would and
// checks the index and the Services it marks dirty.
func TestSliceHandlerKeepsIndex(t *testing.T) {
	w := &watchers{slices: newSliceIndex()}
	tr := newTracker(func() {})
	h := w.sliceHandler(tr)
	rec := func(name, svc, addr string) *sliceRecord {
		return compactSlice(&discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{addr}}},
		})
	}
	svcA, svcB := model.ServiceName{Namespace: "ns", Name: "a"}, model.ServiceName{Namespace: "ns", Name: "b"}
	addrs := func(svc model.ServiceName) []string {
		var out []string
		for _, s := range w.slicesFor(svc) {
			out = append(out, s.Name+"="+s.Endpoints[0].Addresses[0])
		}
		slices.Sort(out)
		return out
	}
	dirty := func() []model.ServiceName {
		d := tr.Take().dirty
		slices.SortFunc(d, func(x, y model.ServiceName) int { return strings.Compare(x.String(), y.String()) })
		return d
	}
	check := func(step string, wantA, wantB []string, wantDirty ...model.ServiceName) {
		t.Helper()
		if got := addrs(svcA); !slices.Equal(got, wantA) {
			t.Errorf("%s: slices of a = %v, want %v", step, got, wantA)
		}
		if got := addrs(svcB); !slices.Equal(got, wantB) {
			t.Errorf("%s: slices of b = %v, want %v", step, got, wantB)
		}
		if got := dirty(); !slices.Equal(got, wantDirty) {
			t.Errorf("%s: dirty %v, want %v", step, got, wantDirty)
		}
	}

	a1, a2 := rec("a-1", "a", "10.0.0.1"), rec("a-2", "a", "10.0.0.2")
	h.OnAdd(a1, true)
	h.OnAdd(a2, true)
	check("add", []string{"a-1=10.0.0.1", "a-2=10.0.0.2"}, nil, svcA)

	held := w.slices.get(svcA) // a sync may hold the array while the handler runs
	a1b := rec("a-1", "a", "10.0.0.11")
	h.OnUpdate(a1, a1b)
	check("update", []string{"a-1=10.0.0.11", "a-2=10.0.0.2"}, nil, svcA)
	if held[0] != a1 {
		t.Error("an update changed an array a reader holds")
	}

	moved := rec("a-2", "b", "10.0.0.2")
	h.OnUpdate(a2, moved)
	check("move to b", []string{"a-1=10.0.0.11"}, []string{"a-2=10.0.0.2"}, svcA, svcB)

	h.OnDelete(cache.DeletedFinalStateUnknown{Key: "ns/a-2", Obj: moved})
	h.OnDelete(a1b)
	check("delete", nil, nil, svcA, svcB)
	if len(w.slices.m) != 0 {
		t.Errorf("index keeps %d Services after every slice was deleted", len(w.slices.m))
	}

	h.OnAdd(compactSlice(&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "orphan"}}), false)
	check("unlabelled", nil, nil)
}
