package proxier

import (
	"slices"
	"strings"
	"time"
	"unique"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// sliceRecord is what the EndpointSlice cache holds instead of the typed slice: its
// identity, the Service name label, the trigger-time annotation and the fields the
// compiler reads, in exactly sized arrays. At 10,000 slices of 10 endpoints it takes
// about half the memory of the stripped typed slice (which carries a full ObjectMeta,
// two one-entry maps and a 96-byte struct per endpoint). With recordMeta it implements what
// the informer's store expects of metav1.Object and runtime.Object.
type sliceRecord struct {
	recordMeta
	service     string    // the kubernetes.io/service-name label
	trigger     time.Time // the last-change-trigger-time annotation; zero when absent
	addressType discoveryv1.AddressType
	ports       []discoveryv1.EndpointPort
	endpoints   []sliceEndpoint
}

// sliceEndpoint is one endpoint of a sliceRecord. Node and zone names are shared.
type sliceEndpoint struct {
	addresses  []string
	node, zone *string
	hints      *discoveryv1.EndpointHints
	conditions conditionBits
}

// conditionBits packs the three endpoint conditions, each unset, true or false.
type conditionBits uint8

const (
	readySet conditionBits = 1 << iota
	readyTrue
	servingSet
	servingTrue
	terminatingSet
	terminatingTrue
)

// packCondition records c (nil: unset) with the set and true bits of one condition.
func packCondition(c *bool, set, isTrue conditionBits) conditionBits {
	switch {
	case c == nil:
		return 0
	case *c:
		return set | isTrue
	}
	return set
}

// condition returns the shared pointer form of one condition (nil when unset).
func (b conditionBits) condition(set, isTrue conditionBits) *bool {
	switch {
	case b&set == 0:
		return nil
	case b&isTrue != 0:
		return &trueValue
	}
	return &falseValue
}

// sliceRecordOf returns obj as a sliceRecord (compacting a typed EndpointSlice as the
// transform does), or nil for any other object.
func sliceRecordOf(obj any) *sliceRecord {
	switch o := obj.(type) {
	case *sliceRecord:
		return o
	case *discoveryv1.EndpointSlice:
		return compactSlice(o)
	}
	return nil
}

// compactSlice copies what portico reads of s into a new sliceRecord.
func compactSlice(s *discoveryv1.EndpointSlice) *sliceRecord {
	r := &sliceRecord{
		recordMeta:  metaOf(&s.ObjectMeta),
		service:     s.Labels[discoveryv1.LabelServiceName],
		addressType: s.AddressType,
		ports:       slices.Clone(s.Ports),
		endpoints:   make([]sliceEndpoint, len(s.Endpoints)),
	}
	if v, ok := s.Annotations[TriggerTimeAnnotation]; ok {
		r.trigger, _ = time.Parse(time.RFC3339Nano, v)
	}
	addrs := packAddresses(s.Endpoints)
	for i, ep := range s.Endpoints {
		n := len(ep.Addresses)
		r.endpoints[i] = sliceEndpoint{
			addresses: addrs[:n:n],
			node:      sharedString(ep.NodeName),
			zone:      sharedString(ep.Zone),
			hints:     sharedHints(ep.Hints),
			conditions: packCondition(ep.Conditions.Ready, readySet, readyTrue) |
				packCondition(ep.Conditions.Serving, servingSet, servingTrue) |
				packCondition(ep.Conditions.Terminating, terminatingSet, terminatingTrue),
		}
		addrs = addrs[n:]
	}
	return r
}

// sharedHints interns the hint names (a few zone and node names across the cluster).
func sharedHints(h *discoveryv1.EndpointHints) *discoveryv1.EndpointHints {
	if h == nil {
		return nil
	}
	for i := range h.ForZones {
		h.ForZones[i].Name = unique.Make(h.ForZones[i].Name).Value()
	}
	for i := range h.ForNodes {
		h.ForNodes[i].Name = unique.Make(h.ForNodes[i].Name).Value()
	}
	return h
}

// packAddresses returns the addresses of all eps in order, in one array whose strings
// share one backing string (two allocations instead of two per endpoint).
func packAddresses(eps []discoveryv1.Endpoint) []string {
	n, size := 0, 0
	for _, ep := range eps {
		n += len(ep.Addresses)
		for _, a := range ep.Addresses {
			size += len(a)
		}
	}
	var b strings.Builder
	b.Grow(size)
	for _, ep := range eps {
		for _, a := range ep.Addresses {
			b.WriteString(a)
		}
	}
	all, out := b.String(), make([]string, 0, n)
	for _, ep := range eps {
		for _, a := range ep.Addresses {
			out = append(out, all[:len(a)])
			all = all[len(a):]
		}
	}
	return out
}

// slice returns the typed EndpointSlice the compiler reads (built on each call; it
// shares the record's arrays, which nobody modifies).
func (r *sliceRecord) slice() *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  r.objectMeta(),
		AddressType: r.addressType,
		Ports:       r.ports,
		Endpoints:   make([]discoveryv1.Endpoint, len(r.endpoints)),
	}
	for i, e := range r.endpoints {
		s.Endpoints[i] = discoveryv1.Endpoint{
			Addresses: e.addresses,
			Conditions: discoveryv1.EndpointConditions{
				Ready:       e.conditions.condition(readySet, readyTrue),
				Serving:     e.conditions.condition(servingSet, servingTrue),
				Terminating: e.conditions.condition(terminatingSet, terminatingTrue),
			},
			NodeName: e.node,
			Zone:     e.zone,
			Hints:    e.hints,
		}
	}
	return s
}

// DeepCopyObject implements runtime.Object.
func (r *sliceRecord) DeepCopyObject() runtime.Object {
	c := *r
	c.ports = slices.Clone(r.ports)
	c.endpoints = slices.Clone(r.endpoints)
	return &c
}
