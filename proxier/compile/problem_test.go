package compile_test

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/model"
	"github.com/portico-dev/portico/proxier/compile"
)

// TestProblems checks that every problem compiling reports is a *compile.Problem naming
// the object (a slice's problems name the Service and the slice), the field and the
// value, and that its message is the one the log and the golden files show.
func TestProblems(t *testing.T) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"},
		Spec: corev1.ServiceSpec{
			Type:      corev1.ServiceTypeClusterIP,
			ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
			Ports: []corev1.ServicePort{{Name: "big", Protocol: corev1.ProtocolTCP, Port: 70000}},
		},
	}
	port := int32(8080)
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Port: &port}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.1.300"}}},
	}
	cfg := backendtest.NodeA()
	cfg.Families = []model.Family{model.IPv4}
	node := compile.ResolveNode(cfg, nil, backendtest.NodeAddrs(), nil)
	_, errs := compile.Service(svc, []*discoveryv1.EndpointSlice{slice}, node)
	web := model.ServiceName{Namespace: "ns", Name: "web"}
	want := []struct {
		problem compile.Problem
		text    string
	}{
		{
			compile.Problem{Kind: compile.KindEndpointSlice, Service: web, Slice: "web-1", Field: "endpoints[0].addresses[0]", Value: "10.244.1.300", Reason: "is not a valid IPv4 address"},
			`endpointslice ns/web-1: endpoints[0].addresses[0]: "10.244.1.300" is not a valid IPv4 address`,
		},
		{
			compile.Problem{Kind: compile.KindService, Service: web, Field: "spec.ports[0].port", Value: int32(70000), Reason: "is out of range 1-65535"},
			`service ns/web: spec.ports[0].port: "70000" is out of range 1-65535`,
		},
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d problems (%v), want %d", len(errs), errs, len(want))
	}
	for i, err := range errs {
		var p *compile.Problem
		if !errors.As(err, &p) {
			t.Errorf("problem %d (%v) is a %T, not a *compile.Problem", i, err, err)
			continue
		}
		if *p != want[i].problem {
			t.Errorf("problem %d = %#v, want %#v", i, *p, want[i].problem)
		}
		if err.Error() != want[i].text {
			t.Errorf("problem %d reads %q, want %q", i, err.Error(), want[i].text)
		}
	}
}

// TestSchedulerAnnotation checks portico.dev/ipvs-scheduler: a known scheduler goes into
// every port of both families; an unknown one is one problem naming the annotation and
// the value, and the ports get the default ("").
func TestSchedulerAnnotation(t *testing.T) {
	cfg := backendtest.NodeA()
	cfg.Families = []model.Family{model.IPv4, model.IPv6}
	node := compile.ResolveNode(cfg, nil, backendtest.NodeAddrs(), nil)
	for _, tc := range []struct{ value, want, problem string }{
		{"sh", "sh", ""},
		{" mh ", "mh", ""},
		{"fastest", "", `service ns/web: metadata.annotations[portico.dev/ipvs-scheduler]: "fastest" is not an IPVS scheduler`},
	} {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", Annotations: map[string]string{compile.SchedulerAnnotation: tc.value}},
			Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10", "fd00:10:96::10"},
				IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol},
				Ports:      []corev1.ServicePort{{Name: "a", Protocol: corev1.ProtocolTCP, Port: 80}, {Name: "b", Protocol: corev1.ProtocolUDP, Port: 53}},
			},
		}
		res, errs := compile.Service(svc, nil, node)
		n := 0
		for _, ports := range res.Ports {
			for _, sp := range ports {
				n++
				if sp.Scheduler != tc.want {
					t.Errorf("%q: port %s has scheduler %q, want %q", tc.value, sp.Name, sp.Scheduler, tc.want)
				}
			}
		}
		if n != 4 {
			t.Errorf("%q: %d ports compiled, want 4", tc.value, n)
		}
		switch {
		case tc.problem == "" && len(errs) > 0:
			t.Errorf("%q: problems %v, want none", tc.value, errs)
		case tc.problem != "" && (len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), tc.problem)):
			t.Errorf("%q: problems %v, want one starting %q", tc.value, errs, tc.problem)
		}
	}
}
