package nftables

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/portico-dev/portico/model"
)

// renderer turns model Service ports into nftables objects for one family.
type renderer struct {
	f    fam
	node model.Node
}

// chainPlan is one per-Service-port chain and its rules.
type chainPlan struct {
	name  string
	rules []string
	hash  uint64
}

// groupPlan is an endpoint group that a DNAT rule picks from through an endpoint map.
type groupPlan struct {
	chain string // the chain whose DNAT rule reads the group
	block block
	eps   []netip.AddrPort // the endpoint of key block.start+i
}

// affinitySet is a set remembering which clients went to one endpoint.
type affinitySet struct {
	name, comment string
	timeoutSec    int64
}

// portPlan is everything one Service port puts into the kernel.
type portPlan struct {
	comment  string
	chains   []chainPlan
	groups   []groupPlan
	affinity []affinitySet
	elems    []elem
}

// slotFunc returns the endpoint-map block a chain's group of n endpoints of protocol p
// uses.
type slotFunc func(chain string, p model.Protocol, n int) block

// render plans one Service port (README.md, "Chains per Service port"): a DNAT chain for
// each endpoint set that some traffic class forwards to, which masquerades as much as the
// least-masqueraded of those classes; an entry chain for the ClusterIP or the external
// frontends when their class needs more masquerading than its set's chain, or, external
// frontends only, when their classes depend on the source; and the elements that
// dispatch, refuse and filter the frontends.
func (r *renderer) render(sp *model.ServicePort, slots slotFunc) *portPlan {
	p := &portPlan{comment: portComment(sp.Name)}
	sfx := portSuffix(sp.Name)
	base := baseMasquerade(sp)
	for _, set := range []model.EndpointSet{model.ClusterEndpoints, model.LocalEndpoints} {
		if base[set] == 0 {
			continue // no class forwards to it
		}
		chain := setChain(set, sfx)
		rules := r.masqueradeRules("", base[set], model.MasqueradeNever)
		p.addChain(chain, append(rules, r.dnat(p, chain, sp, sp.Endpoints(set), slots)...))
	}
	internal := r.entry(p, sp, base, prefixService+sfx, sfx, model.Internal)
	external := r.entry(p, sp, base, prefixExternal+sfx, sfx, model.ExternalFromPods, model.ExternalFromNode, model.External)
	r.frontendElements(p, sp, internal, external)
	r.hairpinElements(p, sp)
	return p
}

// setMasquerade holds, per endpoint set, the masquerading of its DNAT chain; zero for a set
// that no class forwards to.
type setMasquerade [3]model.Masquerade

// baseMasquerade returns, for each endpoint set, what its DNAT chain masquerades itself
// (model.ServicePort.BaseMasquerade). A class that masquerades more marks its packets in an
// entry chain first.
func baseMasquerade(sp *model.ServicePort) setMasquerade {
	var out setMasquerade
	for _, s := range []model.EndpointSet{model.ClusterEndpoints, model.LocalEndpoints} {
		out[s] = sp.BaseMasquerade(s)
	}
	return out
}

// setChain names the DNAT chain of an endpoint set of the port with suffix sfx.
func setChain(set model.EndpointSet, sfx string) string {
	if set == model.LocalEndpoints {
		return prefixLocal + sfx
	}
	return prefixCluster + sfx
}

// entry returns the chain that a frontend receiving classes (specific sources first, the
// default last) dispatches to, writing it into p if it needs one of its own (name), or ""
// when nothing of it is forwarded.
func (r *renderer) entry(p *portPlan, sp *model.ServicePort, base setMasquerade, name, sfx string, classes ...model.Class) string {
	last := sp.Traffic(classes[len(classes)-1])
	if !last.Exists() {
		return ""
	}
	var rules []string
	forwards := false
	for _, c := range classes[:len(classes)-1] {
		match := r.sourceMatch(c)
		if sp.Traffic(c) == last || match == "" {
			continue
		}
		if sp.Verdict(c) != model.Forward {
			rules = append(rules, match+" return")
			continue
		}
		forwards = true
		rules = append(rules, r.classRules(match, sp.Traffic(c), base, sfx)...)
	}
	if sp.Verdict(classes[len(classes)-1]) == model.Forward {
		if len(rules) == 0 && last.Masquerade == base[last.Endpoints] {
			return setChain(last.Endpoints, sfx) // nothing to add: dispatch to the set's chain
		}
		forwards = true
		rules = append(rules, r.classRules("", last, base, sfx)...)
	}
	if !forwards {
		return ""
	}
	p.addChain(name, rules)
	return name
}

