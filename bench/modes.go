package bench

import (
	"context"
	"fmt"
	"strings"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

// ModeSpec is a proxy mode both proxies run in: nftables, or iptables with one of the two
// iptables variants (nft: iptables-nft, the nf_tables kernel API; legacy: iptables-legacy,
// the x_tables one).
type ModeSpec struct {
	Mode    string `json:"mode"`
	Variant string `json:"variant,omitempty"`
}

// The modes a run can cover, by their flag names.
var (
	ModeNFTables       = ModeSpec{Mode: "nftables"}
	ModeIPTablesNFT    = ModeSpec{Mode: "iptables", Variant: "nft"}
	ModeIPTablesLegacy = ModeSpec{Mode: "iptables", Variant: "legacy"}
)

// ParseMode reads a mode's flag name: "nftables", "iptables-nft", "iptables-legacy" or
// "ipvs" (measured in a VM).
func ParseMode(s string) (ModeSpec, error) {
	for _, m := range []ModeSpec{ModeNFTables, ModeIPTablesNFT, ModeIPTablesLegacy, ModeIPVS} {
		if m.String() == s {
			return m, nil
		}
	}
	return ModeSpec{}, fmt.Errorf("unknown mode %q (nftables, iptables-nft, iptables-legacy, ipvs)", s)
}

// String is the mode's flag name.
func (m ModeSpec) String() string {
	if m.Variant == "" {
		return m.Mode
	}
	return m.Mode + "-" + m.Variant
}

// IPTables reports whether the mode is an iptables one.
func (m ModeSpec) IPTables() bool { return m.Mode == "iptables" }

// Legacy reports whether the mode is iptables with iptables-legacy, the variant that sends
// no nf_tables notifications.
func (m ModeSpec) Legacy() bool { return m.IPTables() && m.Variant == "legacy" }

// suffix is what a proxy's name gets in this mode: "" in nftables mode (the names of
// the results from before the iptables columns), else "-iptables-nft" or
// "-iptables-legacy".
func (m ModeSpec) suffix() string {
	if !m.IPTables() {
		return ""
	}
	return "-" + m.String()
}

// runName names a proxy's runs in a mode ("portico", "kube-proxy-iptables-legacy").
func runName(proxy string, m ModeSpec) string { return proxy + m.suffix() }

// kubeletHintChain is the chain kubelet creates in the mangle table of the iptables
// variant it uses, so that kube-proxy (and portico) pick the same variant.
const kubeletHintChain = "KUBE-IPTABLES-HINT"

// iptablesTables are the x_tables tables the node check and reset look at.
var iptablesTables = []string{"raw", "mangle", "nat", "filter", "security"}

// iptCommands returns a variant's plain commands, IPv4 then IPv6 ("iptables-nft",
// "ip6tables-nft").
func iptCommands(variant string) [2]string {
	return [2]string{"iptables-" + variant, "ip6tables-" + variant}
}

// execIn runs a command in a namespace of the topology and returns its combined output.
func execIn(ctx context.Context, topo *netns.Topology, ns string, argv ...string) (string, error) {
	out, err := topo.Exec(ctx, ns, argv...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s in %s: %w: %s", strings.Join(argv, " "), topo.Name(ns), err, lastLines(string(out), 5))
	}
	return string(out), nil
}

// outIn runs a command in a namespace of the topology and returns its standard output
// alone (iptables-save writes warnings to stderr, which must not mix with the rules).
func outIn(ctx context.Context, topo *netns.Topology, ns string, argv ...string) (string, error) {
	cmd := topo.Exec(ctx, ns, argv...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s in %s: %w: %s", strings.Join(argv, " "), topo.Name(ns), err, lastLines(stderr.String(), 5))
	}
	return string(out), nil
}

// createHint creates kubelet's hint chain in the mangle table of both families of
// variant v in node-a, as kubelet does on a host that uses that variant.
func createHint(ctx context.Context, topo *netns.Topology, v string) error {
	for _, cmd := range iptCommands(v) {
		if _, err := execIn(ctx, topo, netns.NodeA, cmd, "-w", "5", "-t", "mangle", "-N", kubeletHintChain); err != nil {
			return fmt.Errorf("creating kubelet's hint chain: %w", err)
		}
	}
	return nil
}

// nodeLeftovers describes what node-a holds beyond an empty node: nftables tables other
// than the ones iptables-nft keeps (those are checked through iptables-nft-save), the
// rules and user chains of both iptables variants (kubelet's hint chain excepted) and
// every ipset. "" when node-a is empty.
func nodeLeftovers(ctx context.Context, topo *netns.Topology) string {
	var parts []string
	if out, err := nftIn(ctx, topo, netns.NodeA, "list", "ruleset"); err != nil {
		parts = append(parts, err.Error())
	} else if own := nftOwnTables(out); own != "" {
		parts = append(parts, own)
	}
	for _, v := range []string{"nft", "legacy"} {
		for _, cmd := range iptCommands(v) {
			out, err := outIn(ctx, topo, netns.NodeA, cmd+"-save")
			if err != nil {
				parts = append(parts, err.Error())
				continue
			}
			if extra := iptablesExtra(out); extra != "" {
				parts = append(parts, cmd+"-save: "+extra)
			}
		}
	}
	if out, err := outIn(ctx, topo, netns.NodeA, "ipset", "list", "-n"); err != nil {
		parts = append(parts, err.Error())
	} else if s := strings.TrimSpace(out); s != "" {
		parts = append(parts, "ipsets: "+strings.Join(strings.Fields(s), " "))
	}
	return strings.Join(parts, "\n")
}

// nftOwnTables returns the tables of an `nft list ruleset` that iptables-nft does not
// manage (their listing, truncated), "" if none.
func nftOwnTables(ruleset string) string {
	var out []string
	for _, block := range strings.Split(ruleset, "\ntable ") {
		block = strings.TrimPrefix(strings.TrimSpace(block), "table ")
		if block == "" {
			continue
		}
		f := strings.Fields(block)
		if len(f) >= 2 && isIPTablesNFTTable(f[0], f[1]) {
			continue
		}
		out = append(out, "table "+lastLines(block, 20))
	}
	return strings.Join(out, "\n")
}

// isIPTablesNFTTable reports whether a table is one of iptables-nft's (ip or ip6 family,
// an x_tables table name).
func isIPTablesNFTTable(family, name string) bool {
	if family != "ip" && family != "ip6" {
		return false
	}
	for _, t := range iptablesTables {
		if name == t {
			return true
		}
	}
	return false
}

// iptablesExtra returns the rules and user chains of iptables-save output, kubelet's hint
// chain excepted, joined on one line ("" when there are none).
func iptablesExtra(save string) string {
	var extra []string
	for line := range strings.Lines(save) {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "-A "):
			extra = append(extra, line)
		case strings.HasPrefix(line, ":"):
			name, _, _ := strings.Cut(line[1:], " ")
			if !isBuiltinChain(name) && name != kubeletHintChain {
				extra = append(extra, ":"+name)
			}
		}
	}
	if len(extra) > 8 {
		extra = append(extra[:8], fmt.Sprintf("… (%d lines)", len(extra)))
	}
	return strings.Join(extra, "; ")
}

