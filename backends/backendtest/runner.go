package backendtest

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/e2e/harness/netns"
	"github.com/portico-dev/portico/model"
	"github.com/portico-dev/portico/proxier/compile"
)

// Subject is a backend under test of RunFlows.
type Subject struct {
	// Mode is the backend's proxy mode: a flow the table marks unsupported in that mode
	// (Flow.Unsupported) must fail, with the reason logged.
	Mode string
	// Tweak adapts the compile settings to the backend's mode (nil: none); the table's
	// configuration is applied first.
	Tweak func(*compile.NodeConfig)
	// New returns a backend that programs a fake kernel, and a function that returns a
	// tracer over what the fake holds for a family when it is called.
	New func(t *testing.T, host Host) (backends.Backend, func(model.Family) Tracer)
}

// RunFlows runs every flow of the packet-flow table against a backend through its packet
// tracer: for each scenario it compiles the scenario's Services for node-a (addresses
// allocated as the API server would), syncs the backend into its fake kernel and traces
// the first packet of each flow. Health checks are not packet flows and are left to the
// e2e suite.
func RunFlows(t *testing.T, s Subject) {
	table, err := LoadFlows()
	if err != nil {
		t.Fatal(err)
	}
	spec := Topology()
	host := Host{LocalAddrs: NodeAddrs()}
	for i, sc := range table.Scenarios {
		t.Run(sc.Name, func(t *testing.T) {
			w := newWorld(spec, table, sc, i)
			be, tracer := s.New(t, host)
			for _, tbl := range w.compile(s.Tweak).Tables {
				if err := be.Sync(context.Background(), tbl, model.Compare(nil, tbl)); err != nil {
					t.Fatalf("sync %s: %v", tbl.Family(), err)
				}
			}
			for _, f := range sc.Flows {
				t.Run(f.Name, func(t *testing.T) { w.trace(t, tracer, host, f, f.Unsupported[s.Mode]) })
			}
		})
	}
}

// FlowStates compiles every scenario of the packet-flow table for node-a.
func FlowStates(t testing.TB) []*model.State {
	t.Helper()
	table, err := LoadFlows()
	if err != nil {
		t.Fatal(err)
	}
	var out []*model.State
	for i, sc := range table.Scenarios {
		out = append(out, newWorld(Topology(), table, sc, i).compile(nil))
	}
	return out
}

// world is one scenario's objects as the API server would hold them.
type world struct {
	spec     netns.Spec
	config   Config
	cidrs    []netip.Prefix
	services map[string]*corev1.Service
	objs     *Objects
}

// newWorld allocates the scenario's Services (scenario index i keeps their addresses
// apart) and builds their EndpointSlices.
func newWorld(spec netns.Spec, table *FlowTable, sc Scenario, i int) *world {
	w := &world{spec: spec, config: table.Config.Merge(sc.Config), services: map[string]*corev1.Service{}, objs: &Objects{}}
	for _, c := range table.ServiceCIDRs {
		w.cidrs = append(w.cidrs, netip.MustParsePrefix(c))
	}
	w.objs.Nodes = []*corev1.Node{NodeObject(spec, NodeName)}
	for j := range sc.Services {
		s := &sc.Services[j]
		svc := WithIngress(Allocate(s.Object("flows"), i*16+j), s.LoadBalancer)
		w.services[s.Name] = svc
		w.addService(s, svc)
	}
	return w
}

// addService adds what the compiler sees of one Service after its "then".
func (w *world) addService(s *Service, svc *corev1.Service) {
	switch s.Then {
	case "delete":
		return
	case "externalName":
		en := svc.DeepCopy()
		en.Spec = corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com", Ports: svc.Spec.Ports}
		w.objs.Services = append(w.objs.Services, en)
		return
	}
	w.objs.Services = append(w.objs.Services, svc)
	if s.Endpoints == nil {
		return
	}
	for _, f := range svc.Spec.IPFamilies {
		w.objs.EndpointSlices = append(w.objs.EndpointSlices, EndpointSlice(w.spec, svc, netns.Family(f), s.Endpoints))
	}
}

// compile compiles the world for node-a with the scenario's configuration.
func (w *world) compile(tweak func(*compile.NodeConfig)) *model.State {
	cfg := w.config.NodeConfig()
	if tweak != nil {
		tweak(&cfg)
	}
	info := compile.ResolveNode(cfg, w.objs.Nodes[0], NodeAddrs(), w.cidrs)
	var names []model.ServiceName
	for _, s := range w.objs.Services {
		names = append(names, model.ServiceName{Namespace: s.Namespace, Name: s.Name})
	}
	state, _ := compile.NewCompiler().Update(info, names, func(n model.ServiceName) (*corev1.Service, []*discoveryv1.EndpointSlice) {
		return w.objs.Service(n.Namespace, n.Name), w.objs.SlicesFor(n.Namespace, n.Name)
	})
	return state
}

// trace traces flow f and checks the result against its expectation.
func (w *world) trace(t *testing.T, tracer func(model.Family) Tracer, host Host, f Flow, unsupported string) {
	svc := w.services[f.To]
	dst, err := Destination(w.spec, svc, f)
	if err != nil {
		t.Fatal(err)
	}
	src, iface, err := Source(w.spec, f, dst.Addr())
	if err != nil {
		t.Fatal(err)
	}
	proto, err := model.ParseProtocol(f.Protocol())
	if err != nil {
		t.Fatal(err)
	}
	p := Packet{Proto: proto, Src: src, Dst: dst, InIface: iface}
	fam := model.FamilyOf(dst.Addr())
	r, err := tracer(fam).Trace(p)
	if err != nil {
		t.Fatalf("tracing %s: %v", p, err)
	}
	msg := CheckResult(f, ExpectedEndpoints(w.spec, svc, f), host, p, r)
	switch {
	case unsupported != "" && msg == "":
		t.Errorf("%s: the flow passes, but the table marks it unsupported in this mode (%s): remove the mark", p, unsupported)
	case unsupported != "":
		t.Logf("%s: unsupported in this mode, as the table says (%s): %s", p, unsupported, msg)
	case msg != "":
		t.Errorf("%s: %s", p, msg)
	}
}

