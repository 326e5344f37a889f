package nftables

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/model"
	"github.com/portico-dev/portico/proxier/compile"
)

// apiGen makes random Services and EndpointSlices within the API's validation rules
// (names, ports, protocols, addresses, conditions), as an API server would store them:
// cluster IPs and NodePorts are unique, load-balancer ingress IPs belong to one Service;
// external IPs may be shared. The property tests feed them through proxier/compile to a
// backend.
type apiGen struct {
	rng       *rand.Rand
	clusterIP int // next cluster IP offset
	nodePort  int // next NodePort
	lbIP      int // next load-balancer ingress IP offset
	names     map[model.ServiceName]bool
}

func newAPIGen(seed uint64) *apiGen {
	return &apiGen{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), clusterIP: 10, nodePort: 30000, lbIP: 1,
		names: map[model.ServiceName]bool{}}
}

const (
	lower  = "abcdefghijklmnopqrstuvwxyz"
	alnum  = lower + "0123456789"
	middle = alnum + "-"
)

// length returns a label length up to limit, the limit itself a third of the time.
func (g *apiGen) length(limit int) int {
	if g.rng.IntN(3) == 0 {
		return limit
	}
	return 1 + g.rng.IntN(limit)
}

func (g *apiGen) pick(chars string) byte { return chars[g.rng.IntN(len(chars))] }

// label returns a DNS label of n characters starting with a character of first.
func (g *apiGen) label(n int, first string) string {
	b := []byte{g.pick(first)}
	for i := 1; i < n; i++ {
		if i == n-1 {
			b = append(b, g.pick(alnum))
		} else {
			b = append(b, g.pick(middle))
		}
	}
	return string(b)
}

// portName returns an IANA_SVC_NAME: 1-15 characters of [-a-z0-9], a letter among them,
// no '-' at either end and no "--".
func (g *apiGen) portName() string {
	n := g.length(15) // IANA_SVC_NAME: at most 15
	b := []byte{g.pick(lower)}
	for i := 1; i < n; i++ {
		c := g.pick(middle)
		if c == '-' && (i == n-1 || b[i-1] == '-') {
			c = g.pick(alnum)
		}
		b = append(b, c)
	}
	return string(b)
}

// serviceName returns a namespace (DNS-1123 label) and a Service name (DNS-1035 label) no
// other Service has.
func (g *apiGen) serviceName() model.ServiceName {
	for {
		n := model.ServiceName{Namespace: g.label(g.length(63), alnum), Name: g.label(g.length(63), lower)}
		if !g.names[n] {
			g.names[n] = true
			return n
		}
	}
}

var (
	protocols  = []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}
	fam4, fam6 = corev1.IPv4Protocol, corev1.IPv6Protocol
)

// service returns a random Service called n.
func (g *apiGen) service(n model.ServiceName) *corev1.Service {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: n.Namespace, Name: n.Name}}
	types := []corev1.ServiceType{corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer}
	if g.rng.IntN(12) == 0 {
		svc.Spec.Type, svc.Spec.ExternalName = corev1.ServiceTypeExternalName, "db.example.com"
		return svc
	}
	svc.Spec.Type = types[g.rng.IntN(len(types))]
	g.families(svc)
	g.ports(svc)
	g.policies(svc)
	g.externalIPs(svc)
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		g.loadBalancer(svc)
	}
	return svc
}

// families sets the IP families and cluster IPs (headless now and then, ClusterIP only).
func (g *apiGen) families(svc *corev1.Service) {
	single, dual := corev1.IPFamilyPolicySingleStack, corev1.IPFamilyPolicyRequireDualStack
	switch g.rng.IntN(3) {
	case 0:
		svc.Spec.IPFamilies, svc.Spec.IPFamilyPolicy = []corev1.IPFamily{fam4}, &single
	case 1:
		svc.Spec.IPFamilies, svc.Spec.IPFamilyPolicy = []corev1.IPFamily{fam6}, &single
	default:
		svc.Spec.IPFamilies, svc.Spec.IPFamilyPolicy = []corev1.IPFamily{fam4, fam6}, &dual
		if g.rng.IntN(2) == 0 {
			svc.Spec.IPFamilies = []corev1.IPFamily{fam6, fam4}
		}
	}
	if svc.Spec.Type == corev1.ServiceTypeClusterIP && g.rng.IntN(15) == 0 {
		svc.Spec.ClusterIP, svc.Spec.ClusterIPs = corev1.ClusterIPNone, []string{corev1.ClusterIPNone}
		return
	}
	g.clusterIP++
	for _, f := range svc.Spec.IPFamilies {
		ip := netip.AddrFrom4([4]byte{10, 96, byte(g.clusterIP >> 8), byte(g.clusterIP)}).String()
		if f == fam6 {
			ip = fmt.Sprintf("fd00:96::%x", g.clusterIP)
		}
		svc.Spec.ClusterIPs = append(svc.Spec.ClusterIPs, ip)
	}
	svc.Spec.ClusterIP = svc.Spec.ClusterIPs[0]
}

