//go:build e2e

package e2e

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/portico-dev/portico/e2e/harness/env"
)

// svcOpt changes a Service template.
type svcOpt func(*corev1.Service)

// service returns a single-stack IPv4 ClusterIP Service template with the given ports
// (default one TCP port 80) targeting the pods' traffic servers.
func service(name string, opts ...svcOpt) *corev1.Service {
	single := corev1.IPFamilyPolicySingleStack
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{
			Type:           corev1.ServiceTypeClusterIP,
			IPFamilyPolicy: &single,
			IPFamilies:     []corev1.IPFamily{corev1.IPv4Protocol},
			Ports:          []corev1.ServicePort{tcp("http", 80)},
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func tcp(name string, port int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: port, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(env.ServerPort)}
}

func udp(name string, port int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: port, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(env.ServerPort)}
}

func ports(ps ...corev1.ServicePort) svcOpt { return func(s *corev1.Service) { s.Spec.Ports = ps } }

func nodePort() svcOpt { return func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort } }

func loadBalancer() svcOpt {
	return func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeLoadBalancer }
}

func dualStack() svcOpt {
	return func(s *corev1.Service) {
		p := corev1.IPFamilyPolicyRequireDualStack
		s.Spec.IPFamilyPolicy = &p
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	}
}

func externalIPs(ips ...string) svcOpt { return func(s *corev1.Service) { s.Spec.ExternalIPs = ips } }

func sourceRanges(r ...string) svcOpt {
	return func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = r }
}

func externalLocal() svcOpt {
	return func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal }
}

func internalLocal() svcOpt {
	return func(s *corev1.Service) {
		p := corev1.ServiceInternalTrafficPolicyLocal
		s.Spec.InternalTrafficPolicy = &p
	}
}

func affinity(seconds int32) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &seconds}}
	}
}

// ready returns ready backends on the given pods.
func ready(pods ...string) []env.Backend {
	out := []env.Backend{}
	for _, p := range pods {
		out = append(out, env.Backend{Pod: p})
	}
	return out
}
