package proxier

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/portico-dev/portico/model"
	"github.com/portico-dev/portico/proxier/compile"
)

// serviceRecord is what the Service cache holds instead of the typed Service: its
// identity, the one label portico reads, the spec (without the selector) and the load
// balancer ingress. It leaves out the ObjectMeta and the rest of the status, about 40 %
// of a stripped Service. With recordMeta it implements what the informer's store expects
// of metav1.Object and runtime.Object.
type serviceRecord struct {
	recordMeta
	uid     packedUID         // for Events about the Service
	labels  map[string]string // only the service-proxy-name label
	spec    corev1.ServiceSpec
	ingress []corev1.LoadBalancerIngress
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
		recordMeta: metaOf(&s.ObjectMeta),
		uid:        packUID(s.UID),
		labels:     keepOnly(s.Labels, compile.LabelServiceProxyName),
		spec:       s.Spec,
		ingress:    s.Status.LoadBalancer.Ingress,
	}
	r.spec.Selector = nil
	return r
}

// service returns the typed Service the compiler reads (built on each call; it shares the
// record's arrays, which nobody modifies).
func (r *serviceRecord) service() *corev1.Service {
	meta := r.objectMeta()
	meta.Labels = r.labels
	return &corev1.Service{
		ObjectMeta: meta,
		Spec:       r.spec,
		Status:     corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: r.ingress}},
	}
}

// key returns the Service's name.
func (r *serviceRecord) key() model.ServiceName {
	return model.ServiceName{Namespace: r.namespace, Name: r.name}
}

// DeepCopyObject implements runtime.Object.
func (r *serviceRecord) DeepCopyObject() runtime.Object {
	c := *r
	s := r.service().DeepCopy()
	c.labels, c.spec, c.ingress = s.Labels, s.Spec, s.Status.LoadBalancer.Ingress
	return &c
}
