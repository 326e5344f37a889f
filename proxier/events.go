package proxier

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/model"
	"github.com/portico-dev/portico/proxier/compile"
)

// Event reasons portico reports.
const (
	// EventReasonInvalidField: a field of a Service or of one of its EndpointSlices is
	// invalid; the port, endpoint or slice it belongs to is skipped.
	EventReasonInvalidField = "InvalidField"
	// EventReasonSkipped: the backend could not program (part of) a Service.
	EventReasonSkipped = "Skipped"
	// EventReasonSubstituted: the backend programmed a Service port otherwise than asked,
	// because the kernel cannot do what was asked (backends.Warner).
	EventReasonSubstituted = "Substituted"
)

// ObjectRef names the API object an Event is about.
type ObjectRef struct {
	// Kind is the object's kind, e.g. "Service".
	Kind string
	// Namespace and Name name the object.
	Namespace, Name string
	// UID is the object's UID, empty when unknown. `kubectl describe` selects an object's
	// Events by its UID too, so it does not show an Event without one.
	UID types.UID
}

// Events receives warnings about API objects, for their owners to read with `kubectl
// describe`. A nil Options.Events sends none.
type Events interface {
	// Warn reports that obj is skipped in part or whole for reason (a CamelCase word
	// such as EventReasonInvalidField); note says what and why, for a person. It never
	// blocks.
	Warn(obj ObjectRef, reason, note string)
}

// warnService sends a warning about Service name, with its UID when the cache has it. It
// is how the proxier reports anything it skips of a Service.
func (p *Proxier) warnService(name model.ServiceName, reason, note string) {
	ref := ObjectRef{Kind: "Service", Namespace: name.Namespace, Name: name.Name}
	if obj, ok, err := p.watch.services.GetByKey(name.String()); err == nil && ok {
		if r := serviceRecordOf(obj); r != nil {
			ref.UID = r.uid.UID()
		}
	}
	p.opts.Events.Warn(ref, reason, note)
}

// reportProblem sends a compile problem as a warning on the Service it is about. A
// slice's problem goes to its Service too: that is where `kubectl describe service`
// shows it, and the note names the slice.
func (p *Proxier) reportProblem(err error) {
	var prob *compile.Problem
	if errors.As(err, &prob) {
		p.warnService(prob.Service, EventReasonInvalidField, prob.Error())
	}
}

// reportSkipped sends a Service port that the backend could not program as a warning on
// its Service.
func (p *Proxier) reportSkipped(fam model.Family, sp backends.SkippedPort) {
	note := fmt.Sprintf("%v: not programmed (%s backend, %s)", sp, p.backend.Name(), fam)
	p.warnService(sp.Name.Service(), EventReasonSkipped, note)
}

// reportWarnings logs the backend's warnings (backends.Warner) and sends each as a
// warning on its Service.
func (p *Proxier) reportWarnings(ctx context.Context, fam model.Family) {
	w, ok := p.backend.(backends.Warner)
	if !ok {
		return
	}
	for _, pw := range w.TakeWarnings() {
		klog.FromContext(ctx).Error(pw.Err, "The backend programmed a Service port otherwise than asked",
			"servicePort", pw.Name.String(), "family", fam, "backend", p.backend.Name())
		note := fmt.Sprintf("Service port %s: %v (%s backend, %s)", pw.Name, pw.Err, p.backend.Name(), fam)
		p.warnService(pw.Name.Service(), EventReasonSubstituted, note)
	}
}

// nopEvents is the Events of a Proxier without Options.Events.
type nopEvents struct{}

// Warn drops the warning.
func (nopEvents) Warn(ObjectRef, string, string) {}

// Event is one warning as an EventRecorder hands it to its EventSink.
type Event struct {
	// Regarding is the object the warning is about.
	Regarding ObjectRef
	// Reason and Note are Events.Warn's.
	Reason, Note string
	// Time is when it was reported.
	Time time.Time
}

// EventSink writes Events to the API server (package kubeapi has the real one).
type EventSink interface {
	// Write creates ev. When the same Event exists already (the same warning about the
	// same object, not yet expired) it returns an error that wraps ErrOwnEventExists if
	// this reporter wrote it (before a restart), ErrEventExists otherwise (another node
	// wrote it, or the sink cannot tell).
	Write(ctx context.Context, ev Event) error
}

var (
	// ErrEventExists is what an EventSink's error wraps when the Event exists already,
	// written by another reporter.
	ErrEventExists = errors.New("the event exists already")
	// ErrOwnEventExists is what an EventSink's error wraps when the Event exists
	// already, written by this reporter before it restarted.
	ErrOwnEventExists = errors.New("the event exists already, written by this reporter")
)

