package iptables

import (
	"fmt"
	"net/netip"
	"strconv"

	"github.com/portico-dev/portico/model"
)

// dnat returns the rules that pick one of eps and DNAT to it: with probability 1/(n-i)
// for the i-th of n, the last unconditionally. With session affinity, a client seen
// within the timeout goes back to its endpoint first (one xt_recent list per endpoint),
// and a new choice is remembered. The first rule carries the port's name as a comment.
func (r *renderer) dnat(chain, comment string, sp *model.ServicePort, eps []model.Endpoint) []string {
	p := "-p " + protoName(sp.Name.Protocol)
	var rules []string
	if sp.Affinity.Enabled() {
		secs := int64(sp.Affinity.Timeout.Seconds())
		for _, e := range eps {
			rules = append(rules, fmt.Sprintf("%s -m recent --update --seconds %d --reap --name %s --mask %s --rsource -j DNAT --to-destination %s",
				p, secs, recentName(chain, e.AddrPort()), r.x.fullMask, r.x.dnatTo(e)))
		}
	}
	for i, e := range eps {
		rule := p
		if n := len(eps) - i; n > 1 {
			rule += fmt.Sprintf(" -m statistic --mode random --probability %.10f", 1/float64(n))
		}
		if sp.Affinity.Enabled() {
			rule += fmt.Sprintf(" -m recent --set --name %s --mask %s --rsource", recentName(chain, e.AddrPort()), r.x.fullMask)
		}
		rules = append(rules, rule+" -j DNAT --to-destination "+r.x.dnatTo(e))
	}
	if len(rules) > 0 && len(rules[0]) >= len(p) {
		rules[0] = p + ` -m comment --comment "` + comment + `"` + rules[0][len(p):]
	}
	return rules
}

// frontends writes each frontend's dispatch rule (to internal for the ClusterIP, external
// for the others; none when "") and its set entries: the cluster IPs, the verdict of its
// last class when that class has no endpoints, and the firewall of a load balancer with
// source ranges.
func (r *renderer) frontends(p *portPlan, sp *model.ServicePort, comment, internal, external string) {
	for _, f := range sp.Frontends {
		target := external
		if f.Kind == model.ClusterIP {
			target = internal
			p.entries = append(p.entries, setEntry{setClusterIPs, f.Addr.String()})
		}
		if target != "" {
			p.leaves = append(p.leaves, r.dispatchRule(sp, f, comment, target))
		}
		classes := sp.FrontendClasses(f)
		r.emptyVerdict(p, sp, f, comment, sp.Verdict(classes[len(classes)-1]))
		if f.Kind == model.LoadBalancer && len(sp.SourceRanges) > 0 {
			r.firewall(p, sp, f)
		}
	}
}

// dispatchRule returns the rule that sends new connections to frontend f to target: in the
// address tree's leaf of f's address, or, for a NodePort, in the port tree's leaf of its
// port (NodePorts share a few node addresses, so their port spreads them).
func (r *renderer) dispatchRule(sp *model.ServicePort, f model.Frontend, comment, target string) leafRule {
	tail := " " + dport(sp.Name.Protocol, f.Port) + ` -m comment --comment "` + comment + `" -j ` + target
	if f.Kind != model.NodePort {
		return leafRule{tableNAT, addrLeaf(f.Addr), "-d " + r.x.host(f.Addr) + tail}
	}
	dst := "! -d " + r.x.loopback
	if !f.AnyLocalAddr() {
		dst = "-d " + r.x.host(f.Addr)
	}
	return leafRule{tableNAT, portLeaf(sp.Name.Protocol, f.Port), dst + tail}
}

// emptyVerdict refuses or drops new connections to f while its last class has no
// endpoints: an entry of the frontend's address and port, or, for a NodePort on every
// local address, a rule in PORTICO-NP-EMPTY.
func (r *renderer) emptyVerdict(p *portPlan, sp *model.ServicePort, f model.Frontend, comment string, v model.Verdict) {
	kind, target := setEmptyReject, chainReject
	switch v {
	case model.Reject:
	case model.Drop:
		kind, target = setEmptyDrop, "DROP"
	default:
		return
	}
	if f.AnyLocalAddr() {
		spec := dport(sp.Name.Protocol, f.Port) + ` -m comment --comment "` + comment + `" -j ` + target
		p.leaves = append(p.leaves, leafRule{tableFilter, chainNodePortsEmpty, spec})
		return
	}
	p.entries = append(p.entries, setEntry{kind, ipPort(f.Addr, sp.Name.Protocol, f.Port)})
}

