//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-dev/portico/e2e/harness/env"
	"github.com/portico-dev/portico/e2e/harness/netns"
	"github.com/portico-dev/portico/e2e/harness/traffic"
)

// These tests let kube-controller-manager write the EndpointSlices, as in a real cluster:
// its EndpointSlice controller from Pods, its mirroring controller from Endpoints.

// expectation is what a destination must do, checked until it holds or time runs out
// (the controllers act asynchronously, so a single check right after a write would race).
type expectation struct {
	from      string
	dst       netip.AddrPort
	endpoints []string        // pods that must answer (all of them, and only them)
	outcome   traffic.Outcome // when endpoints is empty
}

// eventually probes until e holds, for at most 30 s.
func eventually(ctx context.Context, t *testing.T, what string, e expectation) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		ok, got := e.check(ctx)
		if ok {
			return
		}
		last = got
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: %s -> %s never did what was expected within 30 s; last: %s", what, e.from, e.dst, last)
}

func (e expectation) check(ctx context.Context) (bool, string) {
	if len(e.endpoints) == 0 {
		st := traffic.ProbeN(ctx, suite.Topo, e.from, netip.Addr{}, e.dst, "TCP", probeTimeout, probesRefused)
		return st.Outcomes[e.outcome] == st.Sent && st.Sent > 0, st.String()
	}
	st := traffic.ProbeN(ctx, suite.Topo, e.from, netip.Addr{}, e.dst, "TCP", probeTimeout, probesBalanced)
	want := map[netip.Addr]bool{}
	for _, p := range e.endpoints {
		want[suite.Topo.PodIP(p, familyOf(e.dst))] = true
	}
	got := map[netip.Addr]bool{}
	for s := range st.Servers {
		got[s.Addr()] = true
	}
	return st.OK() == st.Sent && maps.Equal(want, got), st.String()
}

func familyOf(ap netip.AddrPort) netns.Family { return netns.FamilyOf(ap.Addr()) }

func clusterIPOf(svc *corev1.Service) netip.AddrPort {
	ip := netip.MustParseAddr(svc.Spec.ClusterIP)
	return netip.AddrPortFrom(ip, uint16(svc.Spec.Ports[0].Port))
}

func nodePortOf(svc *corev1.Service) netip.AddrPort {
	return netip.AddrPortFrom(suite.Topo.NodeIP(netns.NodeA, netns.IPv4), uint16(svc.Spec.Ports[0].NodePort))
}

// manualEndpoints is an Endpoints object pointing at one pod's traffic server.
func manualEndpoints(ns, name, pod string) *corev1.Endpoints {
	return &corev1.Endpoints{ //nolint:staticcheck // Endpoints are what operators write for selector-less Services
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Subsets: []corev1.EndpointSubset{{
			Addresses: []corev1.EndpointAddress{{IP: suite.Topo.PodIP(pod, netns.IPv4).String()}},
			Ports:     []corev1.EndpointPort{{Name: "http", Port: env.ServerPort, Protocol: corev1.ProtocolTCP}},
		}},
	}
}

// TestManualEndpoints: a selector-less Service with a manually written Endpoints object,
// mirrored into EndpointSlices by kube-controller-manager.
func TestManualEndpoints(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := "manual-endpoints"
	svc, err := suite.ApplyService(ctx, withNamespace(service("myapp-service", nodePort()), ns))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = suite.DeleteService(context.Background(), ns, svc.Name) })
	eps := suite.Cluster.Client().CoreV1().Endpoints(ns) //nolint:staticcheck // see manualEndpoints
	if _, err := eps.Create(ctx, manualEndpoints(ns, svc.Name, b2), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "Endpoints -> pod-b2 at the ClusterIP", expectation{from: a2, dst: clusterIPOf(svc), endpoints: []string{b2}})
	eventually(ctx, t, "Endpoints -> pod-b2 at the NodePort", expectation{from: client, dst: nodePortOf(svc), endpoints: []string{b2}})
	assertMirrored(ctx, t, ns, svc.Name)

	if _, err := eps.Update(ctx, manualEndpoints(ns, svc.Name, a1), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "edited Endpoints -> pod-a1", expectation{from: client, dst: nodePortOf(svc), endpoints: []string{a1}})
	eventually(ctx, t, "edited Endpoints at the ClusterIP", expectation{from: a2, dst: clusterIPOf(svc), endpoints: []string{a1}})

	if err := eps.Delete(ctx, svc.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "deleted Endpoints: REJECT", expectation{from: a2, dst: clusterIPOf(svc), outcome: traffic.Refused})
	eventually(ctx, t, "deleted Endpoints: REJECT at the NodePort", expectation{from: client, dst: nodePortOf(svc), outcome: traffic.Refused})
}

