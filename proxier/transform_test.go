package proxier

import (
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/model"
	"github.com/portico-dev/portico/proxier/compile"
)

var (
	managed = []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}}
	owners  = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Thing", Name: "owner", UID: "1"}}
)

func transformed[T any](t *testing.T, obj T) T {
	t.Helper()
	out, err := stripUnused(obj)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := out.(T)
	if !ok {
		t.Fatalf("stripUnused returned %T, want %T", out, obj)
	}
	return got
}

func TestStripService(t *testing.T) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web", Namespace: "default", ResourceVersion: "7", UID: "0e4f7c3a-8d2b-4c1e-9f6a-5b3d2e1c0a9f",
			Labels: map[string]string{"app": "web", compile.LabelServiceProxyName: "portico"},
			Annotations: map[string]string{
				"kubectl.kubernetes.io/last-applied-configuration": "{}",
				compile.SchedulerAnnotation:                        "sh",
			},
			ManagedFields:   managed,
			OwnerReferences: owners,
		},
		Spec: corev1.ServiceSpec{
			Type:       corev1.ServiceTypeLoadBalancer,
			Selector:   map[string]string{"app": "web"},
			ClusterIP:  "10.96.0.10",
			ClusterIPs: []string{"10.96.0.10", "fd00:10:96::10"},
			Ports: []corev1.ServicePort{{
				Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, NodePort: 30080,
				TargetPort: intstr.FromString("web"), AppProtocol: ptr.To("http"),
			}},
			ExternalIPs:                   []string{"192.0.2.7"},
			LoadBalancerSourceRanges:      []string{"198.51.100.0/24"},
			LoadBalancerIP:                "192.0.2.1",
			ExternalTrafficPolicy:         corev1.ServiceExternalTrafficPolicyLocal,
			InternalTrafficPolicy:         ptr.To(corev1.ServiceInternalTrafficPolicyLocal),
			HealthCheckNodePort:           32000,
			SessionAffinity:               corev1.ServiceAffinityClientIP,
			SessionAffinityConfig:         &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](60)}},
			IPFamilies:                    []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol},
			IPFamilyPolicy:                ptr.To(corev1.IPFamilyPolicyPreferDualStack),
			PublishNotReadyAddresses:      true,
			AllocateLoadBalancerNodePorts: ptr.To(true),
			LoadBalancerClass:             ptr.To("example.com/lb"),
			TrafficDistribution:           ptr.To(corev1.ServiceTrafficDistributionPreferClose),
		},
		Status: corev1.ServiceStatus{
			LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "192.0.2.1"}}},
			Conditions:   []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue}},
		},
	}
	// What the compiler reads, and nothing else: the identity, the label and the
	// annotation portico reads, the spec's fields it reads and the load balancer ingress.
	want := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web", Namespace: "default", ResourceVersion: "7",
			Labels:      map[string]string{compile.LabelServiceProxyName: "portico"},
			Annotations: map[string]string{compile.SchedulerAnnotation: "sh"},
		},
		Spec: corev1.ServiceSpec{
			Type:                     corev1.ServiceTypeLoadBalancer,
			ClusterIP:                "10.96.0.10",
			ClusterIPs:               []string{"10.96.0.10", "fd00:10:96::10"},
			Ports:                    []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, NodePort: 30080}},
			ExternalIPs:              []string{"192.0.2.7"},
			LoadBalancerSourceRanges: []string{"198.51.100.0/24"},
			ExternalTrafficPolicy:    corev1.ServiceExternalTrafficPolicyLocal,
			InternalTrafficPolicy:    ptr.To(corev1.ServiceInternalTrafficPolicyLocal),
			HealthCheckNodePort:      32000,
			SessionAffinity:          corev1.ServiceAffinityClientIP,
			SessionAffinityConfig:    &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](60)}},
		},
		Status: corev1.ServiceStatus{
			LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "192.0.2.1"}}},
		},
	}

	got := transformed(t, any(svc)).(*serviceRecord)
	if !apiequality.Semantic.DeepEqual(got.service(), want) {
		t.Errorf("stripped Service:\n%+v\nwant\n%+v", got.service(), want)
	}
	if got.uid.UID() != svc.UID {
		t.Errorf("UID %q, want %q", got.uid.UID(), svc.UID)
	}
	if got.key() != (model.ServiceName{Namespace: "default", Name: "web"}) {
		t.Errorf("key %v, want default/web", got.key())
	}
	if again := transformed(t, any(got)); again != any(got) {
		t.Error("the transform does not accept its own output unchanged")
	}
	key, err := cache.MetaNamespaceKeyFunc(got)
	if err != nil || key != "default/web" {
		t.Errorf("store key %q (%v), want default/web", key, err)
	}
	c, ok := got.DeepCopyObject().(*serviceRecord)
	if !ok || !apiequality.Semantic.DeepEqual(c.service(), got.service()) {
		t.Fatalf("DeepCopyObject returned %#v", c)
	}
	if &c.ports[0] == &got.ports[0] || &c.rare.clusterIPs[0] == &got.rare.clusterIPs[0] || &c.rare.ingress[0] == &got.rare.ingress[0] {
		t.Error("DeepCopyObject shares the record's arrays")
	}
}

