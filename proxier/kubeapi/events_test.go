package kubeapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"

	"github.com/portico-dev/portico/proxier"
)

// fakeEventAPI serves the create and get of events.k8s.io/v1 Events like the API
// server: names are unique per namespace, deny answers 403 as RBAC would, and denyGet
// does so for gets only.
type fakeEventAPI struct {
	mu            sync.Mutex
	events        map[string]*eventsv1.Event // namespace/name
	contentType   string                     // of the last request
	deny, denyGet bool
}

// ServeHTTP answers a create or a get of an Event.
func (f *fakeEventAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/apis/events.k8s.io/v1/namespaces/"), "/")
	if r.Method == http.MethodGet && len(parts) == 3 && parts[1] == "events" {
		f.get(w, parts[0]+"/"+parts[2])
		return
	}
	if r.Method != http.MethodPost || len(parts) != 2 || parts[1] != "events" {
		http.NotFound(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	obj, _, err := serializer.NewCodecFactory(eventScheme).UniversalDeserializer().Decode(body, nil, nil)
	ev, ok := obj.(*eventsv1.Event)
	if err != nil || !ok || ev.Namespace != parts[0] {
		writeStatus(w, apierrors.NewBadRequest(fmt.Sprintf("decoding %T: %v", obj, err)))
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.contentType = r.Header.Get("Content-Type")
	gr := schema.GroupResource{Group: "events.k8s.io", Resource: "events"}
	key := ev.Namespace + "/" + ev.Name
	switch {
	case f.deny:
		writeStatus(w, apierrors.NewForbidden(gr, ev.Name, errors.New(`User "portico" cannot create resource "events"`)))
	case f.events[key] != nil:
		writeStatus(w, apierrors.NewAlreadyExists(gr, ev.Name))
	default:
		f.events[key] = ev
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(ev)
	}
}

func (f *fakeEventAPI) setDenyGet(deny bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.denyGet = deny
}

// get answers the GET of the Event named key (namespace/name).
func (f *fakeEventAPI) get(w http.ResponseWriter, key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	gr := schema.GroupResource{Group: "events.k8s.io", Resource: "events"}
	ev := f.events[key]
	switch {
	case f.deny || f.denyGet:
		writeStatus(w, apierrors.NewForbidden(gr, key, errors.New(`User "portico" cannot get resource "events"`)))
	case ev == nil:
		writeStatus(w, apierrors.NewNotFound(gr, key))
	default:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(ev)
	}
}

func writeStatus(w http.ResponseWriter, err *apierrors.StatusError) {
	st := err.ErrStatus
	st.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Status"}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(st.Code))
	_ = json.NewEncoder(w).Encode(st)
}

// stored returns the Events the fake API holds.
func (f *fakeEventAPI) stored() []*eventsv1.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*eventsv1.Event
	for _, ev := range f.events {
		out = append(out, ev)
	}
	return out
}

func startEventAPI(t *testing.T) (*fakeEventAPI, string) {
	t.Helper()
	api := &fakeEventAPI{events: map[string]*eventsv1.Event{}}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return api, srv.URL
}

func newSink(t *testing.T, host, node, contentType string) *EventSink {
	t.Helper()
	s, err := NewEventSink(&rest.Config{Host: host, ContentConfig: rest.ContentConfig{ContentType: contentType}}, node)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var webRef = proxier.ObjectRef{Kind: "Service", Namespace: "shop", Name: "web", UID: "0f6b7a4e-2d1c-4e8f-9a3b-5c7d9e1f2a4b"}

// TestEventSinkWrites: the Event is a Warning about the object (with its UID) from
// portico on this node, saying the reason and the note; JSON and protobuf clients alike.
func TestEventSinkWrites(t *testing.T) {
	for _, ct := range []string{"application/json", "application/vnd.kubernetes.protobuf"} {
		t.Run(ct, func(t *testing.T) {
			api, host := startEventAPI(t)
			at := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
			note := `service shop/web: spec.ports[0].port: "0" is out of range 1-65535`
			ev := proxier.Event{Regarding: webRef, Reason: proxier.EventReasonInvalidField, Note: note, Time: at}
			if err := newSink(t, host, "node-a", ct).Write(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
			got := api.stored()
			if len(got) != 1 {
				t.Fatalf("%d Events stored, want 1", len(got))
			}
			e := got[0]
			want := corev1.ObjectReference{APIVersion: "v1", Kind: "Service", Namespace: "shop", Name: "web", UID: webRef.UID}
			if e.Regarding != want {
				t.Errorf("regarding %+v, want %+v", e.Regarding, want)
			}
			if e.Namespace != "shop" || !strings.HasPrefix(e.Name, "web.") || len(e.Name) != len("web.")+16 {
				t.Errorf("event %s/%s, want shop/web.<16 hex digits>", e.Namespace, e.Name)
			}
			if e.Type != corev1.EventTypeWarning || e.Reason != "InvalidField" || e.Note != note || e.Action != "Sync" ||
				e.ReportingController != "portico.dev/portico" || e.ReportingInstance != "node-a" || !e.EventTime.Time.Equal(at) {
				t.Errorf("event %+v", e)
			}
			if !strings.HasPrefix(api.contentType, ct) {
				t.Errorf("sent as %q, want %q", api.contentType, ct)
			}
		})
	}
}

// TestEventSinkSameEventOnEveryNode: the same warning about the same object is the same
// Event whichever node writes it, so the second write finds it; anything else differs.
func TestEventSinkSameEventOnEveryNode(t *testing.T) {
	api, host := startEventAPI(t)
	a, b := newSink(t, host, "node-a", ""), newSink(t, host, "node-b", "")
	ev := proxier.Event{Regarding: webRef, Reason: proxier.EventReasonInvalidField, Note: "bad", Time: time.Now()}
	ctx := context.Background()
	if err := a.Write(ctx, ev); err != nil {
		t.Fatal(err)
	}
	ev.Time = ev.Time.Add(time.Minute)
	if err := b.Write(ctx, ev); !errors.Is(err, proxier.ErrEventExists) || errors.Is(err, proxier.ErrOwnEventExists) {
		t.Errorf("node-b writing the same warning: %v, want ErrEventExists", err)
	}
	restarted := newSink(t, host, "node-a", "")
	if err := restarted.Write(ctx, ev); !errors.Is(err, proxier.ErrOwnEventExists) || errors.Is(err, proxier.ErrEventExists) {
		t.Errorf("node-a writing the same warning again after a restart: %v, want ErrOwnEventExists", err)
	}
	api.setDenyGet(true)
	if err := restarted.Write(ctx, ev); !errors.Is(err, proxier.ErrEventExists) || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("node-a writing the same warning again, may not read Events: %v, want ErrEventExists saying why", err)
	}
	api.setDenyGet(false)
	other := []proxier.Event{
		{Regarding: webRef, Reason: proxier.EventReasonInvalidField, Note: "worse"},
		{Regarding: webRef, Reason: proxier.EventReasonSkipped, Note: "bad"},
	}
	recreated := webRef
	recreated.UID = "1f6b7a4e-2d1c-4e8f-9a3b-5c7d9e1f2a4b"
	other = append(other, proxier.Event{Regarding: recreated, Reason: proxier.EventReasonInvalidField, Note: "bad"})
	for _, o := range other {
		o.Time = time.Now()
		if err := b.Write(ctx, o); err != nil {
			t.Errorf("writing %+v: %v", o, err)
		}
	}
	if n := len(api.stored()); n != 4 {
		t.Errorf("%d Events stored, want 4", n)
	}
}

// TestEventSinkDenied: RBAC's answer comes back as a Forbidden error, not as an existing
// Event.
func TestEventSinkDenied(t *testing.T) {
	api, host := startEventAPI(t)
	api.deny = true
	err := newSink(t, host, "node-a", "").Write(context.Background(), proxier.Event{Regarding: webRef, Reason: "InvalidField", Note: "bad", Time: time.Now()})
	if !apierrors.IsForbidden(err) || errors.Is(err, proxier.ErrEventExists) {
		t.Errorf("denied write: %v, want a Forbidden error", err)
	}
}

// TestEventSinkLimits: the note, the reporting instance and the name are cut to what the
// API accepts, at a character boundary; an Event about a cluster-scoped object lives in
// the default namespace.
func TestEventSinkLimits(t *testing.T) {
	api, host := startEventAPI(t)
	node := strings.Repeat("n", 200)
	ref := proxier.ObjectRef{Kind: "Node", Name: strings.Repeat("x", 253)}
	note := strings.Repeat("é", 600) // 1,200 bytes
	if err := newSink(t, host, node, "").Write(context.Background(), proxier.Event{Regarding: ref, Reason: "Skipped", Note: note, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	e := api.stored()[0]
	if len(e.Note) != 1024 || !utf8.ValidString(e.Note) {
		t.Errorf("note of %d bytes (valid UTF-8: %t), want 1024", len(e.Note), utf8.ValidString(e.Note))
	}
	if len(e.ReportingInstance) != 128 {
		t.Errorf("reportingInstance of %d bytes, want 128", len(e.ReportingInstance))
	}
	if len(e.Name) != 253 || e.Namespace != "default" || e.Regarding.APIVersion != "v1" {
		t.Errorf("event %s/%s (%d bytes) about %+v, want default/<253 bytes> about a v1 Node", e.Namespace, e.Name, len(e.Name), e.Regarding)
	}
}
