//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

// TestHealthCheckListensOnNodePortAddresses: the healthCheckNodePort server of an
// externalTrafficPolicy: Local Service listens only on the node addresses that
// nodePortAddresses selects (the suite's [primary]: node-a's eth0 addresses), as
// kube-proxy does, not on every address of the node (cni0, api0, loopback), and answers
// there.
func TestHealthCheckListensOnNodePortAddresses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := namespaceFor(t.Name())
	svcs := map[string]*corev1.Service{}
	t.Cleanup(func() { removeAll(t, ns, svcs) })
	since := time.Now()
	svc := applyOne(ctx, t, ns, ServiceSetup{Svc: service("hcbind", loadBalancer(), externalLocal(), dualStack()), Backends: ready(a1)})
	svcs[svc.Name] = svc
	waitProgrammed(ctx, t, since)
	port := uint16(svc.Spec.HealthCheckNodePort)
	if port == 0 {
		t.Fatalf("Service %s has no spec.healthCheckNodePort", svc.Name)
	}
	want := []string{
		netip.AddrPortFrom(suite.Topo.NodeIP(nodeA, netns.IPv4), port).String(),
		netip.AddrPortFrom(suite.Topo.NodeIP(nodeA, netns.IPv6), port).String(),
	}
	slices.Sort(want)
	var got []string
	deadline := time.Now().Add(healthSettle)
	for {
		got = listeners(ctx, t, port)
		if slices.Equal(got, want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("listeners on port %d in node-a: %v, want %v", port, got, want)
	}
	addr := netip.AddrPortFrom(suite.Topo.NodeIP(nodeA, netns.IPv4), port)
	a, err := fetchHealth(ctx, addr)
	if err != nil || a.code != 200 || a.body.LocalEndpoints != 1 {
		t.Errorf("GET http://%s/ from the client: %v, %v; want 200 with one local endpoint", addr, a, err)
	}
}

// listeners returns the sorted local addresses of the TCP sockets listening on port in
// node-a's namespace.
func listeners(ctx context.Context, t *testing.T, port uint16) []string {
	t.Helper()
	out, err := suite.Topo.Exec(ctx, nodeA, "ss", "-Hltn", fmt.Sprintf("sport = :%d", port)).CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v: %s", err, out)
	}
	var addrs []string
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) >= 4 {
			addrs = append(addrs, f[3])
		}
	}
	slices.Sort(addrs)
	return addrs
}
