package compile

import (
	"fmt"
	"net/netip"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/portico-dev/portico/model"
)

// benchObjects returns n ClusterIP Services with one EndpointSlice of e endpoints each.
func benchObjects(n, e int) (map[model.ServiceName]*corev1.Service, map[model.ServiceName][]*discoveryv1.EndpointSlice) {
	svcs := map[model.ServiceName]*corev1.Service{}
	slices := map[model.ServiceName][]*discoveryv1.EndpointSlice{}
	ready, node, port, proto := true, "node-b", int32(8080), corev1.ProtocolTCP
	for i := range n {
		name := model.ServiceName{Namespace: "bench", Name: fmt.Sprintf("svc-%05d", i)}
		ip := netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}).String()
		svcs[name] = &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: name.Namespace, Name: name.Name},
			Spec: corev1.ServiceSpec{ClusterIP: ip, ClusterIPs: []string{ip},
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: proto, TargetPort: intstr.FromInt32(port)}}},
		}
		s := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: name.Namespace, Name: name.Name + "-1"},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: &port, Protocol: &proto}},
		}
		for j := range e {
			a := netip.AddrFrom4([4]byte{10, byte(240 + i>>14), byte(i >> 6), byte(i<<2 | j>>3)}).String()
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, NodeName: &node,
				Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
		}
		slices[name] = []*discoveryv1.EndpointSlice{s}
	}
	return svcs, slices
}

func ptr[T any](v T) *T { return &v }

// benchInput returns 10,000 Services × 10 endpoints: their names, a dual-stack node and
// the getter a Compiler reads them through.
func benchInput() ([]model.ServiceName, NodeInfo, func(model.ServiceName) (*corev1.Service, []*discoveryv1.EndpointSlice)) {
	svcs, slices := benchObjects(10000, 10)
	names := make([]model.ServiceName, 0, len(svcs))
	for n := range svcs {
		names = append(names, n)
	}
	node := ResolveNode(NodeConfig{Name: "node-a", Families: []model.Family{model.IPv4, model.IPv6}}, nil, nil, nil)
	get := func(n model.ServiceName) (*corev1.Service, []*discoveryv1.EndpointSlice) { return svcs[n], slices[n] }
	return names, node, get
}

// BenchmarkCompileAll compiles 10,000 Services × 10 endpoints from scratch (a full
// recompile, as after a node change or at start).
func BenchmarkCompileAll(b *testing.B) {
	names, node, get := benchInput()
	b.ResetTimer()
	for range b.N {
		NewCompiler().Update(node, names, get)
	}
}

// BenchmarkCompileOne recompiles one Service over a compiled state of 10,000 (the
// one-endpoint-change path).
func BenchmarkCompileOne(b *testing.B) {
	names, node, get := benchInput()
	c := NewCompiler()
	c.Update(node, names, get)
	b.ResetTimer()
	for i := range b.N {
		c.Update(node, names[i%len(names):i%len(names)+1], get)
	}
}

// TestCompileAllInParallel compiles more Services than parallelFrom: each result must be
// what compiling that Service alone gives, in the order of the names, and a Service the
// source lacks must come out as absent.
func TestCompileAllInParallel(t *testing.T) {
	svcs, slices := benchObjects(parallelFrom+100, 3)
	names := []model.ServiceName{{Namespace: "bench", Name: "gone"}}
	for n := range svcs {
		names = append(names, n)
	}
	node := ResolveNode(NodeConfig{Name: "node-a", Families: []model.Family{model.IPv4}}, nil, nil, nil)
	get := func(n model.ServiceName) (*corev1.Service, []*discoveryv1.EndpointSlice) { return svcs[n], slices[n] }
	got := compileAll(node, names, get)
	if got[0].exists {
		t.Errorf("a Service the source lacks compiled: %+v", got[0])
	}
	for i, n := range names[1:] {
		res, errs := Service(svcs[n], slices[n], node)
		if want := (compiled{exists: true, res: res, errs: errs}); !reflect.DeepEqual(got[i+1], want) {
			t.Fatalf("%s: compiled in parallel differs from alone", n)
		}
	}
}
