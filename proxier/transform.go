package proxier

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// stripUnused is the informers' transform: it drops every field portico never reads
// before the object enters the cache, which keeps memory low with many Services.
func stripUnused(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Service:
		o.ManagedFields = nil
		o.Annotations = nil
		o.OwnerReferences = nil
		o.Spec.Selector = nil
		o.Status.Conditions = nil
	case *discoveryv1.EndpointSlice:
		o.ManagedFields = nil
		o.OwnerReferences = nil
		o.Annotations = keepOnly(o.Annotations, TriggerTimeAnnotation)
		for i := range o.Endpoints {
			o.Endpoints[i].TargetRef = nil
			o.Endpoints[i].DeprecatedTopology = nil
			o.Endpoints[i].Hostname = nil
		}
	case *corev1.Node:
		stripNode(o)
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

func keepOnly(m map[string]string, key string) map[string]string {
	v, ok := m[key]
	if !ok {
		return nil
	}
	return map[string]string{key: v}
}