// TestStripServiceCommonCase checks that a plain ClusterIP Service keeps nothing beside
// its inline fields: the clusterIPs list that repeats clusterIP is a bit, and enumerated
// values are shared by every record.
func TestStripServiceCommonCase(t *testing.T) {
	plain := func(name string) *corev1.Service {
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": name}},
			Spec: corev1.ServiceSpec{
				Type: corev1.ServiceType(strings.Clone("ClusterIP")), ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
				SessionAffinity:       corev1.ServiceAffinity(strings.Clone("None")),
				InternalTrafficPolicy: ptr.To(corev1.ServiceInternalTrafficPolicy(strings.Clone("Cluster"))),
				Ports:                 []corev1.ServicePort{{Protocol: corev1.Protocol(strings.Clone("TCP")), Port: 80}},
			},
		}
	}
	a, b := compactService(plain("a")), compactService(plain("b"))
	if a.rare != nil {
		t.Errorf("a plain Service keeps rare fields: %+v", *a.rare)
	}
	if got := a.service().Spec.ClusterIPs; !slices.Equal(got, []string{"10.96.0.10"}) {
		t.Errorf("clusterIPs %q, want [10.96.0.10]", got)
	}
	if unsafe.StringData(string(a.typ)) != unsafe.StringData(string(b.typ)) ||
		unsafe.StringData(string(a.sessionAffinity)) != unsafe.StringData(string(b.sessionAffinity)) ||
		unsafe.StringData(string(a.ports[0].protocol)) != unsafe.StringData(string(b.ports[0].protocol)) ||
		a.internalPolicy != b.internalPolicy {
		t.Error("the enumerated values of two records are not shared")
	}
	// Without clusterIPs (an object written before dual-stack) none is made up.
	old := plain("old")
	old.Spec.ClusterIPs = nil
	if got := compactService(old).service().Spec.ClusterIPs; got != nil {
		t.Errorf("clusterIPs %q, want none", got)
	}
}

// TestServiceRecordCompilesAlike compiles the every-kind scenario, with the fields the
// fixtures leave unset added to some Services, once from the typed objects and once from
// what the cache records give back: the model and the problems must be the same, so the
// records keep every field the compiler reads.
func TestServiceRecordCompilesAlike(t *testing.T) {
	objs, err := backendtest.LoadObjects(backendtest.ObjectFiles...)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range objs.Services {
		switch i % 3 {
		case 0:
			metav1.SetMetaDataAnnotation(&s.ObjectMeta, compile.SchedulerAnnotation, "sh")
		case 1:
			metav1.SetMetaDataAnnotation(&s.ObjectMeta, compile.SchedulerAnnotation, "no-such-scheduler")
		}
	}
	typed := compileText(t, objs)
	for i, s := range objs.Services {
		objs.Services[i] = compactService(s).service()
	}
	for i, s := range objs.EndpointSlices {
		r := compactSlice(s)
		objs.EndpointSlices[i] = r.slice()
		// The cache finds a slice's Service by the name the record keeps.
		objs.EndpointSlices[i].Labels = map[string]string{discoveryv1.LabelServiceName: r.service}
	}
	if got := compileText(t, objs); got != typed {
		t.Errorf("compiled from the records:\n%s\nfrom the typed objects:\n%s", got, typed)
	}
}

