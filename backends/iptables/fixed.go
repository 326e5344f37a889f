package iptables

import "github.com/portico-dev/portico/model"

// fixedChain is a chain every family holds, with the rules that depend only on the node
// settings (the tree roots and PORTICO-NP-EMPTY get their rules from the Service ports).
type fixedChain struct {
	table, name string
	rules       []string
}

// fixedChains returns the fixed chains and their rules for the table's node settings.
func (r *renderer) fixedChains(x fam) []fixedChain {
	set := func(kind string) string { return setName(x.f, kind) }
	return []fixedChain{
		{tableMangle, chainFirewall, []string{
			"-m set --match-set " + set(setFirewall) + " dst,dst -m set ! --match-set " + set(setFirewallOK) + " dst,dst,src -j DROP",
		}},
		// TCP gets a reset: ICMP errors are rate-limited by the kernel (about one per second
		// per client), so clients are refused at once.
		{tableFilter, chainReject, []string{
			"-p tcp -j REJECT --reject-with tcp-reset",
			"-j REJECT --reject-with " + x.icmpError,
		}},
		{tableFilter, chainChecks, r.checkRules(set)},
		{tableNAT, chainMarkOffCluster, r.offClusterRules()},
		{tableNAT, chainPostrouting, []string{
			"-m conntrack --ctstate DNAT -m set --match-set " + set(setHairpin) + " dst,dst,src -j MASQUERADE --random-fully",
			"-m mark ! --mark " + r.mark + " -j RETURN",
			"-j MARK --set-xmark 0x0/" + r.bit,
			"-j MASQUERADE --random-fully",
		}},
	}
}

// checkRules are PORTICO-CHECKS' rules, for new connections after DNAT: a frontend still
// addressed had no endpoint (its verdict), a cluster IP on a port it does not serve is
// rejected, any other address of the Service CIDRs dropped.
func (r *renderer) checkRules(set func(string) string) []string {
	rules := []string{
		"-m set --match-set " + set(setEmptyReject) + " dst,dst -j " + chainReject,
		"-m set --match-set " + set(setEmptyDrop) + " dst,dst -j DROP",
		"! -d " + r.x.loopback + " -m addrtype --dst-type LOCAL -j " + chainNodePortsEmpty,
		"-m set --match-set " + set(setClusterIPs) + " dst -j " + chainReject,
	}
	for _, c := range r.node.ServiceCIDRs {
		rules = append(rules, "-d "+c.Masked().String()+" -j DROP")
	}
	if r.x.f == model.IPv4 {
		// With route_localnet (NodePorts on 127.0.0.1) the node would accept packets from
		// elsewhere addressed to its loopback range; only DNATed ones may pass
		// (CVE-2020-8558). Without route_localnet the kernel drops them anyway.
		rules = append(rules, "! -s 127.0.0.0/8 -d 127.0.0.0/8 -m conntrack ! --ctstate DNAT -j DROP")
	}
	return rules
}

// offClusterRules mark for masquerading what does not come from a pod, as the node's
// LocalTraffic recognises pods (nothing when it recognises none: the model then never asks
// for MasqueradeOffCluster).
func (r *renderer) offClusterRules() []string {
	pods := r.podMatches(false)
	if len(pods) == 0 {
		return nil
	}
	var rules []string
	for _, m := range pods {
		rules = append(rules, m+" -j RETURN")
	}
	return append(rules, "-j MARK --set-xmark "+r.mark)
}

// jump is a rule portico inserts at the top of a built-in chain.
type jump struct {
	table, chain string
	spec         []string
}

// jumps lists the rules from the built-in chains into portico's chains.
func jumps() []jump {
	newConn := []string{"-m", "conntrack", "--ctstate", "NEW", "-j"}
	with := func(s []string, target string) []string { return append(append([]string{}, s...), target) }
	return []jump{
		{tableMangle, "PREROUTING", with(newConn, chainFirewall)},
		{tableMangle, "OUTPUT", with(newConn, chainFirewall)},
		{tableFilter, "INPUT", with(newConn, chainChecks)},
		{tableFilter, "FORWARD", with(newConn, chainChecks)},
		{tableFilter, "OUTPUT", with(newConn, chainChecks)},
		{tableNAT, "PREROUTING", []string{"-j", chainServices}},
		{tableNAT, "OUTPUT", []string{"-j", chainServices}},
		{tableNAT, "POSTROUTING", []string{"-j", chainPostrouting}},
	}
}
