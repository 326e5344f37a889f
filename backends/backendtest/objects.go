package backendtest

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// hostNames lists the hosts a flow can start from.
func hostNames(spec netns.Spec) []string {
	out := []string{spec.Client.Name}
	for _, n := range spec.Nodes {
		out = append(out, n.Name)
		for _, p := range n.Pods {
			out = append(out, p.Name)
		}
	}
	return out
}

// Object returns the Service as the API would store it before allocation: namespace ns,
// no cluster IP or node port yet (the API server, or Allocate, assigns them).
func (s *Service) Object(ns string) *corev1.Service {
	policy := corev1.IPFamilyPolicySingleStack
	fams := []corev1.IPFamily{corev1.IPv4Protocol}
	if s.DualStack {
		policy = corev1.IPFamilyPolicyRequireDualStack
		fams = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: ns},
		Spec: corev1.ServiceSpec{
			Type:                          corev1.ServiceType(orDefault(s.Type, string(corev1.ServiceTypeClusterIP))),
			IPFamilyPolicy:                &policy,
			IPFamilies:                    fams,
			ExternalIPs:                   s.ExternalIPs,
			LoadBalancerSourceRanges:      s.SourceRanges,
			AllocateLoadBalancerNodePorts: s.AllocateLoadBalancerNodePorts,
		},
	}
	for _, p := range s.ports() {
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{
			Name: p.Name, Port: p.Port, Protocol: corev1.Protocol(orDefault(p.Protocol, "TCP")),
			TargetPort: intstr.FromInt32(p.targetPort()),
		})
	}
	s.setPolicies(svc)
	return svc
}

func (s *Service) setPolicies(svc *corev1.Service) {
	if s.ExternalTrafficPolicy != "" {
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicy(s.ExternalTrafficPolicy)
	}
	if s.InternalTrafficPolicy != "" {
		p := corev1.ServiceInternalTrafficPolicy(s.InternalTrafficPolicy)
		svc.Spec.InternalTrafficPolicy = &p
	}
	if s.Affinity > 0 {
		t := s.Affinity
		svc.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		svc.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &t}}
	}
}

func (s *Service) ports() []Port {
	if len(s.Ports) == 0 {
		return []Port{{Name: "http", Port: 80}}
	}
	return s.Ports
}

func (p Port) targetPort() int32 {
	if p.TargetPort == 0 {
		return ServerPort
	}
	return p.TargetPort
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// ManagedBy is the endpointslice.kubernetes.io/managed-by value of the EndpointSlices
// tests write (the EndpointSlice controller leaves them alone).
const ManagedBy = "e2e.portico.dev"

// EndpointSlice returns the EndpointSlice of family fam ("IPv4" or "IPv6") of svc (a
// stored Service: namespace, name and ports set) with eps as endpoints on the pods of the
// topology spec, every Service port mapped to its target port. The last-change trigger
// time is now.
func EndpointSlice(spec netns.Spec, svc *corev1.Service, fam netns.Family, eps []Endpoint) *discoveryv1.EndpointSlice {
	at := discoveryv1.AddressTypeIPv4
	suffix := "v4"
	if fam == netns.IPv6 {
		at, suffix = discoveryv1.AddressTypeIPv6, "v6"
	}
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("%s-e2e-%s", svc.Name, suffix), Namespace: svc.Namespace,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: svc.Name,
				discoveryv1.LabelManagedBy:   ManagedBy,
			},
			Annotations: map[string]string{
				"endpoints.kubernetes.io/last-change-trigger-time": time.Now().UTC().Format(time.RFC3339Nano),
			},
		},
		AddressType: at,
		Endpoints:   []discoveryv1.Endpoint{},
	}
	for _, p := range svc.Spec.Ports {
		target := p.TargetPort.IntVal
		if target == 0 {
			target = ServerPort
		}
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr(p.Name), Protocol: ptr(p.Protocol), Port: ptr(target)})
	}
	for _, e := range eps {
		s.Endpoints = append(s.Endpoints, endpointOf(spec, e, fam))
	}
	return s
}

// endpointOf returns the EndpointSlice endpoint of pod e in family fam.
func endpointOf(spec netns.Spec, e Endpoint, fam netns.Family) discoveryv1.Endpoint {
	node, pod := podOf(spec, e.Pod)
	addr := pod.IPv4
	if fam == netns.IPv6 {
		addr = pod.IPv6
	}
	ep := discoveryv1.Endpoint{
		Addresses: []string{addr.String()},
		NodeName:  ptr(node.Name),
		Zone:      ptr(node.Zone),
		Conditions: discoveryv1.EndpointConditions{
			Ready: ptr(!e.NotReady), Serving: ptr(!e.NotServing), Terminating: ptr(e.Terminating),
		},
	}
	if len(e.ZoneHints)+len(e.NodeHints) > 0 {
		ep.Hints = &discoveryv1.EndpointHints{}
		for _, z := range e.ZoneHints {
			ep.Hints.ForZones = append(ep.Hints.ForZones, discoveryv1.ForZone{Name: z})
		}
		for _, n := range e.NodeHints {
			ep.Hints.ForNodes = append(ep.Hints.ForNodes, discoveryv1.ForNode{Name: n})
		}
	}
	return ep
}

// podOf returns a pod of the topology and its node; it panics on an unknown pod (the
// table's check rejects those).
func podOf(spec netns.Spec, name string) (netns.NodeSpec, netns.PodSpec) {
	for _, n := range spec.Nodes {
		for _, p := range n.Pods {
			if p.Name == name {
				return n, p
			}
		}
	}
	panic(fmt.Sprintf("backendtest: no pod %q in the topology", name))
}

// PodAddr returns the address of pod name in family fam.
func PodAddr(spec netns.Spec, name string, fam netns.Family) netip.Addr {
	_, p := podOf(spec, name)
	if fam == netns.IPv6 {
		return p.IPv6
	}
	return p.IPv4
}

func ptr[T any](v T) *T { return &v }