// compileText compiles every Service of objs for node-a and returns the model and the
// problems as text.
func compileText(t *testing.T, objs *backendtest.Objects) string {
	t.Helper()
	state, problems := backendtest.CompileObjects(backendtest.NodeA(), objs)
	var out strings.Builder
	if err := state.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		fmt.Fprintln(&out, "problem:", p)
	}
	return out.String()
}

func TestStripEndpointSlice(t *testing.T) {
	trigger := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Format(time.RFC3339Nano)
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-1", Namespace: "default",
			Labels:          map[string]string{discoveryv1.LabelServiceName: "web"},
			Annotations:     map[string]string{TriggerTimeAnnotation: trigger, "other": "x"},
			ManagedFields:   managed,
			OwnerReferences: owners,
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:          []string{"10.244.1.10"},
			Conditions:         discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
			Hostname:           ptr.To("web-0"),
			TargetRef:          &corev1.ObjectReference{Kind: "Pod", Name: "web-0"},
			DeprecatedTopology: map[string]string{"kubernetes.io/hostname": "node-a"},
			NodeName:           ptr.To("node-a"),
			Zone:               ptr.To("zone-a"),
			Hints:              &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "zone-a"}}},
		}},
	}
	want := slice.DeepCopy()
	want.Labels, want.Annotations = nil, nil
	want.ManagedFields, want.OwnerReferences = nil, nil
	want.Endpoints[0].Hostname, want.Endpoints[0].TargetRef, want.Endpoints[0].DeprecatedTopology = nil, nil, nil

	got := transformed(t, any(slice)).(*sliceRecord)
	if !apiequality.Semantic.DeepEqual(got.slice(), want) {
		t.Errorf("stripped EndpointSlice:\n%+v\nwant\n%+v", got.slice(), want)
	}
	if got.service != "web" {
		t.Errorf("service = %q, want web", got.service)
	}
	if at, _ := time.Parse(time.RFC3339Nano, trigger); !got.trigger.Equal(at) {
		t.Errorf("trigger = %v, want %v", got.trigger, at)
	}
	if again := transformed(t, any(got)); again != any(got) {
		t.Error("the transform does not accept its own output unchanged")
	}

	// Without the trigger-time annotation (or with a bad one) the trigger time is zero.
	for _, ann := range []map[string]string{{"other": "x"}, {TriggerTimeAnnotation: "yesterday"}} {
		s := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Annotations: ann}}
		if got := transformed(t, any(s)).(*sliceRecord); !got.trigger.IsZero() {
			t.Errorf("annotations %v: trigger %v, want zero", ann, got.trigger)
		}
	}
}