// firewall lets only the port's source ranges reach load-balancer frontend f. ipset's
// net types refuse a /0, which is written as its two halves.
func (r *renderer) firewall(p *portPlan, sp *model.ServicePort, f model.Frontend) {
	key := ipPort(f.Addr, sp.Name.Protocol, f.Port)
	p.entries = append(p.entries, setEntry{setFirewall, key})
	for _, src := range sp.SourceRanges {
		for _, half := range noZeroPrefix(src.Masked()) {
			p.entries = append(p.entries, setEntry{setFirewallOK, key + "," + half.String()})
		}
	}
}

// noZeroPrefix returns p, or its two halves when it is a /0.
func noZeroPrefix(p netip.Prefix) []netip.Prefix {
	if p.Bits() != 0 {
		return []netip.Prefix{p}
	}
	if p.Addr().Is4() {
		return []netip.Prefix{netip.MustParsePrefix("0.0.0.0/1"), netip.MustParsePrefix("128.0.0.0/1")}
	}
	return []netip.Prefix{netip.MustParsePrefix("::/1"), netip.MustParsePrefix("8000::/1")}
}

// addrLeaf names the address tree's leaf of address a: by its last byte, low nibble first
// ("PORTICO-A-5-3" for .53 = 0x35).
func addrLeaf(a netip.Addr) string {
	s := a.AsSlice()
	b := s[len(s)-1]
	return fmt.Sprintf("%s%X-%X", prefixAddrTree, b&0xf, b>>4)
}

// portLeaf names the port tree's leaf of a protocol's port: by its port divided by 16
// ("PORTICO-N-T-753" for TCP 30000-30015).
func portLeaf(p model.Protocol, port uint16) string {
	return fmt.Sprintf("%s%s-%03X", prefixPortTree, protoLetter(p), port>>4)
}

// treeNode is where a chain of the dispatch tree hangs: its parent and the rule there
// that jumps to it.
type treeNode struct {
	table, parent, rule string
}

// parentOf returns the node of a tree chain (a leaf or a first-level chain); ok is false
// for every other chain.
func (x fam) parentOf(chain string) (node treeNode, ok bool) {
	var lo, hi int
	var letter string
	if n, _ := fmt.Sscanf(chain, prefixAddrTree+"%X-%X", &lo, &hi); n == 2 && addrLeafName(lo, hi) == chain {
		return treeNode{tableNAT, fmt.Sprintf("%s%X", prefixAddrTree, lo), "-d " + x.lowBits(lo|hi<<4, 0xff) + " -j " + chain}, true
	}
	if n, _ := fmt.Sscanf(chain, prefixAddrTree+"%X", &lo); n == 1 && fmt.Sprintf("%s%X", prefixAddrTree, lo) == chain {
		return treeNode{tableNAT, chainServices, "-d " + x.lowBits(lo, 0xf) + " -j " + chain}, true
	}
	if len(chain) == len(prefixPortTree)+5 || len(chain) == len(prefixPortTree)+4 {
		letter = chain[len(prefixPortTree) : len(prefixPortTree)+1]
		v, err := strconv.ParseUint(chain[len(prefixPortTree)+2:], 16, 16)
		p, known := letterProto[letter]
		if err == nil && known {
			if len(chain) == len(prefixPortTree)+5 { // a leaf: port/16
				return treeNode{tableNAT, fmt.Sprintf("%s%s-%02X", prefixPortTree, letter, v>>4),
					dportRange(p, int(v)<<4, int(v)<<4+15) + " -j " + chain}, true
			}
			return treeNode{tableNAT, chainNodePorts, dportRange(p, int(v)<<8, int(v)<<8+255) + " -j " + chain}, true
		}
	}
	return treeNode{}, false
}

var letterProto = map[string]model.Protocol{"T": model.TCP, "U": model.UDP, "S": model.SCTP}

func addrLeafName(lo, hi int) string { return fmt.Sprintf("%s%X-%X", prefixAddrTree, lo, hi) }

// lowBits matches addresses whose last byte, under mask, is v: "0.0.0.53/0.0.0.255",
// "::35/::ff" (iptables accepts non-contiguous masks and prints them so).
func (x fam) lowBits(v, mask int) string {
	if x.f == model.IPv6 {
		var a, m [16]byte
		a[15], m[15] = byte(v), byte(mask)
		return netip.AddrFrom16(a).String() + "/" + netip.AddrFrom16(m).String()
	}
	return fmt.Sprintf("0.0.0.%d/0.0.0.%d", v, mask)
}
