//go:build e2e

package e2e

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/e2e/harness/env"
	"github.com/portico-dev/portico/e2e/harness/traffic"
)

// The packet-flow table (backends/backendtest/testdata/flows.yaml) is backend-neutral: a
// flow names where a probe starts, which frontend of which Service it targets and what
// must happen. The same table runs here with real packets and, in the unit tests, through
// every backend's packet tracer. Dynamic tests write flows of the same type in Go.

// Flow is one row of the packet-flow table.
type Flow = backendtest.Flow

// HealthCheck is one expected answer of a healthCheckNodePort.
type HealthCheck = backendtest.HealthCheck

// pods returns the expectation that exactly these pods answer.
func pods(names ...string) backendtest.Expect { return backendtest.Expect{Pods: names} }

// refused is the expectation of an immediate refusal.
var refused = backendtest.Expect{Outcome: backendtest.Refused}

// probes per flow kind (backendtest.Prober's).
const (
	probesBalanced = backendtest.ProbesBalanced
	probesRefused  = backendtest.ProbesRefused
	probeTimeout   = backendtest.ProbeTimeout
	dropTimeout    = backendtest.DropTimeout
)

// prober runs flows with real packets in the suite's namespaces.
func prober() backendtest.Prober { return backendtest.Prober{Topo: suite.Topo} }

// runFlow probes one flow and checks its expectation.
func runFlow(ctx context.Context, t *testing.T, svcs map[string]*corev1.Service, f Flow) {
	t.Helper()
	svc := svcs[f.To]
	if f.Protocol() == "SCTP" {
		dst, err := backendtest.Destination(suite.Topo.Spec(), svc, f)
		if err != nil {
			t.Fatal(err)
		}
		checkSCTP(t, f, source(t, f, dst), dst, backendtest.ExpectedEndpoints(suite.Topo.Spec(), svc, f))
		return
	}
	msg, err := prober().Check(ctx, svc, f)
	if err != nil {
		t.Fatal(err)
	}
	if msg != "" {
		t.Error(msg)
	}
}

// resolve returns the address and port a flow targets on the scenario's stored Services.
func resolve(svcs map[string]*corev1.Service, f Flow) (netip.AddrPort, error) {
	return backendtest.Destination(suite.Topo.Spec(), svcs[f.To], f)
}

// Frontends a flow can target (Flow.Via).
const (
	viaClusterIP    = "ClusterIP"
	viaNodePort     = "NodePort"
	viaLoadBalancer = "LoadBalancer"
)

// Peers a flow can require (Flow.Peer).
const (
	peerClient = backendtest.PeerClient
	peerNode   = backendtest.PeerNode
)

