package kubeapi

import (
	"context"
	"fmt"
	"hash/fnv"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/rest"

	"github.com/portico-dev/portico/proxier"
)

// ReportingController is the reportingController of portico's Events (kube-proxy's is
// "kube-proxy"; the API requires a qualified name for events.k8s.io/v1).
const ReportingController = "portico.dev/portico"

// eventAction is the action of portico's Events: what portico was doing.
const eventAction = "Sync"

// Limits of the events.k8s.io/v1 API.
const (
	maxNote     = 1024
	maxInstance = 128
	maxName     = 253
)

// eventScheme holds events.k8s.io/v1 alone, for the Event client.
var eventScheme = runtime.NewScheme()

func init() {
	utilruntime.Must(eventsv1.AddToScheme(eventScheme))
}

// EventSink writes portico's Events with a REST client for events.k8s.io/v1 that knows
// nothing else. It implements proxier.EventSink.
//
// An Event's name is derived from what it says (the object with its UID, the reason and
// the note): every node that finds the same problem writes the same Event, the first one
// creates it and the others get ErrEventExists. So a bad Service in a cluster of 5,000
// nodes shows one Event, not 5,000. Writing needs create on events.k8s.io events, and
// telling whose an existing Event is needs get.
type EventSink struct {
	client   *rest.RESTClient
	instance string
}

var _ proxier.EventSink = (*EventSink)(nil)

// NewEventSink returns an EventSink through cfg, reporting as node nodeName. It does not
// contact the server.
func NewEventSink(cfg *rest.Config, nodeName string) (*EventSink, error) {
	client, err := groupClient(cfg, eventsv1.SchemeGroupVersion, eventScheme)
	if err != nil {
		return nil, err
	}
	return &EventSink{client: client, instance: truncate(nodeName, maxInstance)}, nil
}

// Write creates the Event of ev. When it exists already, Write reads it: the error wraps
// proxier.ErrOwnEventExists when this node wrote it (before a restart), and
// proxier.ErrEventExists when another node did or the read fails.
func (s *EventSink) Write(ctx context.Context, ev proxier.Event) error {
	e := s.event(ev)
	err := s.client.Post().Namespace(e.Namespace).Resource("events").Body(e).Do(ctx).Error()
	switch {
	case apierrors.IsAlreadyExists(err):
		return s.existing(ctx, e)
	case err != nil:
		return fmt.Errorf("creating event %s/%s: %w", e.Namespace, e.Name, err)
	}
	return nil
}

// existing returns the error of a create that found Event e already there, saying who
// wrote it.
func (s *EventSink) existing(ctx context.Context, e *eventsv1.Event) error {
	var got eventsv1.Event
	err := s.client.Get().Namespace(e.Namespace).Resource("events").Name(e.Name).Do(ctx).Into(&got)
	switch {
	case err != nil:
		return fmt.Errorf("event %s/%s: %w (reading it to see who wrote it: %v)", e.Namespace, e.Name, proxier.ErrEventExists, err)
	case got.ReportingController == ReportingController && got.ReportingInstance == s.instance:
		return fmt.Errorf("event %s/%s: %w", e.Namespace, e.Name, proxier.ErrOwnEventExists)
	}
	return fmt.Errorf("event %s/%s, written by %s: %w", e.Namespace, e.Name, got.ReportingInstance, proxier.ErrEventExists)
}

// event builds the Warning Event of ev.
func (s *EventSink) event(ev proxier.Event) *eventsv1.Event {
	ref := ev.Regarding
	ns := ref.Namespace
	if ns == "" {
		ns = metav1.NamespaceDefault // where the API wants Events about cluster-scoped objects
	}
	return &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: eventName(ev), Namespace: ns},
		EventTime:           metav1.NewMicroTime(ev.Time),
		ReportingController: ReportingController,
		ReportingInstance:   s.instance,
		Action:              eventAction,
		Reason:              ev.Reason,
		Regarding: corev1.ObjectReference{
			APIVersion: apiVersionOf(ref.Kind),
			Kind:       ref.Kind,
			Namespace:  ref.Namespace,
			Name:       ref.Name,
			UID:        ref.UID,
		},
		Note: truncate(ev.Note, maxNote),
		Type: corev1.EventTypeWarning,
	}
}

// apiVersionOf returns the API version of the kinds portico reports on.
func apiVersionOf(kind string) string {
	switch kind {
	case "EndpointSlice":
		return "discovery.k8s.io/v1"
	case "Service", "Node":
		return "v1"
	}
	return ""
}

// eventName returns <object name>.<16 hex digits of a hash of what the Event says>: the
// same on every node for the same warning about the same object.
func eventName(ev proxier.Event) string {
	h := fnv.New64a()
	r := ev.Regarding
	for _, s := range []string{ReportingController, r.Kind, r.Namespace, r.Name, string(r.UID), ev.Reason, ev.Note} {
		_, _ = h.Write([]byte(s))
		_, _ = h.Write([]byte{0})
	}
	prefix := r.Name
	if prefix == "" {
		prefix = "portico"
	}
	suffix := fmt.Sprintf(".%016x", h.Sum64())
	return truncate(prefix, maxName-len(suffix)) + suffix
}

// truncate cuts s to at most n bytes, at a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