// ports sets 1-4 ports, distinct by name and by port and protocol; a Service of one
// port may leave it unnamed.
func (g *apiGen) ports(svc *corev1.Service) {
	n := 1 + g.rng.IntN(4)
	names := map[string]bool{}
	used := map[string]bool{}
	for len(svc.Spec.Ports) < n {
		p := corev1.ServicePort{
			Protocol:   protocols[g.rng.IntN(len(protocols))],
			Port:       int32(1 + g.rng.IntN(65535)),
			TargetPort: intstr.FromInt32(int32(1 + g.rng.IntN(65535))),
		}
		if n > 1 || g.rng.IntN(2) == 0 {
			p.Name = g.portName()
		}
		key := fmt.Sprintf("%d/%s", p.Port, p.Protocol)
		if names[p.Name] || used[key] {
			continue
		}
		names[p.Name], used[key] = true, true
		if svc.Spec.Type != corev1.ServiceTypeClusterIP {
			p.NodePort = int32(g.nodePort)
			g.nodePort++
		}
		svc.Spec.Ports = append(svc.Spec.Ports, p)
	}
}

// policies sets the traffic policies and the session affinity.
func (g *apiGen) policies(svc *corev1.Service) {
	if g.rng.IntN(3) == 0 {
		local := corev1.ServiceInternalTrafficPolicyLocal
		svc.Spec.InternalTrafficPolicy = &local
	}
	if svc.Spec.Type != corev1.ServiceTypeClusterIP {
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
		if g.rng.IntN(2) == 0 {
			svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
				svc.Spec.HealthCheckNodePort = int32(g.nodePort)
				g.nodePort++
			}
		}
	}
	if g.rng.IntN(4) == 0 && svc.Spec.ClusterIP != corev1.ClusterIPNone {
		svc.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		if g.rng.IntN(2) == 0 {
			timeout := int32(1 + g.rng.IntN(86400))
			svc.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &timeout}}
		}
	}
}

// externalIPs sets external IPs from a small pool, so that Services share some.
func (g *apiGen) externalIPs(svc *corev1.Service) {
	if svc.Spec.ClusterIP == corev1.ClusterIPNone || g.rng.IntN(4) != 0 {
		return
	}
	for range 1 + g.rng.IntN(2) {
		ip := fmt.Sprintf("192.168.70.%d", 1+g.rng.IntN(4))
		if g.rng.IntN(2) == 0 {
			ip = fmt.Sprintf("fd00:70::%d", 1+g.rng.IntN(4))
		}
		if !slices.Contains(svc.Spec.ExternalIPs, ip) {
			svc.Spec.ExternalIPs = append(svc.Spec.ExternalIPs, ip)
		}
	}
}

// loadBalancer writes ingress IPs of the Service's own (VIP or Proxy mode) and source
// ranges, nested ones and ones holding an ingress IP among them.
func (g *apiGen) loadBalancer(svc *corev1.Service) {
	modes := []corev1.LoadBalancerIPMode{corev1.LoadBalancerIPModeVIP, corev1.LoadBalancerIPModeProxy}
	for range 1 + g.rng.IntN(3) {
		g.lbIP++
		ip := fmt.Sprintf("192.168.60.%d", g.lbIP%250+1)
		if g.rng.IntN(2) == 0 {
			ip = fmt.Sprintf("fd00:60::%x", g.lbIP)
		}
		ing := corev1.LoadBalancerIngress{IP: ip}
		if g.rng.IntN(3) > 0 {
			ing.IPMode = &modes[g.rng.IntN(2)]
		}
		svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, ing)
	}
	if g.rng.IntN(2) == 0 {
		return
	}
	pool := []string{"192.168.50.0/24", "192.168.50.100/32", "192.168.60.0/24", "10.0.0.0/8", "10.1.0.0/16",
		"0.0.0.0/0", "fd00:50::/64", "fd00:50::100/128", "fd00:60::/64", "::/0"}
	for range 1 + g.rng.IntN(4) {
		r := pool[g.rng.IntN(len(pool))]
		if !slices.Contains(svc.Spec.LoadBalancerSourceRanges, r) {
			svc.Spec.LoadBalancerSourceRanges = append(svc.Spec.LoadBalancerSourceRanges, r)
		}
	}
}

// slices returns 0-2 EndpointSlices per family of svc, with endpoints on node-a and
// elsewhere in every combination of conditions, and topology hints.
func (g *apiGen) slices(svc *corev1.Service) []*discoveryv1.EndpointSlice {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	var out []*discoveryv1.EndpointSlice
	for _, f := range svc.Spec.IPFamilies {
		for i := range g.rng.IntN(3) {
			s := &discoveryv1.EndpointSlice{
				ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace, Name: fmt.Sprintf("%.50s-%s-%d", svc.Name, strings.ToLower(string(f)), i),
					Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name}},
				AddressType: discoveryv1.AddressType(f),
			}
			for _, p := range svc.Spec.Ports {
				port := int32(1 + g.rng.IntN(65535))
				s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: &p.Name, Protocol: &p.Protocol, Port: &port})
			}
			for range g.rng.IntN(6) {
				s.Endpoints = append(s.Endpoints, g.endpoint(f))
			}
			out = append(out, s)
		}
	}
	return out
}