// source returns the address a flow's probes are bound to: the client's chosen address,
// a pod's own address; node-a lets the kernel choose.
func source(t *testing.T, f Flow, dst netip.AddrPort) netip.Addr {
	t.Helper()
	src, err := prober().Source(f, dst)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// checkAnswered checks the probes of a flow that expects endpoints.
func checkAnswered(t *testing.T, f Flow, dst netip.AddrPort, st traffic.Stats) {
	t.Helper()
	if msg := prober().Answered(f, dst, st); msg != "" {
		t.Error(msg)
	}
}

// sortedAddrs returns the keys of a set of addresses in order.
func sortedAddrs(m map[netip.Addr]bool) []netip.Addr { return backendtest.SortedAddrs(m) }

// ServiceSetup is one Service of a scenario: the object, its endpoints and its load
// balancer ingress IPs.
type ServiceSetup struct {
	Svc      *corev1.Service
	Backends []env.Backend
	LB       []string
	// TargetPorts maps Service port names to the pods' port they target (default
	// env.ServerPort), e.g. an echo server's port.
	TargetPorts map[string]int32
	// Then is "delete" or "externalName": what happens to the Service once it is
	// programmed (flows keep targeting the ClusterIP it had).
	Then string
}

// Scenario is a set of Services and the flows they must produce.
type Scenario struct {
	Name     string
	Services []ServiceSetup
	Flows    []Flow
	// HealthChecks are the healthCheckNodePort answers the scenario must produce.
	HealthChecks []HealthCheck
}

// fromTable turns a scenario of the packet-flow table into Kubernetes objects.
func fromTable(sc backendtest.Scenario) Scenario {
	out := Scenario{Name: sc.Name, Flows: sc.Flows, HealthChecks: sc.HealthChecks}
	for i := range sc.Services {
		s := &sc.Services[i]
		out.Services = append(out.Services, ServiceSetup{Svc: s.Object(""), Backends: s.Endpoints, LB: s.LoadBalancer, Then: s.Then})
	}
	return out
}

// apply creates a scenario's objects in its own namespace and waits until portico has
// programmed them; it returns the stored Services by name.
func apply(ctx context.Context, t *testing.T, sc Scenario) map[string]*corev1.Service {
	t.Helper()
	ns := namespaceFor(sc.Name)
	since := time.Now()
	svcs := map[string]*corev1.Service{}
	t.Cleanup(func() { removeAll(t, ns, svcs) })
	for _, s := range sc.Services {
		svcs[s.Svc.Name] = applyOne(ctx, t, ns, s)
	}
	waitProgrammed(ctx, t, since)
	applyThen(ctx, t, ns, sc.Services)
	return svcs
}

// applyOne creates one Service, its load-balancer status and its EndpointSlices.
func applyOne(ctx context.Context, t *testing.T, ns string, s ServiceSetup) *corev1.Service {
	t.Helper()
	in := s.Svc.DeepCopy()
	in.Namespace = ns
	got, err := suite.ApplyService(ctx, in)
	if err != nil {
		t.Fatalf("creating Service %s: %v", in.Name, err)
	}
	if len(s.LB) > 0 {
		if got, err = suite.SetLoadBalancerIngress(ctx, got, s.LB...); err != nil {
			t.Fatalf("setting the load balancer status of %s: %v", in.Name, err)
		}
	}
	if s.Backends != nil {
		if err := suite.SetEndpointsPorts(ctx, got, s.Backends, s.TargetPorts); err != nil {
			t.Fatalf("writing EndpointSlices of %s: %v", in.Name, err)
		}
	}
	return got
}

// applyThen deletes the Services marked "delete" and turns those marked "externalName"
// into ExternalName Services, then waits until portico has programmed that.
func applyThen(ctx context.Context, t *testing.T, ns string, setups []ServiceSetup) {
	t.Helper()
	since := time.Now()
	changed := false
	for _, s := range setups {
		switch s.Then {
		case "":
			continue
		case "delete":
			if err := suite.DeleteService(ctx, ns, s.Svc.Name); err != nil {
				t.Fatalf("deleting Service %s: %v", s.Svc.Name, err)
			}
		case "externalName":
			ext := &corev1.Service{}
			ext.Name, ext.Namespace = s.Svc.Name, ns
			// No clusterIP, ipFamilies or ipFamilyPolicy: the API requires that of an
			// ExternalName Service and releases the cluster IPs.
			ext.Spec = corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "www.example.com", Ports: s.Svc.Spec.Ports}
			if _, err := suite.ApplyService(ctx, ext); err != nil {
				t.Fatalf("changing Service %s to ExternalName: %v", s.Svc.Name, err)
			}
		default:
			t.Fatalf("Service %s: unknown then %q", s.Svc.Name, s.Then)
		}
		changed = true
	}
	if changed {
		waitProgrammed(ctx, t, since)
	}
}

func waitProgrammed(ctx context.Context, t *testing.T, since time.Time) {
	t.Helper()
	if err := suite.WaitProgrammed(ctx, since); err != nil {
		t.Fatal(err)
	}
}

func removeAll(t *testing.T, ns string, svcs map[string]*corev1.Service) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	since := time.Now()
	for name := range svcs {
		if err := suite.DeleteService(ctx, ns, name); err != nil {
			t.Errorf("deleting %s/%s: %v", ns, name, err)
		}
	}
	if err := suite.WaitProgrammed(ctx, since); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

func namespaceFor(name string) string {
	s := strings.ToLower(name)
	s = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, s)
	return strings.Trim(s, "-")
}

// runScenario applies a scenario and runs each of its flows as a subtest.
func runScenario(ctx context.Context, t *testing.T, sc Scenario) {
	t.Helper()
	svcs := apply(ctx, t, sc)
	for _, f := range sc.Flows {
		t.Run(f.Name, func(t *testing.T) { runFlow(ctx, t, svcs, f) })
	}
	for _, hc := range sc.HealthChecks {
		t.Run(hc.Name, func(t *testing.T) { runHealthCheck(ctx, t, svcs, hc) })
	}
}
