package proxier

import (
	"slices"
	"unique"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/portico-dev/portico/model"
	"github.com/portico-dev/portico/proxier/compile"
)

// serviceRecord is what the Service cache holds instead of the typed Service: its
// identity and the fields the compiler reads, the common ones inline and the rest (set on
// few Services) behind one pointer. Enumerated values are interned, a clusterIPs list that
// only repeats clusterIP is a bit, and ports keep name, protocol, port and node port. At
// 50,000 Services that is about 270 bytes per Service against ~620 for a stripped
// ServiceSpec (the spec's 312-byte struct, ports with target port and app protocol, the
// cluster IP twice, one allocation per enumerated value). With recordMeta it implements
// what the informer's store expects of metav1.Object and runtime.Object.
type serviceRecord struct {
	recordMeta
	uid             packedUID // for Events about the Service
	clusterIP       string
	typ             corev1.ServiceType
	sessionAffinity corev1.ServiceAffinity
	externalPolicy  corev1.ServiceExternalTrafficPolicy
	internalPolicy  *corev1.ServiceInternalTrafficPolicy // shared; nil when unset
	ports           []portRecord
	rare            *rareServiceFields // nil when every one is unset
	flags           serviceFlags
}

// serviceFlags are the bits of a serviceRecord.
type serviceFlags uint8

// clusterIPsSame: spec.clusterIPs is exactly [spec.clusterIP], and not kept.
const clusterIPsSame serviceFlags = 1 << iota

// portRecord is what the compiler reads of a Service port.
type portRecord struct {
	name           string
	protocol       corev1.Protocol
	port, nodePort int32
}

// rareServiceFields are the fields of a serviceRecord that most Services leave unset.
type rareServiceFields struct {
	proxyName           *string // the service-proxy-name label; nil when absent
	scheduler           *string // the portico.dev/ipvs-scheduler annotation; nil when absent
	clusterIPs          []string
	externalName        string
	externalIPs         []string
	sourceRanges        []string
	healthCheckNodePort int32
	affinityConfig      *corev1.SessionAffinityConfig
	ingress             []corev1.LoadBalancerIngress
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
	spec := &s.Spec
	r := &serviceRecord{
		recordMeta:      metaOf(&s.ObjectMeta),
		uid:             packUID(s.UID),
		clusterIP:       spec.ClusterIP,
		typ:             intern(spec.Type),
		sessionAffinity: intern(spec.SessionAffinity),
		externalPolicy:  intern(spec.ExternalTrafficPolicy),
		internalPolicy:  sharedPolicy(spec.InternalTrafficPolicy),
		ports:           compactPorts(spec.Ports),
	}
	clusterIPs := spec.ClusterIPs
	if len(clusterIPs) == 1 && clusterIPs[0] == spec.ClusterIP {
		r.flags |= clusterIPsSame
		clusterIPs = nil
	}
	rare := rareServiceFields{
		proxyName:           sharedValue(s.Labels, compile.LabelServiceProxyName),
		scheduler:           sharedValue(s.Annotations, compile.SchedulerAnnotation),
		clusterIPs:          clusterIPs,
		externalName:        spec.ExternalName,
		externalIPs:         spec.ExternalIPs,
		sourceRanges:        spec.LoadBalancerSourceRanges,
		healthCheckNodePort: spec.HealthCheckNodePort,
		affinityConfig:      spec.SessionAffinityConfig,
		ingress:             s.Status.LoadBalancer.Ingress,
	}
	if !rare.empty() {
		r.rare = new(rareServiceFields) // allocated only here: most Services need none
		*r.rare = rare
	}
	return r
}

// empty reports whether every field of f is unset.
func (f *rareServiceFields) empty() bool {
	return f.proxyName == nil && f.scheduler == nil && f.clusterIPs == nil && f.externalName == "" &&
		f.externalIPs == nil && f.sourceRanges == nil && f.healthCheckNodePort == 0 &&
		f.affinityConfig == nil && f.ingress == nil
}

