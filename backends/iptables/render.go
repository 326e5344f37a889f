package iptables

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"

	"github.com/portico-dev/portico/model"
)

// chainPlan is one per-Service-port chain and its rules (iptables-save form, after the
// chain name).
type chainPlan struct {
	name  string
	rules []string
	hash  uint64
}

// leafRule is a rule a Service port owns in a shared chain: a frontend's dispatch rule in
// a leaf of the dispatch tree, or a NodePort's verdict in PORTICO-NP-EMPTY.
type leafRule struct {
	table, chain, spec string
}

// setEntry is an ipset entry a Service port owns (entries can be shared: two ports of a
// Service share their cluster IP).
type setEntry struct {
	kind, entry string
}

// portPlan is everything one Service port puts into the kernel.
type portPlan struct {
	chains  []chainPlan
	leaves  []leafRule
	entries []setEntry
}

// renderer turns Service ports of one family into rules and set entries.
type renderer struct {
	x    fam
	node model.Node
	bit  string // the masquerade bit: "0x4000"
	mark string // the masquerade bit as value/mask: "0x4000/0x4000"
}

func newRenderer(x fam, node model.Node, mark uint32) *renderer {
	bit := fmt.Sprintf("0x%x", mark)
	return &renderer{x: x, node: node, bit: bit, mark: bit + "/" + bit}
}

// render plans one Service port (README.md, "Per Service port"): a DNAT chain for each
// endpoint set that some class of traffic forwards to, masquerading as much as the least
// masqueraded of those classes; an entry chain for the ClusterIP or the external frontends
// when their class masquerades more than its set's chain or, external frontends only,
// depends on the source; the frontends' dispatch rules; and the set entries that refuse,
// filter and hairpin.
func (r *renderer) render(sp *model.ServicePort) *portPlan {
	p := &portPlan{}
	id := portID(sp.Name)
	comment := portComment(sp.Name)
	for _, set := range []model.EndpointSet{model.ClusterEndpoints, model.LocalEndpoints} {
		base := sp.BaseMasquerade(set)
		if base == 0 {
			continue // no class forwards to it
		}
		chain := setChain(set, id)
		rules := r.markRules("", base, model.MasqueradeNever)
		p.addChain(chain, append(rules, r.dnat(chain, comment, sp, sp.Endpoints(set))...))
	}
	internal := r.entry(p, sp, prefixService+id, id, model.Internal)
	external := r.entry(p, sp, prefixExternal+id, id, model.ExternalFromPods, model.ExternalFromNode, model.External)
	r.frontends(p, sp, comment, internal, external)
	r.hairpin(p, sp)
	return p
}

// renderChecked renders a port whose fields pass model's CheckFields, and returns the
// reason it cannot otherwise (the port is then left out of the kernel, and reported).
func (r *renderer) renderChecked(sp *model.ServicePort) (*portPlan, error) {
	if err := sp.CheckFields(r.x.f); err != nil {
		return nil, err
	}
	return r.render(sp), nil
}

// setChain names the DNAT chain of an endpoint set of the port with id.
func setChain(set model.EndpointSet, id string) string {
	if set == model.LocalEndpoints {
		return prefixLocal + id
	}
	return prefixCluster + id
}

// entry returns the chain that a frontend receiving classes (specific sources first, the
// default last) jumps to, writing it into p if it needs one of its own (name), or "" when
// nothing of it is forwarded.
func (r *renderer) entry(p *portPlan, sp *model.ServicePort, name, id string, classes ...model.Class) string {
	last := sp.Traffic(classes[len(classes)-1])
	if !last.Exists() {
		return ""
	}
	var rules []string
	forwards := false
	for _, c := range classes[:len(classes)-1] {
		matches := r.sourceMatches(c)
		if sp.Traffic(c) == last || len(matches) == 0 {
			continue
		}
		for _, m := range matches {
			if sp.Verdict(c) != model.Forward {
				rules = append(rules, m+" -j RETURN")
				continue
			}
			forwards = true
			rules = append(rules, r.classRules(m, sp, sp.Traffic(c), id)...)
		}
	}
	if sp.Verdict(classes[len(classes)-1]) == model.Forward {
		if len(rules) == 0 && last.Masquerade == sp.BaseMasquerade(last.Endpoints) {
			return setChain(last.Endpoints, id) // nothing to add: dispatch to the set's chain
		}
		forwards = true
		rules = append(rules, r.classRules("", sp, last, id)...)
	}
	if !forwards {
		return ""
	}
	p.addChain(name, rules)
	return name
}

