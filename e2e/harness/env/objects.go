package env

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/e2e/harness/netns"
)

// ManagedBy is the endpointslice.kubernetes.io/managed-by value of the slices the tests write.
const ManagedBy = backendtest.ManagedBy

// Backend is one endpoint of a Service: a pod of the topology and its conditions (the
// zero conditions mean ready and serving). It is the packet-flow table's endpoint, so
// that the e2e suite and the unit tests' tracer build the same EndpointSlices.
type Backend = backendtest.Endpoint

// EnsureNamespace creates a Kubernetes namespace if it does not exist.
func (e *Env) EnsureNamespace(ctx context.Context, name string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	_, err := e.Cluster.Client().CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// ApplyService creates svc, or updates it keeping its allocated cluster IPs and node
// ports, and returns the stored object.
func (e *Env) ApplyService(ctx context.Context, svc *corev1.Service) (*corev1.Service, error) {
	if err := e.EnsureNamespace(ctx, svc.Namespace); err != nil {
		return nil, err
	}
	api := e.Cluster.Client().CoreV1().Services(svc.Namespace)
	got, err := api.Create(ctx, svc, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		return got, err
	}
	cur, err := api.Get(ctx, svc.Name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	next := svc.DeepCopy()
	next.ResourceVersion = cur.ResourceVersion
	if next.Spec.Type != corev1.ServiceTypeExternalName && cur.Spec.Type != corev1.ServiceTypeExternalName {
		next.Spec.ClusterIP, next.Spec.ClusterIPs = cur.Spec.ClusterIP, cur.Spec.ClusterIPs
		keepNodePorts(next, cur)
	}
	return api.Update(ctx, next, metav1.UpdateOptions{})
}

func keepNodePorts(next, cur *corev1.Service) {
	for i := range next.Spec.Ports {
		for _, p := range cur.Spec.Ports {
			if p.Name == next.Spec.Ports[i].Name && next.Spec.Ports[i].NodePort == 0 {
				next.Spec.Ports[i].NodePort = p.NodePort
			}
		}
	}
}

// SetLoadBalancerIngress writes status.loadBalancer.ingress through the status
// subresource, as a cloud controller would.
func (e *Env) SetLoadBalancerIngress(ctx context.Context, svc *corev1.Service, ips ...string) (*corev1.Service, error) {
	api := e.Cluster.Client().CoreV1().Services(svc.Namespace)
	cur, err := api.Get(ctx, svc.Name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	cur.Status.LoadBalancer.Ingress = nil
	for _, ip := range ips {
		cur.Status.LoadBalancer.Ingress = append(cur.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	return api.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
}

// DeleteService deletes a Service and the EndpointSlices the tests wrote for it.
func (e *Env) DeleteService(ctx context.Context, namespace, name string) error {
	err := e.Cluster.Client().CoreV1().Services(namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	for _, fam := range []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6} {
		err := e.Cluster.Client().DiscoveryV1().EndpointSlices(namespace).Delete(ctx, sliceName(name, fam), metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// SetEndpoints writes the Service's EndpointSlices (one per family of the Service) with
// backends as endpoints, every Service port mapped to the pods' ServerPort, and the
// last-change-trigger-time annotation set to now.
func (e *Env) SetEndpoints(ctx context.Context, svc *corev1.Service, backends []Backend) error {
	for _, fam := range serviceFamilies(svc) {
		if err := e.applySlice(ctx, e.slice(svc, fam, backends)); err != nil {
			return err
		}
	}
	return nil
}

func serviceFamilies(svc *corev1.Service) []netns.Family {
	var out []netns.Family
	for _, s := range svc.Spec.ClusterIPs {
		if ip, err := netip.ParseAddr(s); err == nil {
			out = append(out, netns.FamilyOf(ip))
		}
	}
	if len(out) == 0 {
		out = []netns.Family{netns.IPv4}
	}
	return out
}

func sliceName(svc string, fam discoveryv1.AddressType) string {
	return fmt.Sprintf("%s-e2e-%s", svc, map[discoveryv1.AddressType]string{discoveryv1.AddressTypeIPv4: "v4", discoveryv1.AddressTypeIPv6: "v6"}[fam])
}

// slice builds the EndpointSlice of one family.
func (e *Env) slice(svc *corev1.Service, fam netns.Family, backends []Backend) *discoveryv1.EndpointSlice {
	return backendtest.EndpointSlice(e.Topo.Spec(), svc, fam, backends)
}

func (e *Env) applySlice(ctx context.Context, s *discoveryv1.EndpointSlice) error {
	api := e.Cluster.Client().DiscoveryV1().EndpointSlices(s.Namespace)
	_, err := api.Create(ctx, s, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	cur, err := api.Get(ctx, s.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	s.ResourceVersion = cur.ResourceVersion
	_, err = api.Update(ctx, s, metav1.UpdateOptions{})
	return err
}

func ptr[T any](v T) *T { return &v }