func TestCompactSlicePacksAddresses(t *testing.T) {
	v4, v6 := discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6
	for _, c := range []struct {
		name     string
		typ      discoveryv1.AddressType
		addrs    [][]string
		packedTo int // bytes when packed, -1 when kept as text
	}{
		{"IPv4", v4, [][]string{{"10.0.0.1"}, {"10.0.0.22", "10.0.0.3"}, {}, {"10.0.0.5"}}, 16},
		{"IPv6", v6, [][]string{{"fd00::4"}, {"fd00::1:5", "2001:db8::"}}, 48},
		{"no type", "", [][]string{{"10.0.0.1"}, {"fd00::4"}}, -1},
		{"FQDN", discoveryv1.AddressTypeFQDN, [][]string{{"a.example"}}, -1},
		{"invalid IPv4", v4, [][]string{{"10.0.0.1"}, {"10.0.0.300"}}, -1},
		{"IPv6 in an IPv4 slice", v4, [][]string{{"10.0.0.1"}, {"fd00::4"}}, -1},
		{"IPv4 in an IPv6 slice", v6, [][]string{{"10.0.0.1"}}, -1},
		{"non-canonical IPv6", v6, [][]string{{"fd00::4"}, {"FD00:0::5"}}, -1},
		{"leading zeros", v4, [][]string{{"10.0.0.01"}}, -1},
		{"zoned IPv6", v6, [][]string{{"fe80::1%eth0"}}, -1},
		{"IPv4-mapped IPv6", v6, [][]string{{"::ffff:10.0.0.1"}}, 16},
	} {
		t.Run(c.name, func(t *testing.T) {
			slice := &discoveryv1.EndpointSlice{AddressType: c.typ}
			for _, a := range c.addrs {
				slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: a})
			}
			got := transformed(t, any(slice)).(*sliceRecord)
			if n := len(slice.Endpoints); len(got.endpoints) != n || cap(got.endpoints) != n {
				t.Errorf("endpoints len %d cap %d, want exactly %d", len(got.endpoints), cap(got.endpoints), n)
			}
			switch {
			case c.packedTo >= 0 && (got.addrs.packed == nil || len(got.addrs.packed) != c.packedTo || got.addrs.texts != nil):
				t.Errorf("addresses %+v, want %d packed bytes", got.addrs, c.packedTo)
			case c.packedTo < 0 && got.addrs.packed != nil:
				t.Errorf("addresses packed (%d bytes), want them kept as text", len(got.addrs.packed))
			}
			for _, typed := range []*discoveryv1.EndpointSlice{got.slice(), got.DeepCopyObject().(*sliceRecord).slice()} {
				for i, ep := range slice.Endpoints {
					if g := typed.Endpoints[i].Addresses; !slices.Equal(g, ep.Addresses) || cap(g) != len(g) {
						t.Errorf("endpoint %d: addresses %q (cap %d), want %q", i, g, cap(g), ep.Addresses)
					}
				}
				// Appending to one endpoint's addresses must not overwrite the next one's.
				if len(typed.Endpoints) > 1 {
					want := slices.Clone(typed.Endpoints[1].Addresses)
					_ = append(typed.Endpoints[0].Addresses, "x")
					if !slices.Equal(typed.Endpoints[1].Addresses, want) {
						t.Error("endpoint address arrays overlap")
					}
				}
			}
		})
	}
}

func TestStripNode(t *testing.T) {
	deleted := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:              "node-a",
			Labels:            map[string]string{corev1.LabelTopologyZone: "zone-a"},
			Annotations:       map[string]string{"node.alpha.kubernetes.io/ttl": "0"},
			ManagedFields:     managed,
			OwnerReferences:   owners,
			DeletionTimestamp: &deleted,
		},
		Spec: corev1.NodeSpec{
			PodCIDR:       "10.244.1.0/24",
			PodCIDRs:      []string{"10.244.1.0/24", "fd00:244:1::/64"},
			ProviderID:    "kind://node-a",
			Unschedulable: true,
			Taints:        []corev1.Taint{{Key: "ToBeDeletedByClusterAutoscaler", Effect: corev1.TaintEffectNoSchedule}},
		},
		Status: corev1.NodeStatus{
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.50.10"}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			NodeInfo:   corev1.NodeSystemInfo{KubeletVersion: "v1.37.2"},
			Images:     []corev1.ContainerImage{{Names: []string{"busybox"}}},
		},
	}
	want := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:              "node-a",
			Labels:            map[string]string{corev1.LabelTopologyZone: "zone-a"},
			DeletionTimestamp: &deleted,
		},
		Spec: corev1.NodeSpec{
			PodCIDR:  "10.244.1.0/24",
			PodCIDRs: []string{"10.244.1.0/24", "fd00:244:1::/64"},
			Taints:   []corev1.Taint{{Key: "ToBeDeletedByClusterAutoscaler", Effect: corev1.TaintEffectNoSchedule}},
		},
		Status: corev1.NodeStatus{
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.50.10"}},
		},
	}
	if got := transformed(t, node); !apiequality.Semantic.DeepEqual(got, want) {
		t.Errorf("stripped Node:\n%+v\nwant\n%+v", got, want)
	}
}

func TestStripOtherObjects(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Annotations: map[string]string{"a": "b"}, ManagedFields: managed}}
	want := pod.DeepCopy()
	if got := transformed(t, pod); !apiequality.Semantic.DeepEqual(got, want) {
		t.Errorf("a Pod was changed: %+v", got)
	}
}

