//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-dev/portico/e2e/harness/cluster"
	"github.com/portico-dev/portico/e2e/harness/rulesdump"
)

// Reading `portico dump`, in the syntax of the mode: nft's listing of portico's tables in
// nftables mode; in iptables mode the iptables-save lines of portico's chains per family
// ("-A PORTICO-C-<hash> ... -m comment --comment "<ns>/<name>:<port>/TCP" ...") and the
// ipset save lines of its sets ("add PORTICO-4-CLUSTER-IPS 10.96.0.1").

// dumpRules returns portico's rules and sets as node-a's kernel holds them (the dump's
// stdout only: its log lines carry times and PIDs).
func dumpRules(ctx context.Context, t *testing.T, when string) string {
	t.Helper()
	out, err := suite.Portico.Dump(ctx)
	if err != nil {
		t.Fatalf("%s: %v", when, err)
	}
	return out
}

// ruleItems splits a dump into its rules, set and map elements and declarations (one
// item per line, and in nftables mode per element, whatever the layout), and counts them.
// Items for which skip (if not nil) returns true are left out.
func ruleItems(dump string, skip func(string) bool) map[string]int {
	split := func(r rune) bool { return r == '\n' || r == ',' }
	if !nftDump() {
		// iptables-save and ipset lines hold commas of their own ("dst,dst,src").
		split = func(r rune) bool { return r == '\n' }
	}
	out := map[string]int{}
	for _, piece := range strings.FieldsFunc(dump, split) {
		p := strings.TrimSpace(piece)
		p = strings.TrimSpace(strings.TrimPrefix(p, "elements = {"))
		p = strings.TrimSpace(strings.TrimSuffix(p, "}"))
		if p == "" || skip != nil && skip(p) {
			continue
		}
		out[p]++
	}
	return out
}

// apiItems returns what ruleItems must skip to leave out the default/kubernetes Service,
// whose only endpoint is the apiserver itself, as found in before (a dump taken while the
// apiserver ran): nftables mode: its comments, its endpoint, the endpoint maps; iptables
// mode: its comments, its endpoint, its ClusterIP (set elements), its per-port chains
// and the chains of the dispatch tree that lead to it.
func apiItems(ctx context.Context, t *testing.T, before string) func(string) bool {
	t.Helper()
	api := netip.AddrPortFrom(suite.Topo.APIServerIP(), cluster.APIServerPort)
	if nftDump() {
		endpoint := fmt.Sprintf("%s . %d", api.Addr(), api.Port())
		return func(p string) bool {
			return strings.Contains(p, "default/kubernetes") || strings.Contains(p, endpoint) || endpointMapDecl(p)
		}
	}
	svc, err := suite.Cluster.Client().CoreV1().Services(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading Service default/kubernetes: %v", err)
	}
	ip := rulesdump.AddrPattern(svc.Spec.ClusterIP)
	chains := rulesdump.ServiceChains(before, "default/kubernetes:")
	for _, c := range rulesdump.TreePath(before, "default/kubernetes:") {
		chains[c] = true
	}
	return func(p string) bool {
		return strings.Contains(p, "default/kubernetes") || strings.Contains(p, api.String()) ||
			ip.MatchString(p) || rulesdump.MentionsAny(p, chains)
	}
}

// endpointMapDecl reports whether an nft dump line declares an endpoint map. Such maps
// exist while some Service's endpoints use them: the one that only held the apiserver's
// endpoint goes when the apiserver withdraws it.
func endpointMapDecl(line string) bool {
	return strings.HasPrefix(line, "map endpoints-") || strings.HasPrefix(line, "typeof numgen random mod 1 :")
}

// serviceChains returns the chains of Service ns/name in a dump: nftables mode: those
// named "<ns>/<name>/…"; iptables mode: the per-port chains its rules' comments lead to.
func serviceChains(dump, ns, name string) []string {
	if nftDump() {
		return chainsNamed(dump, ns+"/"+name+"/")
	}
	return slices.Sorted(maps.Keys(rulesdump.ServiceChains(dump, ns+"/"+name+":")))
}

// leftChains returns the chains of Service ns/name that dump still declares, the Service
// being gone: nftables mode: those named after it; iptables mode, where only comments
// carry names: those of its chains in before (a dump taken while it existed) that are
// still there.
func leftChains(before, dump, ns, name string) []string {
	if nftDump() {
		return chainsNamed(dump, ns+"/"+name+"/")
	}
	var out []string
	for _, c := range serviceChains(before, ns, name) {
		if strings.Contains(dump, "\n:"+c+" ") {
			out = append(out, c)
		}
	}
	return out
}

// chainRules returns the rules of chain in a dump.
func chainRules(dump, chain string) []string {
	if nftDump() {
		return chainBody(dump, chain)
	}
	var out []string
	for _, l := range strings.Split(dump, "\n") {
		if strings.HasPrefix(l, "-A "+chain+" ") {
			out = append(out, l)
		}
	}
	return out
}