// classRules returns the rules that send the packets matched by match to the DNAT chain
// of class t's endpoint set, marking them for the masquerading t asks beyond what that
// chain does (base).
func (r *renderer) classRules(match string, t model.Traffic, base setMasquerade, sfx string) []string {
	prefix := ""
	if match != "" {
		prefix = match + " "
	}
	rules := r.masqueradeRules(prefix, t.Masquerade, base[t.Endpoints])
	return append(rules, prefix+"goto "+setChain(t.Endpoints, sfx))
}

// masqueradeRules returns the rules (prefixed by a match) that mark packets for
// masquerading as want asks beyond have (have masquerades no more than want: see
// baseMasquerade).
func (r *renderer) masqueradeRules(prefix string, want, have model.Masquerade) []string {
	if have.Covers(want) {
		return nil
	}
	if want == model.MasqueradeAlways {
		return []string{prefix + "jump " + chainMarkMasq}
	}
	return []string{prefix + "jump " + chainMarkOffCluster}
}

func (p *portPlan) addChain(name string, rules []string) {
	h := fnv.New64a()
	for _, r := range rules {
		_, _ = h.Write([]byte(r))
		_, _ = h.Write([]byte{0})
	}
	p.chains = append(p.chains, chainPlan{name: name, rules: rules, hash: h.Sum64()})
}

// offClusterRules returns the rules of the mark-off-cluster chain: mark for masquerading
// what does not come from a pod, as the node's LocalTraffic recognises pods (nothing when
// it recognises none: the model then never asks for MasqueradeOffCluster).
func (r *renderer) offClusterRules() []string {
	lt := r.node.LocalTraffic
	jump := "jump " + chainMarkMasq
	switch {
	case len(lt.CIDRs) > 0:
		return []string{fmt.Sprintf("%s saddr != %s %s", r.f.ip, prefixSet(lt.CIDRs), jump)}
	case lt.BridgeInterface != "":
		return []string{fmt.Sprintf("iifname != %q %s", lt.BridgeInterface, jump)}
	case lt.InterfacePrefix != "":
		return []string{fmt.Sprintf("iifname != %q %s", lt.InterfacePrefix+"*", jump)}
	}
	return nil
}

// fromPods matches traffic from pods, or is "" when pods cannot be told apart.
func (r *renderer) fromPods() string {
	lt := r.node.LocalTraffic
	switch {
	case len(lt.CIDRs) > 0:
		return fmt.Sprintf("%s saddr %s", r.f.ip, prefixSet(lt.CIDRs))
	case lt.BridgeInterface != "":
		return fmt.Sprintf("iifname %q", lt.BridgeInterface)
	case lt.InterfacePrefix != "":
		return fmt.Sprintf("iifname %q", lt.InterfacePrefix+"*")
	}
	return ""
}

// sourceMatch returns the match of the sources of an external class ("" for External,
// which takes whatever the other classes did not).
func (r *renderer) sourceMatch(c model.Class) string {
	switch c {
	case model.ExternalFromPods:
		return r.fromPods()
	case model.ExternalFromNode:
		return "fib saddr type local"
	}
	return ""
}

// dnat returns the rules that pick one of eps and DNAT to it.
func (r *renderer) dnat(p *portPlan, chain string, sp *model.ServicePort, eps []model.Endpoint, slots slotFunc) []string {
	l4 := "meta l4proto " + proto(sp.Name.Protocol)
	if sp.Affinity.Enabled() {
		return r.affinityDNAT(p, chain, sp, eps, l4)
	}
	b := slots(chain, sp.Name.Protocol, len(eps))
	g := groupPlan{chain: chain, block: b, eps: make([]netip.AddrPort, len(eps))}
	for i, e := range eps {
		g.eps[i] = e.AddrPort()
	}
	p.groups = append(p.groups, g)
	return []string{fmt.Sprintf("%s dnat %s to numgen random mod %d offset %d map @%s",
		l4, r.f.ip, len(eps), b.start, endpointMapName(b.proto, b.bucket))}
}

