package proxier

import (
	"unique"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/portico-dev/portico/proxier/compile"
	"github.com/portico-dev/portico/proxier/model"
)

// serviceRecord is what the Service cache holds instead of the typed Service: its
// identity, the one label portico reads, the spec (without the selector) and the load
// balancer ingress. It leaves out the ObjectMeta and the rest of the status, about 40 %
// of a stripped Service. It implements metav1.Object through GetObjectMeta and
// runtime.Object, as the informer's store expects.
type serviceRecord struct {
	name, namespace, resourceVersion string
	labels                           map[string]string // only the service-proxy-name label
	spec                             corev1.ServiceSpec
	ingress                          []corev1.LoadBalancerIngress
}

// serviceRecordOf returns obj as a serviceRecord (compacting a typed Service as the
// transform does), or nil for any other object.
func serviceRecordOf(obj any) *serviceRecord {
	switch o := obj.(type) {
	case *serviceRecord:
		return o
	case *corev1.Service:
		return compactService(o)
	}
	return nil
}

// compactService copies what portico reads of s into a new serviceRecord.
func compactService(s *corev1.Service) *serviceRecord {
	r := &serviceRecord{
		name:            s.Name,
		namespace:       unique.Make(s.Namespace).Value(),
		resourceVersion: s.ResourceVersion,
		labels:          keepOnly(s.Labels, compile.LabelServiceProxyName),
		spec:            s.Spec,
		ingress:         s.Status.LoadBalancer.Ingress,
	}
	r.spec.Selector = nil
	return r
}

// service returns the typed Service the compiler reads (built on each call; it shares the
// record's arrays, which nobody modifies).
func (r *serviceRecord) service() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: r.name, Namespace: r.namespace, ResourceVersion: r.resourceVersion, Labels: r.labels},
		Spec:       r.spec,
		Status:     corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: r.ingress}},
	}
}

// key returns the Service's name.
func (r *serviceRecord) key() model.ServiceName {
	return model.ServiceName{Namespace: r.namespace, Name: r.name}
}

// GetObjectMeta implements metav1.ObjectMetaAccessor (the store keys objects by
// namespace and name).
func (r *serviceRecord) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Name: r.name, Namespace: r.namespace, ResourceVersion: r.resourceVersion}
}

// GetObjectKind implements runtime.Object.
func (r *serviceRecord) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object.
func (r *serviceRecord) DeepCopyObject() runtime.Object {
	c := *r
	s := r.service().DeepCopy()
	c.labels, c.spec, c.ingress = s.Labels, s.Spec, s.Status.LoadBalancer.Ingress
	return &c
}