// Outcomes of a warning, as EventOptions.Count receives them.
const (
	// EventWritten: the Event was created.
	EventWritten = "written"
	// EventExists: the same Event existed already; when another node wrote it, the
	// object is left to that node.
	EventExists = "exists"
	// EventDuplicate: not sent, as the same warning was sent within Refresh, or another
	// node reports on the object.
	EventDuplicate = "duplicate"
	// EventObjectLimited: not sent, as the object used up its own budget.
	EventObjectLimited = "object_limited"
	// EventQueueFull: dropped, as the queue of warnings to write was full.
	EventQueueFull = "queue_full"
	// EventTooMany: dropped, as the recorder remembers MaxTracked warnings already.
	EventTooMany = "too_many"
	// EventFailed: the write failed.
	EventFailed = "failed"
)

// EventOptions tune an EventRecorder; zero fields take the defaults.
type EventOptions struct {
	// QPS and Burst are the node's token bucket for writes: at most Burst at once, then
	// QPS per second (default 5 and 0.1: one every 10 s).
	QPS   float64
	Burst int
	// Refresh is how long the same warning about the same object is not sent again, and
	// how long an object whose Event existed already is left to its reporter (default
	// 30 min; an Event lives an hour on the API server by default).
	Refresh time.Duration
	// ObjectBurst and ObjectInterval are each object's token bucket: at most ObjectBurst
	// different warnings at once, then one per ObjectInterval (default 3 and 10 min).
	ObjectBurst    int
	ObjectInterval time.Duration
	// QueueSize bounds the warnings waiting to be written (default 25); more are dropped.
	QueueSize int
	// MaxTracked bounds the warnings and the objects remembered (default 4096).
	MaxTracked int
	// WriteTimeout bounds one write (default 10 s).
	WriteTimeout time.Duration
	// Count, when set, receives the outcome of each warning (EventWritten, ...).
	Count func(outcome string)
	// Clock is the time source (default the real clock).
	Clock clock.Clock
}

// withDefaults returns o with every zero field set to its default.
func (o EventOptions) withDefaults() EventOptions {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDuration := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if o.QPS <= 0 {
		o.QPS = 0.1
	}
	def(&o.Burst, 5)
	def(&o.ObjectBurst, 3)
	def(&o.QueueSize, 25)
	def(&o.MaxTracked, 4096)
	defDuration(&o.Refresh, 30*time.Minute)
	defDuration(&o.ObjectInterval, 10*time.Minute)
	defDuration(&o.WriteTimeout, 10*time.Second)
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	return o
}

// EventRecorder is portico's Events: it deduplicates warnings, limits them per object
// and per node, and writes them through an EventSink in the background (Run). Why the
// limits are what they are: docs/architecture.md, "Failure and restart".
type EventRecorder struct {
	sink   EventSink
	opts   EventOptions
	queue  chan Event
	global bucket // Run's alone
	denied atomic.Bool

	mu        sync.Mutex
	warnings  map[warningKey]time.Time // when each warning was last sent
	objects   map[ObjectRef]*objectState
	lastPrune time.Time
}

// warningKey is one warning about one object.
type warningKey struct {
	obj          ObjectRef
	reason, note string
}

// objectState is what the recorder remembers of one object.
type objectState struct {
	budget bucket
	// quietUntil: another node reports on the object until then.
	quietUntil time.Time
}

// NewEventRecorder returns a recorder writing through sink. Nothing is written before
// Run.
func NewEventRecorder(sink EventSink, opts EventOptions) *EventRecorder {
	opts = opts.withDefaults()
	return &EventRecorder{
		sink:     sink,
		opts:     opts,
		queue:    make(chan Event, opts.QueueSize),
		warnings: map[warningKey]time.Time{},
		objects:  map[ObjectRef]*objectState{},
	}
}

// Warn queues a warning unless it is a duplicate or over a limit; it never blocks.
func (r *EventRecorder) Warn(obj ObjectRef, reason, note string) {
	ev := Event{Regarding: obj, Reason: reason, Note: note, Time: r.opts.Clock.Now()}
	if outcome := r.admit(ev); outcome != "" {
		r.count(outcome)
		return
	}
	select {
	case r.queue <- ev:
	default:
		r.forget(ev) // a later report may find room
		r.count(EventQueueFull)
	}
}

// admit decides whether ev is sent, and remembers it when it is; it returns the outcome
// of a warning that is not.
func (r *EventRecorder) admit(ev Event) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := warningKey{ev.Regarding, ev.Reason, ev.Note}
	last, known := r.warnings[key]
	if known && ev.Time.Sub(last) < r.opts.Refresh {
		return EventDuplicate
	}
	if (!known || r.objects[ev.Regarding] == nil) && !r.room(ev.Time) {
		return EventTooMany
	}
	obj := r.objects[ev.Regarding]
	if obj == nil {
		obj = &objectState{}
		r.objects[ev.Regarding] = obj
	}
	if ev.Time.Before(obj.quietUntil) {
		return EventDuplicate
	}
	if !obj.budget.take(ev.Time, r.opts.ObjectInterval, r.opts.ObjectBurst) {
		return EventObjectLimited
	}
	r.warnings[key] = ev.Time
	return ""
}

