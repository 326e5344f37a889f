package ipvs

import (
	"fmt"
	"net/netip"
	"strings"

	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/model"
)

// TableName is portico's nftables table in ipvs mode (one per family: ip and ip6), which
// does what IPVS cannot: masquerading, refusing, dropping and filtering by source.
const TableName = "portico-ipvs"

// Sets of the table. Frontend elements are "address . protocol . port".
const (
	setFrontends    = "frontends"     // every frontend with real servers
	setClusterIPs   = "cluster-ips"   // every ClusterIP address
	setServiceCIDRs = "service-cidrs" // the Service CIDRs (interval)
	setEmptyReject  = "empty-reject"  // frontends refused while their class has no endpoint
	setEmptyDrop    = "empty-drop"    // frontends dropped while their class has no endpoint
	setFirewall     = "firewall"      // load-balancer frontends with source ranges
	setFirewallOK   = "firewall-allow"
	setMasqPods     = "masq-from-pods"   // frontends masqueraded for pods of this node
	setMasqOthers   = "masq-from-others" // ... for other sources entering the node
	setMasqNode     = "masq-from-node"   // ... for the node itself
	setHairpin      = "hairpin"          // local endpoint . itself
)

// nftFamily holds the names that differ between the two families.
type nftFamily struct {
	ip, addrType string
}

func newNFTFamily(f model.Family) nftFamily {
	if f == model.IPv6 {
		return nftFamily{"ip6", "ipv6_addr"}
	}
	return nftFamily{"ip", "ipv4_addr"}
}

// chainReject refuses a connection: a TCP reset (at once, where ICMP errors are
// rate-limited), else ICMP port unreachable.
const chainReject = "refuse"

// skeleton adds the table's sets and chains to tx, with their rules; the elements come
// from elements(). mark is the masquerade bit ("0x4000"); node is the family's settings.
func skeleton(tx *knftables.Transaction, f model.Family, mark string, node model.Node) {
	x := newNFTFamily(f)
	tx.Add(&knftables.Table{Comment: knftables.PtrTo("portico ipvs mode: what IPVS cannot do")})
	tx.Flush(&knftables.Table{})
	fe := x.addrType + " . inet_proto . inet_service"
	for _, s := range []struct {
		name, typ string
		interval  bool
	}{
		{setFrontends, fe, false}, {setClusterIPs, x.addrType, false}, {setServiceCIDRs, x.addrType, true},
		{setEmptyReject, fe, false}, {setEmptyDrop, fe, false}, {setFirewall, fe, false},
		{setFirewallOK, fe + " . " + x.addrType, true},
		{setMasqPods, fe, false}, {setMasqOthers, fe, false}, {setMasqNode, fe, false},
		{setHairpin, x.addrType + " . " + x.addrType, false},
	} {
		set := &knftables.Set{Name: s.name, Type: s.typ}
		if s.interval {
			set.Flags = []knftables.SetFlag{knftables.IntervalFlag}
		}
		tx.Add(set)
	}
	chains(tx, x, mark, node)
}

// chains adds the base chains. The checks run before IPVS takes the packet (IPVS hooks
// local input at priority 98 and local output at -98): input at filter priority, output
// at mangle priority. The masquerade mark is set before IPVS too; postrouting
// masquerades marked packets and hairpin connections.
func chains(tx *knftables.Transaction, x nftFamily, mark string, node model.Node) {
	dst := x.ip + " daddr . meta l4proto . th dport"
	checks := []string{
		"ct state new " + dst + " @" + setEmptyReject + " jump " + chainReject,
		"ct state new " + dst + " @" + setEmptyDrop + " drop",
		dst + " @" + setFirewall + " " + dst + " . " + x.ip + " saddr != @" + setFirewallOK + " drop",
		"ct state new " + x.ip + " daddr @" + setClusterIPs + " " + dst + " != @" + setFrontends + " jump " + chainReject,
		"ct state new " + x.ip + " daddr @" + setServiceCIDRs + " " + x.ip + " daddr != @" + setClusterIPs + " drop",
	}
	setMark := "meta mark set meta mark | " + mark
	tx.Add(&knftables.Chain{Name: chainReject})
	tx.Add(&knftables.Rule{Chain: chainReject, Rule: "meta l4proto tcp reject with tcp reset"})
	tx.Add(&knftables.Rule{Chain: chainReject, Rule: "reject"})
	base := []struct {
		name     string
		typ      knftables.BaseChainType
		hook     knftables.BaseChainHook
		priority knftables.BaseChainPriority
		rules    []string
	}{
		{"input", knftables.FilterType, knftables.InputHook, knftables.FilterPriority, checks},
		// An unallocated Service address is not local: it is routed.
		{"forward", knftables.FilterType, knftables.ForwardHook, knftables.FilterPriority, checks[len(checks)-1:]},
		{"output", knftables.FilterType, knftables.OutputHook, knftables.ManglePriority,
			append(checks, dst+" @"+setMasqNode+" "+setMark)},
		{"prerouting", knftables.FilterType, knftables.PreroutingHook, knftables.ManglePriority, masqRules(x, dst, setMark, node)},
		{"postrouting", knftables.NATType, knftables.PostroutingHook, knftables.SNATPriority, []string{
			fmt.Sprintf("meta mark & %s == %s meta mark set meta mark ^ %s masquerade fully-random", mark, mark, mark),
			x.ip + " saddr . " + x.ip + " daddr @" + setHairpin + " masquerade fully-random",
		}},
	}
	for _, c := range base {
		tx.Add(&knftables.Chain{Name: c.name, Type: knftables.PtrTo(c.typ), Hook: knftables.PtrTo(c.hook), Priority: knftables.PtrTo(c.priority)})
		for _, r := range c.rules {
			tx.Add(&knftables.Rule{Chain: c.name, Rule: r})
		}
	}
}

// masqRules marks packets entering the node for masquerading: from pods (as the node's
// LocalTraffic recognises them) by masq-from-pods, from elsewhere by masq-from-others.
func masqRules(x nftFamily, dst, setMark string, node model.Node) []string {
	lt := node.LocalTraffic
	var pods, others string
	switch {
	case len(lt.CIDRs) > 0:
		set := "{ "
		for i, p := range lt.CIDRs {
			if i > 0 {
				set += ", "
			}
			set += p.String()
		}
		set += " }"
		pods, others = x.ip+" saddr "+set, x.ip+" saddr != "+set
	case lt.BridgeInterface != "":
		pods, others = fmt.Sprintf("iifname %q", lt.BridgeInterface), fmt.Sprintf("iifname != %q", lt.BridgeInterface)
	case lt.InterfacePrefix != "":
		pods, others = fmt.Sprintf("iifname %q", lt.InterfacePrefix+"*"), fmt.Sprintf("iifname != %q", lt.InterfacePrefix+"*")
	default:
		return []string{dst + " @" + setMasqOthers + " " + setMark}
	}
	return []string{pods + " " + dst + " @" + setMasqPods + " " + setMark, others + " " + dst + " @" + setMasqOthers + " " + setMark}
}

// element is one element of one set.
type element struct {
	set string
	key string
}

// frontendKey is the element key of a frontend.
func frontendKey(a netip.Addr, p model.Protocol, port uint16) string {
	return fmt.Sprintf("%s . %s . %d", a, strings.ToLower(p.String()), port)
}
