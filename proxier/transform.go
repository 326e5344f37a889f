package proxier

import (
	"sync"
	"unique"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// stripUnused is the informers' transform: it drops every field portico never reads
// before the object enters the cache, which keeps memory low with many Services.
// Services and EndpointSlices become records. Like every transform it must accept its
// own output.
func stripUnused(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Service:
		return compactService(o), nil
	case *discoveryv1.EndpointSlice:
		return compactSlice(o), nil
	case *corev1.Node:
		stripNode(o)
	case *networkingv1.ServiceCIDR:
		return &networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{
			Name: o.Name, ResourceVersion: o.ResourceVersion, DeletionTimestamp: o.DeletionTimestamp,
		}, Spec: o.Spec}, nil
	}
	return obj, nil
}

// stripNode keeps the labels, pod CIDRs, taints, addresses and deletion timestamp.
func stripNode(n *corev1.Node) {
	n.ManagedFields = nil
	n.Annotations = nil
	n.OwnerReferences = nil
	n.Status = corev1.NodeStatus{Addresses: n.Status.Addresses}
	n.Spec = corev1.NodeSpec{PodCIDR: n.Spec.PodCIDR, PodCIDRs: n.Spec.PodCIDRs, Taints: n.Spec.Taints}
}

// keepOnly returns a map of m's value for key alone, or nil when m has no such key.
func keepOnly(m map[string]string, key string) map[string]string {
	v, ok := m[key]
	if !ok {
		return nil
	}
	return map[string]string{key: v}
}

// trueValue and falseValue are the shared targets of the condition pointers of endpoints
// built from cache records.
var trueValue, falseValue = true, false

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
