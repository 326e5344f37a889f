// Package variant finds out which iptables variant the host uses (iptables-nft or
// iptables-legacy) the way kube-proxy's container image does: the variant that already
// holds rules wins, nft by default. It also names the commands of that variant, reads
// their version and passes the xtables lock options, and checks chains and the jumps from
// the built-in chains with github.com/coreos/go-iptables.
package variant

import (
	"fmt"
	"strings"
)

// Variant is one of the two back ends of the iptables 1.8 command-line tools.
type Variant string

const (
	// NFT is iptables-nft: the iptables syntax translated into nf_tables.
	NFT Variant = "nft"
	// Legacy is iptables-legacy: the kernel's x_tables interface.
	Legacy Variant = "legacy"
)

// Family is an IP family: the iptables commands or the ip6tables ones.
type Family string

const (
	// IPv4 selects the iptables commands.
	IPv4 Family = "iptables"
	// IPv6 selects the ip6tables commands.
	IPv6 Family = "ip6tables"
)

// Commands names the programs of one variant and family.
type Commands struct {
	// Restore is the bulk writer fed on stdin, e.g. iptables-nft-restore.
	Restore string
	// Save is the dumper, e.g. iptables-nft-save.
	Save string
	// Iptables is the plain command, e.g. iptables-nft.
	Iptables string
}

// Commands returns the program names of variant v for family f.
func (v Variant) Commands(f Family) Commands {
	base := string(f) + "-" + string(v)
	return Commands{Restore: base + "-restore", Save: base + "-save", Iptables: base}
}

// All returns the program names of both families, IPv4 first.
func (c Commands) All() []string {
	return []string{c.Restore, c.Save, c.Iptables}
}

// Result is the outcome of Detect.
type Result struct {
	// Variant is the variant to use.
	Variant Variant
	// Reason says why, for a log line.
	Reason string
	// Seen is what each variant's save commands showed.
	Seen map[Variant]Seen
}

// Commands returns the program names of the detected variant for family f.
func (r Result) Commands(f Family) Commands { return r.Variant.Commands(f) }

// Seen is what the save commands of one variant showed, over both families.
type Seen struct {
	// Rules counts the rules ("-A" lines).
	Rules int
	// KubeletHint reports kubelet's KUBE-IPTABLES-HINT or KUBE-KUBELET-CANARY chain.
	KubeletHint bool
	// Ran counts the save commands that succeeded (0 to 2).
	Ran int
	// Errors are the failures of the save commands.
	Errors []error
}

// String summarises s for a log line.
func (s Seen) String() string {
	text := fmt.Sprintf("%d rules", s.Rules)
	if s.KubeletHint {
		text += ", kubelet's hint chain"
	}
	if s.Ran == 0 {
		text += ", no save command ran"
	}
	return text
}

// kubeletChains are the chains kubelet creates in the mangle table of the variant it uses.
var kubeletChains = []string{"KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"}

// countSave adds what one save command printed to s.
func (s *Seen) countSave(out string) {
	for line := range strings.Lines(out) {
		switch {
		case strings.HasPrefix(line, "-A "):
			s.Rules++
		case strings.HasPrefix(line, ":"):
			name, _, _ := strings.Cut(line[1:], " ")
			for _, k := range kubeletChains {
				if strings.TrimSpace(name) == k {
					s.KubeletHint = true
				}
			}
		}
	}
}