// affinityDNAT sends a client back to the endpoint it used last (if that was within the
// timeout), else picks one at random and remembers the choice.
func (r *renderer) affinityDNAT(p *portPlan, chain string, sp *model.ServicePort, eps []model.Endpoint, l4 string) []string {
	sets := make([]string, len(eps))
	var sticky, pick []string
	for i, e := range eps {
		sets[i] = affinitySetName(chain, e, sp.Affinity.Timeout)
		p.affinity = append(p.affinity, affinitySet{
			name:       sets[i],
			comment:    affinityComment(sp.Name, e),
			timeoutSec: int64(sp.Affinity.Timeout.Seconds()),
		})
		update := fmt.Sprintf("update @%s { %s saddr } %s dnat %s to %s",
			sets[i], r.f.ip, l4, r.f.ip, r.f.addrPort(e.Addr, e.Port))
		sticky = append(sticky, fmt.Sprintf("%s saddr @%s %s", r.f.ip, sets[i], update))
		if i < len(eps)-1 {
			pick = append(pick, fmt.Sprintf("numgen random mod %d == 0 %s", len(eps)-i, update))
		} else {
			pick = append(pick, update)
		}
	}
	return append(sticky, pick...)
}

// frontendElements adds the dispatch, no-endpoint, cluster-IP and firewall elements of
// every frontend: internal and external are the chains the ClusterIP and the external
// frontends dispatch to ("" when nothing of theirs is forwarded). A frontend's last class
// (Internal, or External) gives its no-endpoint verdict.
func (r *renderer) frontendElements(p *portPlan, sp *model.ServicePort, internal, external string) {
	for _, f := range sp.Frontends {
		key, names := r.frontendKey(sp, f)
		target := internal
		if f.Kind == model.ClusterIP {
			p.elems = append(p.elems, elem{set: setClusterIPs, key: f.Addr.String()})
		} else {
			target = external
		}
		if target != "" {
			p.elems = append(p.elems, elem{set: names.dispatch, key: key, value: "goto " + target})
		}
		classes := sp.FrontendClasses(f)
		switch sp.Verdict(classes[len(classes)-1]) {
		case model.Reject:
			p.elems = append(p.elems, elem{set: names.noEndpoint, key: key, value: "goto " + chainReject})
		case model.Drop:
			p.elems = append(p.elems, elem{set: names.noEndpoint, key: key, value: "drop"})
		}
		if f.Kind == model.LoadBalancer && len(sp.SourceRanges) > 0 {
			r.firewallElements(p, key, sp)
		}
	}
}

// frontendMaps are the maps a frontend's elements go in.
type frontendMaps struct {
	dispatch, noEndpoint string
}

// frontendKey returns a frontend's key and the maps its elements go in: those keyed by
// protocol and port for a NodePort on every local address, the others by address too.
func (r *renderer) frontendKey(sp *model.ServicePort, f model.Frontend) (string, frontendMaps) {
	pp := proto(sp.Name.Protocol) + " . " + strconv.Itoa(int(f.Port))
	if f.AnyLocalAddr() {
		return pp, frontendMaps{mapServiceNodePorts, mapNoEndpointNodePort}
	}
	return f.Addr.String() + " . " + pp, frontendMaps{mapServiceIPs, mapNoEndpointServices}
}

// firewallElements allows the port's source ranges to reach the frontend key. The ranges
// go in an interval set, where the kernel refuses overlapping elements ("File exists"): a
// range inside another one (a load balancer's own ingress IP inside a source range, or
// nested source ranges) is left out, which allows the same sources.
func (r *renderer) firewallElements(p *portPlan, key string, sp *model.ServicePort) {
	p.elems = append(p.elems, elem{set: setFirewallIPs, key: key})
	for _, src := range outermost(sp.SourceRanges) {
		p.elems = append(p.elems, elem{set: setFirewallAllow, key: key + " . " + src.String()})
	}
}

// hairpinElements lets the port's local endpoints that reach their own Service be
// masqueraded.
func (r *renderer) hairpinElements(p *portPlan, sp *model.ServicePort) {
	for _, a := range sp.Hairpin {
		s := a.String()
		p.elems = append(p.elems, elem{set: setHairpin, key: s + " . " + s})
	}
}

// outermost returns the prefixes of ps (masked) that no other prefix of ps contains.
// Prefixes are nested or disjoint, so sorted by address and then by length, a prefix
// inside an earlier one is inside the last one kept.
func outermost(ps []netip.Prefix) []netip.Prefix {
	sorted := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		sorted[i] = p.Masked()
	}
	slices.SortFunc(sorted, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	out := sorted[:0]
	for _, p := range sorted {
		if n := len(out); n > 0 && out[n-1].Bits() <= p.Bits() && out[n-1].Contains(p.Addr()) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// prefixSet renders prefixes as an nft anonymous set (or a single value).
func prefixSet(ps []netip.Prefix) string {
	if len(ps) == 1 {
		return ps[0].String()
	}
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.String()
	}
	return "{ " + strings.Join(parts, ", ") + " }"
}