// room reports whether one more warning and object can be remembered, forgetting the
// expired ones (at most once a minute) when the maps are full. r.mu is held.
func (r *EventRecorder) room(now time.Time) bool {
	full := func() bool { return len(r.warnings) >= r.opts.MaxTracked || len(r.objects) >= r.opts.MaxTracked }
	if !full() {
		return true
	}
	if now.Sub(r.lastPrune) < time.Minute {
		return false
	}
	r.lastPrune = now
	for k, t := range r.warnings {
		if now.Sub(t) >= r.opts.Refresh {
			delete(r.warnings, k)
		}
	}
	for ref, o := range r.objects {
		if !now.Before(o.quietUntil) && o.budget.full(now, r.opts.ObjectInterval, r.opts.ObjectBurst) {
			delete(r.objects, ref)
		}
	}
	return !full()
}

// forget lets ev be sent again the next time it is reported.
func (r *EventRecorder) forget(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.warnings, warningKey{ev.Regarding, ev.Reason, ev.Note})
}

// leaveToReporter leaves ev's object to the node that wrote its Event, for Refresh.
func (r *EventRecorder) leaveToReporter(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if o := r.objects[ev.Regarding]; o != nil {
		o.quietUntil = r.opts.Clock.Now().Add(r.opts.Refresh)
	}
}

// count hands outcome to EventOptions.Count.
func (r *EventRecorder) count(outcome string) {
	if r.opts.Count != nil {
		r.opts.Count(outcome)
	}
}

// Run writes the queued warnings, at the node's pace, until ctx is done.
func (r *EventRecorder) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-r.queue:
			if !r.pace(ctx) {
				return
			}
			r.write(ctx, ev)
		}
	}
}

// pace waits for a token of the node's bucket; it returns false when ctx ends first.
func (r *EventRecorder) pace(ctx context.Context) bool {
	every := time.Duration(float64(time.Second) / r.opts.QPS)
	d := r.global.reserve(r.opts.Clock.Now(), every, r.opts.Burst)
	if d <= 0 {
		return true
	}
	t := r.opts.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

// write hands ev to the sink and counts the outcome.
func (r *EventRecorder) write(ctx context.Context, ev Event) {
	wctx, cancel := context.WithTimeout(ctx, r.opts.WriteTimeout)
	defer cancel()
	err := r.sink.Write(wctx, ev)
	switch {
	case err == nil:
		r.count(EventWritten)
	case errors.Is(err, ErrOwnEventExists):
		r.count(EventExists) // still this node's object: nobody else reports on it
	case errors.Is(err, ErrEventExists):
		r.count(EventExists)
		r.leaveToReporter(ev)
	default:
		r.count(EventFailed)
		r.logFailure(ctx, ev, err)
	}
}

// logFailure logs a failed write; a denied one (RBAC) only the first time, with a hint.
func (r *EventRecorder) logFailure(ctx context.Context, ev Event, err error) {
	logger := klog.FromContext(ctx)
	obj := ev.Regarding.Namespace + "/" + ev.Regarding.Name
	if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
		if r.denied.CompareAndSwap(false, true) {
			logger.Error(err, "Cannot write Events (does portico's ClusterRole allow create on events.k8s.io events?); "+
				"problems are still logged and counted, and Events are tried again for new ones", "object", obj)
		} else {
			logger.V(4).Info("Writing an Event was denied", "object", obj, "err", err)
		}
		return
	}
	logger.Error(err, "Writing an Event failed", "object", obj, "reason", ev.Reason)
}

// bucket is a token bucket holding at most burst tokens and earning one every interval.
// Its zero value is full.
type bucket struct {
	tokens float64
	last   time.Time
}

// refill adds the tokens earned since the last call.
func (b *bucket) refill(now time.Time, every time.Duration, burst int) {
	if b.last.IsZero() {
		b.tokens, b.last = float64(burst), now
		return
	}
	if now.After(b.last) {
		b.tokens = min(float64(burst), b.tokens+float64(now.Sub(b.last))/float64(every))
		b.last = now
	}
}

// take takes a token if there is one.
func (b *bucket) take(now time.Time, every time.Duration, burst int) bool {
	b.refill(now, every, burst)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// reserve takes a token, in advance when there is none, and returns how long until it is
// earned (0 when it was there).
func (b *bucket) reserve(now time.Time, every time.Duration, burst int) time.Duration {
	b.refill(now, every, burst)
	b.tokens--
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens * float64(every))
}

// full reports whether the bucket holds burst tokens, as a new one does.
func (b *bucket) full(now time.Time, every time.Duration, burst int) bool {
	b.refill(now, every, burst)
	return b.tokens >= float64(burst)
}