func isBuiltinChain(name string) bool {
	switch name {
	case "PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING":
		return true
	}
	return false
}

// resetNode brings node-a to the state every cold sync starts from: no nftables table
// (those of iptables-nft included), every table of iptables-legacy flushed and its user
// chains deleted, no ipset; then, for an iptables-legacy run, kubelet's hint chain in
// iptables-legacy.
func resetNode(ctx context.Context, topo *netns.Topology, m ModeSpec) error {
	if _, err := nftIn(ctx, topo, netns.NodeA, "flush", "ruleset"); err != nil {
		return err
	}
	for _, cmd := range iptCommands("legacy") {
		out, err := outIn(ctx, topo, netns.NodeA, cmd+"-save")
		if err != nil {
			return err
		}
		for line := range strings.Lines(out) {
			if !strings.HasPrefix(line, "*") {
				continue
			}
			table := strings.TrimSpace(line[1:])
			for _, op := range []string{"-F", "-X"} {
				if _, err := execIn(ctx, topo, netns.NodeA, cmd, "-w", "5", "-t", table, op); err != nil {
					return err
				}
			}
		}
	}
	if _, err := execIn(ctx, topo, netns.NodeA, "ipset", "destroy"); err != nil {
		return err
	}
	if m.Legacy() {
		return createHint(ctx, topo, m.Variant)
	}
	return nil
}