func withNamespace(svc *corev1.Service, ns string) *corev1.Service {
	svc.Namespace = ns
	return svc
}

// assertMirrored checks that the Service's EndpointSlices come from the mirroring
// controller, not from the test.
func assertMirrored(ctx context.Context, t *testing.T, ns, svc string) {
	t.Helper()
	assertSlicesManagedBy(ctx, t, ns, svc, "endpointslicemirroring-controller.k8s.io")
}

func assertSlicesManagedBy(ctx context.Context, t *testing.T, ns, svc, manager string) {
	t.Helper()
	list, err := suite.Cluster.Client().DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + svc,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) == 0 {
		t.Fatalf("no EndpointSlice for %s/%s", ns, svc)
	}
	for _, s := range list.Items {
		if got := s.Labels[discoveryv1.LabelManagedBy]; got != manager {
			t.Errorf("EndpointSlice %s is managed by %q, want %q", s.Name, got, manager)
		}
	}
}

// TestPodsThroughEndpointSliceController: a Service selecting Pods that the harness marks
// ready, not ready and terminating; traffic follows what the EndpointSlice controller
// writes.
func TestPodsThroughEndpointSliceController(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := "pods"
	labels := map[string]string{"app": "ctl-web"}
	svcIn := withNamespace(service("ctl-web", nodePort()), ns)
	svcIn.Spec.Selector = labels
	svc, err := suite.ApplyService(ctx, svcIn)
	if err != nil {
		t.Fatal(err)
	}
	pods := map[string]string{"ctl-web-1": a1, "ctl-web-2": b1}
	t.Cleanup(func() {
		for name := range pods {
			_ = suite.DeletePodNow(context.Background(), ns, name)
		}
		_ = suite.DeleteService(context.Background(), ns, svc.Name)
	})
	for _, name := range slices.Sorted(maps.Keys(pods)) {
		if _, err := suite.CreatePod(ctx, suite.PodFor(ns, name, pods[name], labels)); err != nil {
			t.Fatal(err)
		}
	}
	cip := clusterIPOf(svc)
	eventually(ctx, t, "both Pods ready", expectation{from: client, dst: cip, endpoints: []string{a1, b1}})
	assertSlicesManagedBy(ctx, t, ns, svc.Name, "endpointslice-controller.k8s.io")

	mustSetReady(ctx, t, ns, "ctl-web-2", false)
	eventually(ctx, t, "pod-b1 not ready", expectation{from: client, dst: cip, endpoints: []string{a1}})

	if err := suite.TerminatePod(ctx, ns, "ctl-web-1"); err != nil {
		t.Fatal(err)
	}
	// pod-a1 is terminating but still serving, and no other Pod is ready: the fallback
	// to serving-and-terminating endpoints keeps it answering.
	eventually(ctx, t, "only a terminating, serving Pod", expectation{from: client, dst: cip, endpoints: []string{a1}})
	eventually(ctx, t, "the same at the NodePort", expectation{from: client, dst: nodePortOf(svc), endpoints: []string{a1}})

	mustSetReady(ctx, t, ns, "ctl-web-2", true)
	eventually(ctx, t, "pod-b1 ready again: the terminating Pod is no longer used", expectation{from: client, dst: cip, endpoints: []string{b1}})

	mustSetReady(ctx, t, ns, "ctl-web-2", false)
	if err := suite.DeletePodNow(ctx, ns, "ctl-web-1"); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "no usable endpoint: REJECT", expectation{from: client, dst: cip, outcome: traffic.Refused})
}

func mustSetReady(ctx context.Context, t *testing.T, ns, name string, ready bool) {
	t.Helper()
	if _, err := suite.SetPodReady(ctx, ns, name, ready); err != nil {
		t.Fatal(fmt.Errorf("setting %s ready=%t: %w", name, ready, err))
	}
}