// CheckResult compares a traced result with a flow's expectation and returns what is
// wrong, or "". A packet accepted unchanged towards an address of node-a counts as
// refused: nothing listens on the frontend ports there.
func CheckResult(f Flow, want []netip.AddrPort, host Host, p Packet, r Result) string {
	switch {
	case f.Expect.Outcome == Refused:
		if r.Verdict == VerdictReject || r.Verdict == VerdictAccept && host.IsLocal(p.Dst.Addr()) {
			return ""
		}
		return fmt.Sprintf("got %s, want refused (a reject, or delivery to node-a where nothing listens)", r)
	case f.Expect.Outcome == Dropped:
		if r.Verdict == VerdictDrop {
			return ""
		}
		return fmt.Sprintf("got %s, want dropped", r)
	}
	if r.Verdict != VerdictDNAT {
		return fmt.Sprintf("got %s, want DNAT to %v", r, want)
	}
	var got []netip.AddrPort
	var problems []string
	for _, tg := range r.Targets {
		got = append(got, tg.Endpoint)
		if f.Peer == PeerNode && !tg.Masquerade || f.Peer == PeerClient && tg.Masquerade {
			problems = append(problems, fmt.Sprintf("%s masqueraded=%t, want peer %s", tg.Endpoint, tg.Masquerade, f.Peer))
		}
	}
	if !slices.Equal(got, want) {
		problems = append(problems, fmt.Sprintf("endpoints %v, want exactly %v", got, want))
	}
	if f.Sticky && !r.Sticky {
		problems = append(problems, "the endpoint choice is not remembered per client (want session affinity)")
	}
	if len(problems) == 0 {
		return ""
	}
	return fmt.Sprintf("got %s: %s", r, strings.Join(problems, "; "))
}

// Allocate gives svc the addresses the API server would: cluster IPs from the flow
// table's Service CIDRs (outside the static band the table's unallocated-address flows
// use), node ports, a health check node port and its load-balancer status. n makes them
// unique among the Services traced together (n < 60,000).
func Allocate(svc *corev1.Service, n int) *corev1.Service {
	svc = svc.DeepCopy()
	for _, f := range svc.Spec.IPFamilies {
		ip := fmt.Sprintf("10.96.%d.%d", 16+n/250, 1+n%250)
		if f == corev1.IPv6Protocol {
			// The same two octets in the last 16 bits: fd00:96::/112 is the range the
			// topology routes to node-a.
			ip = fmt.Sprintf("fd00:96::%x", (16+n/250)<<8|(1+n%250))
		}
		svc.Spec.ClusterIPs = append(svc.Spec.ClusterIPs, ip)
	}
	svc.Spec.ClusterIP = svc.Spec.ClusterIPs[0]
	external := svc.Spec.Type == corev1.ServiceTypeNodePort ||
		svc.Spec.Type == corev1.ServiceTypeLoadBalancer && (svc.Spec.AllocateLoadBalancerNodePorts == nil || *svc.Spec.AllocateLoadBalancerNodePorts)
	for i := range svc.Spec.Ports {
		if external {
			svc.Spec.Ports[i].NodePort = int32(30000 + n*4 + i)
		}
	}
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
		svc.Spec.HealthCheckNodePort = int32(32000 + n)
	}
	return svc
}

// WithIngress returns svc with the load-balancer ingress IPs ips in its status.
func WithIngress(svc *corev1.Service, ips []string) *corev1.Service {
	for _, ip := range ips {
		svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	return svc
}

// NodeObject returns the Node object of a topology node: addresses, pod CIDRs and zone.
func NodeObject(spec netns.Spec, name string) *corev1.Node {
	n := nodeSpec(spec, name)
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			corev1.LabelHostname: name, corev1.LabelTopologyZone: n.Zone,
		}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: n.IPv4.Addr().String()},
			{Type: corev1.NodeInternalIP, Address: n.IPv6.Addr().String()},
		}},
	}
	for _, p := range n.PodCIDRs() {
		node.Spec.PodCIDRs = append(node.Spec.PodCIDRs, p.String())
	}
	return node
}

// NodeConfig returns node-a's compile settings under configuration c (the fields the
// flows depend on; the rest as NodeA).
func (c Config) NodeConfig() compile.NodeConfig {
	cfg := NodeA()
	cfg.MasqueradeAll = c.MasqueradeAll
	var cidrs []netip.Prefix
	for _, s := range strings.Split(c.ClusterCIDR, ",") {
		if p, err := netip.ParsePrefix(strings.TrimSpace(s)); err == nil {
			cidrs = append(cidrs, p.Masked())
		}
	}
	cfg.LocalTraffic = compile.LocalTrafficConfig{Mode: c.DetectLocalMode, ClusterCIDRs: cidrs}
	cfg.NodePorts = compile.NodePortSelector{}
	for _, a := range c.NodePortAddresses {
		switch a {
		case "primary":
			cfg.NodePorts.Primary = true
		case "localhost":
			cfg.NodePorts.Localhost = true
		case "all":
			cfg.NodePorts.All = true
		default:
			cfg.NodePorts.CIDRs = append(cfg.NodePorts.CIDRs, netip.MustParsePrefix(a).Masked())
		}
	}
	return cfg
}
