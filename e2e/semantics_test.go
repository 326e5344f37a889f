//go:build e2e

package e2e

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/e2e/harness/netns"
)

const (
	a1, a2 = netns.PodA1, netns.PodA2
	b1, b2 = netns.PodB1, netns.PodB2
	client = netns.Client
	nodeA  = netns.NodeA
)

// TestServiceSemantics runs every scenario of the packet-flow table
// (backends/backendtest/testdata/flows.yaml) with real packets. A scenario that overrides
// the table's configuration runs with portico restarted on the override, and portico
// returns to the table's configuration afterwards.
func TestServiceSemantics(t *testing.T) {
	table, err := backendtest.LoadFlows()
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range table.Scenarios {
		t.Run(sc.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if sc.Config != nil {
				restoreDefaultConfig(t)
				restartPortico(ctx, t, configOverrides(table.Config.Merge(sc.Config)))
			}
			runScenario(ctx, t, fromTable(sc))
		})
	}
}

// configOverrides returns the KubeProxyConfiguration fields that give portico the flow
// table's configuration c, whatever the mode: masqueradeAll lives in the mode's section
// (nftables mode reads nftables.masqueradeAll, the others iptables.masqueradeAll), whose
// other keys the harness sets are kept. Without masqueradeAll the sections are left alone,
// so that the suite's base configuration can be built before the harness exists.
func configOverrides(c backendtest.Config) map[string]any {
	out := map[string]any{
		"clusterCIDR":       c.ClusterCIDR,
		"detectLocalMode":   c.DetectLocalMode,
		"nodePortAddresses": c.NodePortAddresses,
	}
	if !c.MasqueradeAll {
		return out
	}
	for _, mode := range []string{"nftables", "iptables"} {
		section := maps.Clone(harnessSection(mode))
		section["masqueradeAll"] = true
		out[mode] = section
	}
	return out
}
