//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

// healthAnswer is what one fetch saw.
type healthAnswer struct {
	code   int
	weight string
	body   struct {
		Service struct {
			Namespace string `json:"namespace"`
			Name      string `json:"name"`
		} `json:"service"`
		LocalEndpoints int  `json:"localEndpoints"`
		Healthy        bool `json:"serviceProxyHealthy"`
	}
	raw string
}

func (a healthAnswer) String() string {
	return fmt.Sprintf("HTTP %d, X-Load-Balancing-Endpoint-Weight %q, body %q", a.code, a.weight, a.raw)
}

// healthSettle bounds how long a health check may lag behind the sync that
// WaitProgrammed observed: portico updates its health check servers right after it
// publishes the sync's metrics.
const healthSettle = 3 * time.Second

func runHealthCheck(ctx context.Context, t *testing.T, svcs map[string]*corev1.Service, hc HealthCheck) {
	t.Helper()
	svc, ok := svcs[hc.Service]
	if !ok {
		t.Fatalf("health check %q: no Service %q in the scenario", hc.Name, hc.Service)
	}
	port := svc.Spec.HealthCheckNodePort
	if port == 0 {
		t.Fatalf("Service %s has no spec.healthCheckNodePort (is it an externalTrafficPolicy: Local LoadBalancer?)", svc.Name)
	}
	addr := netip.AddrPortFrom(suite.Topo.NodeIP(nodeA, netns.IPv4), uint16(port))
	deadline := time.Now().Add(healthSettle)
	var last healthAnswer
	var err error
	for {
		last, err = fetchHealth(ctx, addr)
		if err == nil && healthMatches(last, svc, hc) {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("GET http://%s/ from the client: %v", addr, err)
	}
	t.Errorf("health check http://%s/ of %s/%s: got %s; want HTTP %d, localEndpoints %d, weight header %d",
		addr, svc.Namespace, svc.Name, last, hc.Code, hc.LocalEndpoints, hc.LocalEndpoints)
}

func healthMatches(a healthAnswer, svc *corev1.Service, hc HealthCheck) bool {
	return a.code == hc.Code && a.body.LocalEndpoints == hc.LocalEndpoints &&
		a.weight == strconv.Itoa(hc.LocalEndpoints) &&
		a.body.Service.Namespace == svc.Namespace && a.body.Service.Name == svc.Name
}

// fetchHealth GETs http://addr/ from the client namespace.
func fetchHealth(ctx context.Context, addr netip.AddrPort) (healthAnswer, error) {
	var a healthAnswer
	got, err := suite.HTTPGet(ctx, client, addr, 2*time.Second)
	if err != nil {
		return a, err
	}
	a.code, a.weight, a.raw = got.Status, got.Header.Get("X-Load-Balancing-Endpoint-Weight"), string(got.Body)
	if err := json.Unmarshal(got.Body, &a.body); err != nil {
		return a, fmt.Errorf("health check body %q is not JSON: %w", got.Body, err)
	}
	return a, nil
}
