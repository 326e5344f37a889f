// Package rulesdump reads the rules of `portico dump` and iptables-save output in the
// syntax of the iptables backend (backends/iptables/README.md), for the e2e tests: which
// chains belong to a Service port, which chains of the dispatch tree lead to it, where an
// address appears. It also writes the restore input of a firewall reload that empties
// every table.
package rulesdump

import (
	"fmt"
	"regexp"
	"strings"
)

// Chains of the iptables backend: per Service port, PORTICO-C-, -L-, -S- or -E- followed
// by 16 base32 characters of a hash of its name; the dispatch tree's PORTICO-A-… (by
// address) and PORTICO-N-… (NodePorts).
var (
	portChain = regexp.MustCompile(`PORTICO-[CLSE]-([A-Z2-7]{16})\b`)
	treeChain = regexp.MustCompile(`^PORTICO-[AN]-`)
)

// AddrPattern matches the address ip as a whole in a dump line: for 10.96.0.1 not
// 10.96.0.10 or 110.96.0.1, but "10.96.0.1/32", "10.96.0.1,tcp:443", "10.96.0.1 . tcp",
// "10.96.0.1:443".
func AddrPattern(ip string) *regexp.Regexp {
	q := regexp.QuoteMeta(ip)
	if strings.Contains(ip, ":") {
		return regexp.MustCompile(`(^|[^0-9a-fA-F:])` + q + `($|[^0-9a-fA-F:])`)
	}
	return regexp.MustCompile(`(^|[^0-9.])` + q + `($|[^0-9.]|\.[^0-9])`)
}

// ChainOf returns the chain an iptables-save line declares (":X - [0:0]") or appends to
// ("-A X ..."), "" for other lines.
func ChainOf(line string) string {
	f := strings.Fields(line)
	switch {
	case len(f) >= 2 && f[0] == "-A":
		return f[1]
	case len(f) >= 1 && strings.HasPrefix(f[0], ":"):
		return f[0][1:]
	}
	return ""
}

// MentionsAny reports whether an iptables-save line declares, appends to or jumps to one
// of chains.
func MentionsAny(line string, chains map[string]bool) bool {
	if chains[ChainOf(line)] {
		return true
	}
	for _, f := range strings.Fields(line) {
		if chains[f] {
			return true
		}
	}
	return false
}

// ServiceChains returns the per-port chains of the Service ports whose comments contain
// mark (e.g. "<ns>/<name>:"), as a dump declares them: the chains those rules are in or
// jump to, and every other per-port chain of the same ports.
func ServiceChains(dump, mark string) map[string]bool {
	ids := map[string]bool{}
	for _, l := range strings.Split(dump, "\n") {
		if strings.Contains(l, mark) {
			for _, m := range portChain.FindAllStringSubmatch(l, -1) {
				ids[m[1]] = true
			}
		}
	}
	out := map[string]bool{}
	for _, l := range strings.Split(dump, "\n") {
		if !strings.HasPrefix(l, ":") {
			continue
		}
		c := ChainOf(l)
		if m := portChain.FindStringSubmatch(c); m != nil && ids[m[1]] {
			out[c] = true
		}
	}
	return out
}

// TreePath returns the dispatch-tree chains that lead to the rules whose comments contain
// mark: the tree chains holding them and, up the tree, the tree chains jumping there.
func TreePath(dump, mark string) []string {
	lines := strings.Split(dump, "\n")
	var path []string
	seen := map[string]bool{}
	var visit func(chain string)
	visit = func(chain string) {
		if !treeChain.MatchString(chain) || seen[chain] {
			return
		}
		seen[chain] = true
		path = append(path, chain)
		for _, l := range lines {
			if strings.HasPrefix(l, "-A ") && (strings.HasSuffix(l, " -j "+chain) || strings.HasSuffix(l, " -g "+chain)) {
				visit(ChainOf(l))
			}
		}
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "-A ") && strings.Contains(l, mark) {
			visit(ChainOf(l))
		}
	}
	return path
}

// EmptyTables turns iptables-save output into iptables-restore input that leaves each of
// its tables with its built-in chains (their policies kept) and nothing else: restored
// (without --noflush), it flushes every chain and deletes every chain that is not built
// in, as `-F` then `-X` of each table do, in one commit per table.
func EmptyTables(save string) string {
	var b strings.Builder
	for _, l := range strings.Split(save, "\n") {
		f := strings.Fields(l)
		switch {
		case strings.HasPrefix(l, "*") || l == "COMMIT":
			b.WriteString(l + "\n")
		case len(f) >= 2 && strings.HasPrefix(f[0], ":") && f[1] != "-":
			// A built-in chain, ":INPUT ACCEPT [12:345]"; other chains have policy "-".
			fmt.Fprintf(&b, "%s %s [0:0]\n", f[0], f[1])
		}
	}
	return b.String()
}
