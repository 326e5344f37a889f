//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/portico-dev/portico/backends/iptables/variant"
)

// TestModeSwitch restarts portico in the other proxy mode (nftables ↔ iptables), as an
// operator changing the ConfigMap's mode does: the new mode serves the Service, and the
// rules of the old mode are gone within a few seconds (portico removes other modes'
// objects when it starts, as kube-proxy does), so that two dataplanes never translate the
// same connections. From nftables the switch writes `mode: ""`, what a default kubeadm
// ConfigMap says: portico must take it as iptables mode, as kube-proxy does.
func TestModeSwitch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	other, configured := "iptables", "" // kubeadm's default ConfigMap: mode ""
	if mode() == "iptables" {
		other, configured = "nftables", "nftables"
	}
	restoreDefaultConfig(t) // registered first, so it runs after the Service's removal
	sc := Scenario{Name: "ModeSwitch", Services: []ServiceSetup{{Svc: service("web"), Backends: ready(a1)}}}
	svcs := apply(ctx, t, sc)
	flow := Flow{Name: "client to the ClusterIP", From: client, To: "web", Expect: pods(a1)}
	runFlow(ctx, t, svcs, flow)
	if leftovers(ctx, t, other) != "" {
		t.Fatalf("mode %s has rules before the switch; the test would prove nothing", other)
	}
	if leftovers(ctx, t, mode()) == "" {
		t.Fatalf("no %s rules found before the switch; the test would prove nothing", mode())
	}

	since := time.Now()
	restartPortico(ctx, t, map[string]any{"mode": configured})
	waitProgrammed(ctx, t, since)
	runFlow(ctx, t, svcs, flow)
	deadline := time.Now().Add(10 * time.Second)
	for left := leftovers(ctx, t, mode()); left != ""; left = leftovers(ctx, t, mode()) {
		if time.Now().After(deadline) {
			t.Fatalf("10 s after the switch to %s (mode %q) the %s rules are still there:\n%s", other, configured, mode(), left)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if leftovers(ctx, t, other) == "" {
		t.Errorf("no %s rules after the switch to mode %q", other, configured)
	}
}

// leftovers returns what node-a's kernel holds of portico's rules in mode m ("" for none):
// its nftables tables, or its iptables chains (both variants) and ipsets.
func leftovers(ctx context.Context, t *testing.T, m string) string {
	t.Helper()
	var cmds [][]string
	switch m {
	case "nftables":
		cmds = [][]string{{"nft", "list", "tables"}}
	case "iptables":
		for _, v := range []variant.Variant{variant.NFT, variant.Legacy} {
			cmds = append(cmds, []string{v.Commands(variant.IPv4).Save}, []string{v.Commands(variant.IPv6).Save})
		}
		cmds = append(cmds, []string{"ipset", "list", "-n"})
	default:
		t.Fatalf("no leftovers check for mode %q", m)
	}
	var found []string
	for _, argv := range cmds {
		out, err := suite.Topo.Exec(ctx, nodeA, argv...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v in node-a: %v: %s", argv, err, out)
		}
		for line := range strings.Lines(string(out)) {
			if strings.Contains(line, "portico") || strings.Contains(line, "PORTICO") {
				found = append(found, fmt.Sprintf("%s: %s", argv[0], strings.TrimSpace(line)))
			}
		}
	}
	return strings.Join(found, "\n")
}
