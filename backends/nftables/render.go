package nftables

import (
	"fmt"
	"hash/fnv"
	"net/netip"
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

// render plans one Service port.
func (r *renderer) render(sp *model.ServicePort, slots slotFunc) *portPlan {
	p := &portPlan{comment: sp.Name.String()}
	sfx := portSuffix(sp.Name)
	clusterChain := prefixService + sfx
	if sp.InternalLocal {
		clusterChain = prefixCluster + sfx
	}
	if sp.UsesLocal() && len(sp.Local) > 0 {
		p.addChain(prefixLocal+sfx, r.dnat(p, prefixLocal+sfx, sp, sp.Local, slots))
	}
	if sp.InternalLocal && sp.UsesCluster() && len(sp.Cluster) > 0 {
		p.addChain(clusterChain, r.dnat(p, clusterChain, sp, sp.Cluster, slots))
	}
	if sp.InternalVerdict() == model.Forward {
		rules := r.masqueradeOffCluster()
		if sp.InternalLocal {
			rules = append(rules, "goto "+prefixLocal+sfx)
		} else {
			rules = append(rules, r.dnat(p, clusterChain, sp, sp.Cluster, slots)...)
		}
		p.addChain(prefixService+sfx, rules)
	}
	ext := ""
	if rules := r.externalRules(sp, clusterChain, prefixLocal+sfx); len(rules) > 0 {
		ext = prefixExternal + sfx
		p.addChain(ext, rules)
	}
	r.frontendElements(p, sp, prefixService+sfx, ext)
	r.hairpinElements(p, sp)
	return p
}

func (p *portPlan) addChain(name string, rules []string) {
	h := fnv.New64a()
	for _, r := range rules {
		_, _ = h.Write([]byte(r))
		_, _ = h.Write([]byte{0})
	}
	p.chains = append(p.chains, chainPlan{name: name, rules: rules, hash: h.Sum64()})
}

// masqueradeOffCluster returns the rule that marks ClusterIP traffic for masquerading
// when it does not come from a pod (or all of it with masqueradeAll).
func (r *renderer) masqueradeOffCluster() []string {
	lt := r.node.LocalTraffic
	jump := "jump " + chainMarkMasq
	switch {
	case r.node.MasqueradeAll:
		return []string{jump}
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

// externalRules returns the rules of the external entry chain, or nil when external
// frontends get no forwarding at all.
func (r *renderer) externalRules(sp *model.ServicePort, clusterChain, localChain string) []string {
	if !sp.HasExternal() {
		return nil
	}
	if !sp.ExternalLocal {
		if len(sp.Cluster) == 0 {
			return nil
		}
		return []string{"jump " + chainMarkMasq, "goto " + clusterChain}
	}
	var rules []string
	if len(sp.Cluster) > 0 {
		if pods := r.fromPods(); pods != "" {
			rules = append(rules, pods+" goto "+clusterChain)
		}
		rules = append(rules,
			"fib saddr type local jump "+chainMarkMasq,
			"fib saddr type local goto "+clusterChain)
	}
	if len(sp.Local) > 0 {
		rules = append(rules, "goto "+localChain)
	}
	return rules
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
			comment:    sp.Name.String() + " -> " + e.String(),
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
// every frontend.
func (r *renderer) frontendElements(p *portPlan, sp *model.ServicePort, svcChain, extChain string) {
	for _, f := range sp.Frontends {
		if f.Addr.IsValid() && f.Addr.IsLoopback() {
			continue // loopback NodePorts need route_localnet; nftables mode does not serve them
		}
		if f.Kind == model.ClusterIP {
			p.elems = append(p.elems, elem{set: setClusterIPs, key: f.Addr.String()})
		}
		key, dispatch, noEP := r.frontendKey(sp, f)
		target := svcChain
		if f.Kind.External() {
			target = extChain
		}
		switch v := sp.FrontendVerdict(f); {
		case v == model.Reject:
			p.elems = append(p.elems, elem{set: noEP, key: key, value: "goto " + chainReject, comment: p.comment})
		case v == model.Drop:
			p.elems = append(p.elems, elem{set: noEP, key: key, value: "drop", comment: p.comment})
		}
		if target != "" && (f.Kind.External() || sp.InternalVerdict() == model.Forward) {
			p.elems = append(p.elems, elem{set: dispatch, key: key, value: "goto " + target, comment: p.comment})
		}
		if f.Kind == model.LoadBalancer && len(sp.SourceRanges) > 0 {
			r.firewallElements(p, key, sp)
		}
	}
}

// frontendKey returns a frontend's key and the dispatch and no-endpoint maps it goes in.
func (r *renderer) frontendKey(sp *model.ServicePort, f model.Frontend) (string, string, string) {
	pp := proto(sp.Name.Protocol) + " . " + strconv.Itoa(int(f.Port))
	if f.AnyLocalAddr() {
		return pp, mapServiceNodePorts, mapNoEndpointNodePort
	}
	return f.Addr.String() + " . " + pp, mapServiceIPs, mapNoEndpointServices
}

func (r *renderer) firewallElements(p *portPlan, key string, sp *model.ServicePort) {
	p.elems = append(p.elems, elem{set: setFirewallIPs, key: key})
	for _, src := range sp.SourceRanges {
		p.elems = append(p.elems, elem{set: setFirewallAllow, key: key + " . " + src.String()})
	}
}

// hairpinElements lets local endpoints that reach their own Service be masqueraded.
func (r *renderer) hairpinElements(p *portPlan, sp *model.ServicePort) {
	for _, e := range sp.ForwardedEndpoints() {
		if e.Local {
			a := e.Addr.String()
			p.elems = append(p.elems, elem{set: setHairpin, key: a + " . " + a})
		}
	}
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