func TestServiceUnchanged(t *testing.T) {
	base := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.ServiceSpec{ClusterIP: "10.96.0.10", Ports: []corev1.ServicePort{{Port: 80}}},
	}
	for _, tc := range []struct {
		name   string
		change func(*corev1.Service)
		want   bool
	}{
		{"identical", func(*corev1.Service) {}, true},
		{"resource version", func(s *corev1.Service) { s.ResourceVersion = "8" }, true},
		{"annotation", func(s *corev1.Service) { s.Annotations = map[string]string{"a": "b"} }, true},
		{"selector", func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": "other"} }, true},
		{"target port", func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromInt32(8080) }, true},
		{"scheduler annotation", func(s *corev1.Service) {
			s.Annotations = map[string]string{compile.SchedulerAnnotation: "sh"}
		}, false},
		{"external IPs", func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"192.0.2.7"} }, false},
		{"port", func(s *corev1.Service) { s.Spec.Ports[0].Port = 81 }, false},
		{"type", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeExternalName }, false},
		{"label", func(s *corev1.Service) { s.Labels["service.kubernetes.io/service-proxy-name"] = "other" }, false},
		{"load balancer status", func(s *corev1.Service) {
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.1"}}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := base.DeepCopy()
			tc.change(next)
			if got := serviceUnchanged(compactService(base), compactService(next)); got != tc.want {
				t.Errorf("serviceUnchanged = %t, want %t", got, tc.want)
			}
			if r := compactService(next); !serviceUnchanged(r, r) {
				t.Error("serviceUnchanged(r, r) = false (a resync), want true")
			}
		})
	}
}

func TestNodeUnchanged(t *testing.T) {
	base := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-a", Labels: map[string]string{corev1.LabelTopologyZone: "zone-a"}},
		Spec:       corev1.NodeSpec{PodCIDRs: []string{"10.244.1.0/24"}},
		Status: corev1.NodeStatus{
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.50.10"}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}
	now := metav1.Now()
	for _, tc := range []struct {
		name   string
		change func(*corev1.Node)
		want   bool
	}{
		{"identical", func(*corev1.Node) {}, true},
		{"heartbeat after the transform", func(n *corev1.Node) {
			n.Status.Conditions[0].LastHeartbeatTime = now
			n.Annotations = map[string]string{"a": "b"}
		}, true},
		{"zone label", func(n *corev1.Node) { n.Labels[corev1.LabelTopologyZone] = "zone-b" }, false},
		{"address", func(n *corev1.Node) { n.Status.Addresses[0].Address = "192.168.50.11" }, false},
		{"pod CIDRs", func(n *corev1.Node) { n.Spec.PodCIDRs = append(n.Spec.PodCIDRs, "fd00:244:1::/64") }, false},
		{"taint", func(n *corev1.Node) { n.Spec.Taints = []corev1.Taint{{Key: "ToBeDeletedByClusterAutoscaler"}} }, false},
		{"deletion", func(n *corev1.Node) { n.DeletionTimestamp = &now }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Both objects go through the transform, as in the informer.
			old := transformed(t, base.DeepCopy())
			next := base.DeepCopy()
			tc.change(next)
			next = transformed(t, next)
			if got := nodeUnchanged(old, next); got != tc.want {
				t.Errorf("nodeUnchanged = %t, want %t", got, tc.want)
			}
		})
	}
}

func TestCompactEndpointsShareValues(t *testing.T) {
	node, zone, yes := "node-a", "zone-a", true
	mk := func() discoveryv1.Endpoint {
		n, z, r := node, zone, yes
		return discoveryv1.Endpoint{Addresses: []string{"10.0.0.1"}, NodeName: &n, Zone: &z,
			Conditions: discoveryv1.EndpointConditions{Ready: &r}}
	}
	slice := &discoveryv1.EndpointSlice{Endpoints: []discoveryv1.Endpoint{mk(), mk()}}
	got := transformed(t, any(slice)).(*sliceRecord).slice()
	a, b := got.Endpoints[0], got.Endpoints[1]
	if a.NodeName != b.NodeName || a.Zone != b.Zone || a.Conditions.Ready != b.Conditions.Ready {
		t.Error("equal node names, zones and conditions are not shared between endpoints")
	}
	if *a.NodeName != node || *a.Zone != zone || !*a.Conditions.Ready || a.Conditions.Serving != nil {
		t.Errorf("values changed by compaction: %+v", a)
	}
}

