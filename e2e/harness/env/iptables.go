package env

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/portico-dev/portico/config"
	"github.com/portico-dev/portico/e2e/harness/netns"
	"github.com/portico-dev/portico/e2e/harness/portico"
)

// KubeletHintChain is the chain kubelet creates in the mangle table of the iptables
// variant it uses, so that kube-proxy (and portico) pick the same one.
const KubeletHintChain = "KUBE-IPTABLES-HINT"

// checkIPTablesVariant checks Options.IPTablesVariant: a variant name, and set only in
// iptables mode.
func (o Options) checkIPTablesVariant() error {
	if err := portico.CheckVariant(o.IPTablesVariant); err != nil {
		return fmt.Errorf("env: Options.IPTablesVariant: %w", err)
	}
	if o.IPTablesVariant != "" && o.Mode != config.ModeIPTables {
		return fmt.Errorf("env: Options.IPTablesVariant is %q but the mode is %q: a variant needs mode %s",
			o.IPTablesVariant, o.Mode, config.ModeIPTables)
	}
	return nil
}

// IPTablesCommands returns the plain commands (IPv4, IPv6) of an iptables variant:
// "iptables-legacy", "ip6tables-legacy".
func IPTablesCommands(variant string) [2]string {
	return [2]string{"iptables-" + variant, "ip6tables-" + variant}
}

// CreateKubeletHint creates kubelet's hint chain in the mangle table of node-a, in both
// families, with the iptables variant Options.IPTablesVariant names, as kubelet does on a
// host that uses that variant (and again when it finds its chains flushed). A chain that
// is already there is left alone; without a variant it does nothing.
func (e *Env) CreateKubeletHint(ctx context.Context) error {
	v := e.opts.IPTablesVariant
	if v == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, cmd := range IPTablesCommands(v) {
		if e.Topo.Exec(ctx, netns.NodeA, cmd, "-w", "-t", "mangle", "-S", KubeletHintChain).Run() == nil {
			continue
		}
		out, err := e.Topo.Exec(ctx, netns.NodeA, cmd, "-w", "-t", "mangle", "-N", KubeletHintChain).CombinedOutput()
		if err != nil {
			return fmt.Errorf("env: creating kubelet's hint chain with %s -t mangle -N %s in %s: %w: %s",
				cmd, KubeletHintChain, e.Topo.Name(netns.NodeA), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}