// classRules returns the rules that send the packets matched by match to the DNAT chain of
// class t's endpoint set, marking them for the masquerading t asks beyond what that chain
// does.
func (r *renderer) classRules(match string, sp *model.ServicePort, t model.Traffic, id string) []string {
	prefix := ""
	if match != "" {
		prefix = match + " "
	}
	rules := r.markRules(prefix, t.Masquerade, sp.BaseMasquerade(t.Endpoints))
	return append(rules, prefix+"-g "+setChain(t.Endpoints, id))
}

// markRules returns the rules (after a match prefix) that mark packets for masquerading
// as want asks beyond have.
func (r *renderer) markRules(prefix string, want, have model.Masquerade) []string {
	if have.Covers(want) {
		return nil
	}
	if want == model.MasqueradeAlways {
		return []string{prefix + "-j MARK --set-xmark " + r.mark}
	}
	return []string{prefix + "-j " + chainMarkOffCluster}
}

// sourceMatches returns the matches of the sources of an external class, one rule's worth
// each (nil for External, which takes whatever the other classes did not, and for pods
// when they cannot be told apart).
func (r *renderer) sourceMatches(c model.Class) []string {
	switch c {
	case model.ExternalFromPods:
		return r.podMatches(false)
	case model.ExternalFromNode:
		return []string{"-m addrtype --src-type LOCAL"}
	}
	return nil
}

// podMatches matches traffic from pods (not from pods, with negate), as the node's
// LocalTraffic recognises them: one match per pod CIDR, or the interface.
func (r *renderer) podMatches(negate bool) []string {
	lt := r.node.LocalTraffic
	not := ""
	if negate {
		not = "! "
	}
	switch {
	case len(lt.CIDRs) > 0:
		out := make([]string, len(lt.CIDRs))
		for i, c := range lt.CIDRs {
			out[i] = not + "-s " + c.Masked().String()
		}
		return out
	case lt.BridgeInterface != "":
		return []string{not + "-i " + lt.BridgeInterface}
	case lt.InterfacePrefix != "":
		return []string{not + "-i " + lt.InterfacePrefix + "+"}
	}
	return nil
}

func (p *portPlan) addChain(name string, rules []string) {
	p.chains = append(p.chains, chainPlan{name: name, rules: rules, hash: hashRules(rules)})
}

// hashRules identifies a chain's content.
func hashRules(rules []string) uint64 {
	h := fnv.New64a()
	for _, r := range rules {
		_, _ = h.Write([]byte(r))
		_, _ = h.Write([]byte{0})
	}
	return h.Sum64()
}

// hairpin lets the port's local endpoints that reach their own Service be masqueraded:
// an entry (endpoint, its port, itself) for every endpoint a class forwards to whose
// address the model lists in Hairpin.
func (r *renderer) hairpin(p *portPlan, sp *model.ServicePort) {
	if len(sp.Hairpin) == 0 {
		return
	}
	seen := map[netip.AddrPort]bool{}
	for _, set := range []model.EndpointSet{model.ClusterEndpoints, model.LocalEndpoints} {
		if sp.BaseMasquerade(set) == 0 {
			continue
		}
		for _, e := range sp.Endpoints(set) {
			if seen[e.AddrPort()] || !slices.Contains(sp.Hairpin, e.Addr) {
				continue
			}
			seen[e.AddrPort()] = true
			entry := ipPort(e.Addr, sp.Name.Protocol, e.Port) + "," + e.Addr.String()
			p.entries = append(p.entries, setEntry{setHairpin, entry})
		}
	}
}