func TestSliceRecordConditionsRoundTrip(t *testing.T) {
	values := []*bool{nil, ptr.To(true), ptr.To(false)}
	show := func(b *bool) string {
		if b == nil {
			return "nil"
		}
		return strconv.FormatBool(*b)
	}
	for _, r := range values {
		for _, s := range values {
			for _, term := range values {
				in := discoveryv1.EndpointConditions{Ready: r, Serving: s, Terminating: term}
				slice := &discoveryv1.EndpointSlice{Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}, Conditions: in}}}
				got := compactSlice(slice).slice().Endpoints[0].Conditions
				for _, c := range []struct {
					name      string
					got, want *bool
				}{{"ready", got.Ready, r}, {"serving", got.Serving, s}, {"terminating", got.Terminating, term}} {
					if show(c.got) != show(c.want) {
						t.Errorf("%s: %s after the record, want %s (in: %+v)", c.name, show(c.got), show(c.want), in)
					}
				}
			}
		}
	}
}

func TestSliceRecordKeys(t *testing.T) {
	r := compactSlice(&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-1",
		Labels: map[string]string{discoveryv1.LabelServiceName: "web"}}})
	key, err := cache.MetaNamespaceKeyFunc(r)
	if err != nil || key != "default/web-1" {
		t.Errorf("store key %q (%v), want default/web-1", key, err)
	}
	if svc, ok := serviceOf(r); !ok || svc != (model.ServiceName{Namespace: "default", Name: "web"}) {
		t.Errorf("service %v (%v), want default/web", svc, ok)
	}
	if c, ok := r.DeepCopyObject().(*sliceRecord); !ok || c == r || c.name != r.name {
		t.Errorf("DeepCopyObject returned %#v", c)
	}
}

// TestServiceRecordFootprint decodes Services shaped like the bench's (a ClusterIP, one
// TCP port, the fields the API server defaults) from their protobuf encoding, as the
// informer does, and keeps their records: each must hold well under the ~650 bytes in 12
// heap objects a record holding the stripped ServiceSpec kept.
func TestServiceRecordFootprint(t *testing.T) {
	const n = 5000
	wire := make([][]byte, n)
	for i := range wire {
		ip := fmt.Sprintf("10.96.%d.%d", i/250, i%250)
		s := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{
				Name: fmt.Sprintf("svc-%05d", i), Namespace: "bench", ResourceVersion: strconv.Itoa(100000 + i),
				UID: "0e4f7c3a-8d2b-4c1e-9f6a-5b3d2e1c0a9f", Labels: map[string]string{"app": "x"},
			},
			Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeClusterIP, ClusterIP: ip, ClusterIPs: []string{ip},
				Ports:           []corev1.ServicePort{{Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}},
				SessionAffinity: corev1.ServiceAffinityNone, Selector: map[string]string{"app": "x"},
				IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol}, IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicySingleStack),
				InternalTrafficPolicy: ptr.To(corev1.ServiceInternalTrafficPolicyCluster),
			},
		}
		b, err := s.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		wire[i] = b
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	records := make([]*serviceRecord, n)
	for i, b := range wire {
		s := &corev1.Service{}
		if err := s.Unmarshal(b); err != nil {
			t.Fatal(err)
		}
		records[i] = compactService(s)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(wire)
	runtime.KeepAlive(records)
	bytes := int64(after.HeapAlloc-before.HeapAlloc)/n - 8 // less the records slice
	objects := int64(after.HeapObjects-before.HeapObjects) / n
	t.Logf("a Service record keeps %d bytes in %d heap objects", bytes, objects)
	if bytes > 350 || objects > 6 {
		t.Errorf("a Service record keeps %d bytes in %d heap objects, want at most 350 in 6", bytes, objects)
	}
}
