package proxier

import (
	"slices"
	"strings"
	"sync"
	"time"
	"unique"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-dev/portico/proxier/compile"
)

// stripUnused is the informers' transform: it drops every field portico never reads
// before the object enters the cache, which keeps memory low with many Services.
// EndpointSlices become sliceRecords. Like every transform it must accept its own output.
func stripUnused(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Service:
		stripMeta(&o.ObjectMeta, compile.LabelServiceProxyName, "")
		o.Spec.Selector = nil
		o.Status.Conditions = nil
	case *discoveryv1.EndpointSlice:
		return compactSlice(o), nil
	case *corev1.Node:
		stripNode(o)
	}
	return obj, nil
}

// sliceRecord is what the EndpointSlice cache holds: the slice reduced to the fields the
// compiler reads and repacked into exactly sized arrays, with the Service name label and
// the trigger-time annotation kept as fields, not as two one-entry maps per slice (which
// cost more than the rest of its metadata). At 10,000 slices of 10 endpoints it is about
// 40 % smaller than the stripped typed slice.
type sliceRecord struct {
	discoveryv1.EndpointSlice
	service string    // the kubernetes.io/service-name label
	trigger time.Time // the last-change-trigger-time annotation; zero when absent
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
	r := &sliceRecord{service: s.Labels[discoveryv1.LabelServiceName]}
	if v, ok := s.Annotations[TriggerTimeAnnotation]; ok {
		r.trigger, _ = time.Parse(time.RFC3339Nano, v)
	}
	r.ObjectMeta = metav1.ObjectMeta{
		Name:              s.Name,
		Namespace:         unique.Make(s.Namespace).Value(),
		ResourceVersion:   s.ResourceVersion,
		DeletionTimestamp: s.DeletionTimestamp,
	}
	r.AddressType = s.AddressType
	r.Ports = slices.Clone(s.Ports)
	r.Endpoints = make([]discoveryv1.Endpoint, len(s.Endpoints))
	addrs := packAddresses(s.Endpoints)
	for i, ep := range s.Endpoints {
		compactEndpoint(&ep)
		n := len(ep.Addresses)
		ep.Addresses, addrs = addrs[:n:n], addrs[n:]
		r.Endpoints[i] = ep
	}
	return r
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

// stripNode keeps the labels, pod CIDRs, taints, addresses and deletion timestamp.
func stripNode(n *corev1.Node) {
	n.ManagedFields = nil
	n.Annotations = nil
	n.OwnerReferences = nil
	n.Status = corev1.NodeStatus{Addresses: n.Status.Addresses}
	n.Spec = corev1.NodeSpec{PodCIDR: n.Spec.PodCIDR, PodCIDRs: n.Spec.PodCIDRs, Taints: n.Spec.Taints}
}

// stripMeta keeps the identity of an object (name, namespace, resource version), the one
// label and the one annotation portico reads ("" for none).
func stripMeta(m *metav1.ObjectMeta, label, annotation string) {
	*m = metav1.ObjectMeta{
		Name:              m.Name,
		Namespace:         m.Namespace,
		ResourceVersion:   m.ResourceVersion,
		DeletionTimestamp: m.DeletionTimestamp,
		Labels:            keepOnly(m.Labels, label),
		Annotations:       keepOnly(m.Annotations, annotation),
	}
}

func keepOnly(m map[string]string, key string) map[string]string {
	v, ok := m[key]
	if !ok || key == "" {
		return nil
	}
	return map[string]string{key: v}
}

// compactEndpoint drops the fields portico never reads and shares the values that repeat
// across endpoints (conditions, node and zone names), which at 100,000 endpoints saves
// several allocations per endpoint.
func compactEndpoint(ep *discoveryv1.Endpoint) {
	ep.TargetRef = nil
	ep.DeprecatedTopology = nil
	ep.Hostname = nil
	ep.Conditions.Ready = sharedBool(ep.Conditions.Ready)
	ep.Conditions.Serving = sharedBool(ep.Conditions.Serving)
	ep.Conditions.Terminating = sharedBool(ep.Conditions.Terminating)
	ep.NodeName = sharedString(ep.NodeName)
	ep.Zone = sharedString(ep.Zone)
	if ep.Hints != nil {
		for i := range ep.Hints.ForZones {
			ep.Hints.ForZones[i].Name = unique.Make(ep.Hints.ForZones[i].Name).Value()
		}
		for i := range ep.Hints.ForNodes {
			ep.Hints.ForNodes[i].Name = unique.Make(ep.Hints.ForNodes[i].Name).Value()
		}
	}
}

var trueValue, falseValue = true, false

// sharedBool returns a pointer to one of two shared values (cached objects are never
// modified).
func sharedBool(b *bool) *bool {
	switch {
	case b == nil:
		return nil
	case *b:
		return &trueValue
	}
	return &falseValue
}

// sharedStrings interns *string values (node and zone names) for cached objects.
var sharedStrings sync.Map

func sharedString(s *string) *string {
	if s == nil {
		return nil
	}
	if p, ok := sharedStrings.Load(*s); ok {
		return p.(*string)
	}
	v := unique.Make(*s).Value()
	p, _ := sharedStrings.LoadOrStore(v, &v)
	return p.(*string)
}