// compactPorts keeps name, protocol, port and node port of each port (nil for none).
func compactPorts(ports []corev1.ServicePort) []portRecord {
	if len(ports) == 0 {
		return nil
	}
	out := make([]portRecord, len(ports))
	for i, p := range ports {
		out[i] = portRecord{name: p.Name, protocol: intern(p.Protocol), port: p.Port, nodePort: p.NodePort}
	}
	return out
}

// intern returns the interned copy of an enumerated value (a few distinct values across
// the cluster, whose text each decoded object allocates anew).
func intern[T ~string](v T) T {
	if v == "" {
		return v
	}
	return T(unique.Make(string(v)).Value())
}

// sharedPolicy returns the shared pointer to the value *p (nil for nil): every Service
// with the same internal traffic policy points to one string, interned with the node and
// zone names.
func sharedPolicy(p *corev1.ServiceInternalTrafficPolicy) *corev1.ServiceInternalTrafficPolicy {
	return (*corev1.ServiceInternalTrafficPolicy)(sharedString((*string)(p)))
}

// sharedValue returns a shared pointer to m's value for key, or nil when m has none.
func sharedValue(m map[string]string, key string) *string {
	v, ok := m[key]
	if !ok {
		return nil
	}
	return sharedString(&v)
}

// service returns the typed Service the compiler reads (built on each call; it shares the
// record's arrays and pointers, which nobody modifies).
func (r *serviceRecord) service() *corev1.Service {
	s := &corev1.Service{ObjectMeta: r.objectMeta()}
	s.Spec = corev1.ServiceSpec{
		Type:                  r.typ,
		ClusterIP:             r.clusterIP,
		SessionAffinity:       r.sessionAffinity,
		ExternalTrafficPolicy: r.externalPolicy,
		InternalTrafficPolicy: r.internalPolicy,
		Ports:                 r.servicePorts(),
	}
	if r.flags&clusterIPsSame != 0 {
		s.Spec.ClusterIPs = []string{r.clusterIP}
	}
	if f := r.rare; f != nil {
		f.fill(s)
	}
	return s
}

// servicePorts returns the record's ports as Service ports (nil for none).
func (r *serviceRecord) servicePorts() []corev1.ServicePort {
	if r.ports == nil {
		return nil
	}
	out := make([]corev1.ServicePort, len(r.ports))
	for i, p := range r.ports {
		out[i] = corev1.ServicePort{Name: p.name, Protocol: p.protocol, Port: p.port, NodePort: p.nodePort}
	}
	return out
}

// fill sets the fields of s that f holds.
func (f *rareServiceFields) fill(s *corev1.Service) {
	if f.proxyName != nil {
		s.Labels = map[string]string{compile.LabelServiceProxyName: *f.proxyName}
	}
	if f.scheduler != nil {
		s.Annotations = map[string]string{compile.SchedulerAnnotation: *f.scheduler}
	}
	if f.clusterIPs != nil {
		s.Spec.ClusterIPs = f.clusterIPs
	}
	s.Spec.ExternalName = f.externalName
	s.Spec.ExternalIPs = f.externalIPs
	s.Spec.LoadBalancerSourceRanges = f.sourceRanges
	s.Spec.HealthCheckNodePort = f.healthCheckNodePort
	s.Spec.SessionAffinityConfig = f.affinityConfig
	s.Status.LoadBalancer.Ingress = f.ingress
}

// key returns the Service's name.
func (r *serviceRecord) key() model.ServiceName {
	return model.ServiceName{Namespace: r.namespace, Name: r.name}
}

// DeepCopyObject implements runtime.Object.
func (r *serviceRecord) DeepCopyObject() runtime.Object {
	c := *r
	c.ports = slices.Clone(r.ports)
	if f := r.rare; f != nil {
		c.rare = &rareServiceFields{
			proxyName:           f.proxyName,
			scheduler:           f.scheduler,
			clusterIPs:          slices.Clone(f.clusterIPs),
			externalName:        f.externalName,
			externalIPs:         slices.Clone(f.externalIPs),
			sourceRanges:        slices.Clone(f.sourceRanges),
			healthCheckNodePort: f.healthCheckNodePort,
			affinityConfig:      f.affinityConfig.DeepCopy(),
			ingress:             (&corev1.LoadBalancerStatus{Ingress: f.ingress}).DeepCopy().Ingress,
		}
	}
	return &c
}