func (g *apiGen) endpoint(f corev1.IPFamily) discoveryv1.Endpoint {
	node, third := "node-a", 1
	if g.rng.IntN(2) == 0 {
		node, third = "node-b", 2
	}
	host := 10 + g.rng.IntN(8)
	addr := fmt.Sprintf("10.244.%d.%d", third, host)
	if f == fam6 {
		addr = fmt.Sprintf("fd00:244:%d::%x", third, host)
	}
	cond := func() *bool {
		switch g.rng.IntN(3) {
		case 0:
			return nil
		case 1:
			v := true
			return &v
		}
		v := false
		return &v
	}
	e := discoveryv1.Endpoint{Addresses: []string{addr}, NodeName: &node,
		Conditions: discoveryv1.EndpointConditions{Ready: cond(), Serving: cond(), Terminating: cond()}}
	if g.rng.IntN(4) == 0 {
		e.Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "zone-" + string(g.pick("ab"))}}}
	}
	return e
}

// world is a cluster's Services and EndpointSlices, compiled incrementally.
type world struct {
	t        testing.TB
	g        *apiGen
	services map[model.ServiceName]*corev1.Service
	slices   map[model.ServiceName][]*discoveryv1.EndpointSlice
	compiler *compile.Compiler
	node     compile.NodeInfo
}

// newWorld makes n random Services for node-a with the settings of variant.
func newWorld(t testing.TB, seed uint64, n int, variant backendtest.NodeVariant) *world {
	t.Helper()
	objs, err := backendtest.LoadObjects()
	if err != nil {
		t.Fatal(err)
	}
	cfg := backendtest.NodeA()
	if variant.Tweak != nil {
		variant.Tweak(&cfg)
	}
	w := &world{t: t, g: newAPIGen(seed), services: map[model.ServiceName]*corev1.Service{},
		slices: map[model.ServiceName][]*discoveryv1.EndpointSlice{}, compiler: compile.NewCompiler(),
		node: compile.ResolveNode(cfg, objs.Nodes[0], backendtest.NodeAddrs(), objs.ServiceCIDRPrefixes())}
	for range n {
		w.add()
	}
	return w
}

func (w *world) add() model.ServiceName {
	n := w.g.serviceName()
	w.services[n] = w.g.service(n)
	w.slices[n] = w.g.slices(w.services[n])
	w.validate(n)
	return n
}

// validate checks the generator: the names and ports of Service n pass the API's
// validation functions.
func (w *world) validate(n model.ServiceName) {
	w.t.Helper()
	svc := w.services[n]
	errs := slices.Concat(validation.IsDNS1123Label(n.Namespace), validation.IsDNS1035Label(n.Name))
	for _, p := range svc.Spec.Ports {
		if p.Name != "" {
			errs = append(errs, validation.IsValidPortName(p.Name)...)
		}
		errs = append(errs, validation.IsValidPortNum(int(p.Port))...)
	}
	for _, s := range w.slices[n] {
		errs = append(errs, validation.IsDNS1123Subdomain(s.Name)...)
	}
	if len(errs) > 0 {
		w.t.Fatalf("the generator made an invalid Service %s: %v", n, errs)
	}
}

// change edits, replaces, removes or adds a few Services and returns their names.
func (w *world) change() []model.ServiceName {
	names := slices.SortedFunc(func(yield func(model.ServiceName) bool) {
		for n := range w.services {
			if !yield(n) {
				return
			}
		}
	}, func(a, b model.ServiceName) int { return strings.Compare(a.String(), b.String()) })
	var dirty []model.ServiceName
	for range 1 + w.g.rng.IntN(5) {
		if len(names) == 0 || w.g.rng.IntN(5) == 0 {
			dirty = append(dirty, w.add())
			continue
		}
		i := w.g.rng.IntN(len(names))
		n := names[i]
		dirty = append(dirty, n)
		switch w.g.rng.IntN(4) {
		case 0:
			delete(w.services, n)
			delete(w.slices, n)
			names = slices.Delete(names, i, i+1)
		case 1:
			w.services[n] = w.g.service(n)
			w.slices[n] = w.g.slices(w.services[n])
		default:
			w.slices[n] = w.g.slices(w.services[n])
		}
	}
	return dirty
}

// compile recompiles the dirty Services (all of them with nil).
func (w *world) compile(dirty []model.ServiceName) *model.State {
	if dirty == nil {
		for n := range w.services {
			dirty = append(dirty, n)
		}
	}
	state, _ := w.compiler.Update(w.node, dirty, func(n model.ServiceName) (*corev1.Service, []*discoveryv1.EndpointSlice) {
		return w.services[n], w.slices[n]
	})
	return state
}
