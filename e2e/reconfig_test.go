//go:build e2e

package e2e

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/portico-dev/portico/e2e/harness/netns"
	"github.com/portico-dev/portico/e2e/harness/traffic"
)

// Tests that run portico with another configuration restart it (SIGTERM, new
// KubeProxyConfiguration, start) and restore the default configuration when they end.

// restartPortico stops portico, replaces its configuration overrides and starts it again
// (Start waits until it is healthy, i.e. synced once).
func restartPortico(ctx context.Context, t *testing.T, overrides map[string]any) {
	t.Helper()
	if err := suite.Portico.Stop(); err != nil {
		t.Fatalf("stopping portico: %v", err)
	}
	suite.Portico.Reconfigure(overrides)
	if err := suite.Portico.Start(ctx); err != nil {
		t.Fatalf("starting portico with %v: %v", overrides, err)
	}
}

// restoreDefaultConfig makes the test put portico back on its default configuration when
// it ends, whatever configuration it ran last.
func restoreDefaultConfig(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := suite.Portico.Stop(); err != nil {
			t.Errorf("restoring the default configuration: stopping portico: %v", err)
		}
		suite.Portico.Reconfigure(nil)
		if err := suite.Portico.Start(ctx); err != nil {
			t.Errorf("restoring the default configuration: starting portico: %v", err)
		}
	})
}

// withSection returns the configuration's sub-object section (e.g. "nftables") with
// extra merged in: overrides replace top-level keys, so the keys the harness sets in the
// section (minSyncPeriod: 0s) must be carried over. Call it while portico runs its
// default configuration.
func withSection(section string, extra map[string]any) map[string]any {
	base, _ := suite.Portico.ConfigDocument()[section].(map[string]any)
	out := maps.Clone(base)
	if out == nil {
		out = map[string]any{}
	}
	maps.Copy(out, extra)
	return out
}

// TestNodePortAddresses runs NodePorts with nodePortAddresses "all" (every node address,
// including node-a's cni0 address) and with a CIDR that holds only cni0's address. The
// default ("primary") is in the static table (NodePortPrimary).
func TestNodePortAddresses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	restoreDefaultConfig(t)
	cases := []struct {
		addrs []string
		sc    Scenario
	}{
		{[]string{"all"}, Scenario{
			Name:     "NodePortAll",
			Services: []ServiceSetup{{Svc: service("np", nodePort()), Backends: ready(a2, b1)}},
			Flows: []Flow{
				{Name: "the NodePort on the primary address", From: client, Service: "np", Kind: ToNodePort, Endpoints: []string{a2, b1}, Peer: PeerNode},
				{Name: "the NodePort on cni0 is served too", From: a1, Service: "np", Kind: ToNodePort, Addr: cni0A, Endpoints: []string{a2, b1}, Peer: PeerNode},
			},
		}},
		{[]string{"10.244.1.0/24"}, Scenario{
			Name:     "NodePortCIDR",
			Services: []ServiceSetup{{Svc: service("np", nodePort()), Backends: ready(a2, b1)}},
			Flows: []Flow{
				{Name: "the NodePort on cni0 (inside the CIDR) is served", From: a1, Service: "np", Kind: ToNodePort, Addr: cni0A, Endpoints: []string{a2, b1}, Peer: PeerNode},
				{Name: "the NodePort on the primary address (outside the CIDR) is not", From: client, Service: "np", Kind: ToNodePort, Outcome: traffic.Refused},
			},
		}},
	}
	for _, c := range cases {
		t.Run(c.sc.Name, func(t *testing.T) {
			restartPortico(ctx, t, map[string]any{"nodePortAddresses": c.addrs})
			runScenario(ctx, t, c.sc)
		})
	}
}

// TestLocalTrafficDetection checks masquerading with detectLocalMode NodeCIDR (only this
// node's podCIDRs, 10.244.1.0/24 and fd00:244:1::/64 from its Node object, count as
// local pods) and with masqueradeAll. detectLocalMode ClusterCIDR (the default) is in the
// static table (MasqueradeClusterCIDR).
func TestLocalTrafficDetection(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	restoreDefaultConfig(t)
	cases := []struct {
		overrides map[string]any
		sc        Scenario
	}{
		{map[string]any{"detectLocalMode": "NodeCIDR"}, masqueradeScenario("MasqueradeNodeCIDR", map[netns.Family][2]Peer{
			netns.IPv4: {PeerClient, PeerNode},
			netns.IPv6: {PeerClient, PeerNode},
		})},
		{map[string]any{
			// nftables mode reads nftables.masqueradeAll, iptables mode iptables.masqueradeAll.
			"nftables": withSection("nftables", map[string]any{"masqueradeAll": true}),
			"iptables": withSection("iptables", map[string]any{"masqueradeAll": true}),
		}, masqueradeScenario("MasqueradeAll", map[netns.Family][2]Peer{
			netns.IPv4: {PeerNode, PeerNode},
			netns.IPv6: {PeerNode, PeerNode},
		})},
	}
	for _, c := range cases {
		t.Run(c.sc.Name, func(t *testing.T) {
			restartPortico(ctx, t, c.overrides)
			runScenario(ctx, t, c.sc)
		})
	}
}
