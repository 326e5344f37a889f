package nftables

import (
	"fmt"

	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/model"
)

// baseChain is a chain attached to a netfilter hook.
type baseChain struct {
	name     string
	typ      knftables.BaseChainType
	hook     knftables.BaseChainHook
	priority knftables.BaseChainPriority
	rules    []string
}

// baseChains returns the chains hooked into netfilter, in the order they are created.
func baseChains() []baseChain {
	newConn := "ct state new jump "
	return []baseChain{
		{"filter-prerouting", knftables.FilterType, knftables.PreroutingHook, knftables.DNATPriority + "-10",
			[]string{newConn + chainFirewallCheck}},
		{"filter-input", knftables.FilterType, knftables.InputHook, knftables.FilterPriority + "-10",
			[]string{newConn + chainNodePortsCheck, newConn + chainEndpointsCheck}},
		{"filter-forward", knftables.FilterType, knftables.ForwardHook, knftables.FilterPriority + "-10",
			[]string{newConn + chainEndpointsCheck, newConn + chainClusterIPCheck}},
		{"filter-output", knftables.FilterType, knftables.OutputHook, knftables.DNATPriority + "-10",
			[]string{newConn + chainFirewallCheck}},
		{"filter-output-post-dnat", knftables.FilterType, knftables.OutputHook, knftables.DNATPriority + "+10",
			[]string{newConn + chainEndpointsCheck, newConn + chainClusterIPCheck}},
		{"nat-prerouting", knftables.NATType, knftables.PreroutingHook, knftables.DNATPriority,
			[]string{"jump " + chainServices}},
		{"nat-output", knftables.NATType, knftables.OutputHook, knftables.DNATPriority,
			[]string{"jump " + chainServices}},
		{"nat-postrouting", knftables.NATType, knftables.PostroutingHook, knftables.SNATPriority,
			[]string{"jump " + chainMasquerading}},
	}
}

// helperChains returns the fixed regular chains and their rules, for the Node settings of
// the table being synced.
func (r *renderer) helperChains(mark uint32) map[string][]string {
	f := r.f
	m := fmt.Sprintf("0x%08x", mark)
	addrProtoPort := f.ip + " daddr . meta l4proto . th dport"
	nodeLocal := fmt.Sprintf("fib daddr type local %s daddr != %s meta l4proto . th dport", f.ip, f.loopback)
	return map[string][]string{
		chainMarkMasq:       {"meta mark set meta mark | " + m},
		chainMarkOffCluster: r.offClusterRules(),
		chainMasquerading: {
			fmt.Sprintf("meta mark & %s == %s meta mark set meta mark ^ %s masquerade fully-random", m, m, m),
			fmt.Sprintf("ct status dnat %s saddr . %s daddr @%s masquerade fully-random", f.ip, f.ip, setHairpin),
		},
		// TCP gets a reset: ICMP errors are rate-limited by the kernel (about one per
		// second per client), a reset is not, so clients are refused at once.
		chainReject: {"meta l4proto tcp reject with tcp reset", "reject"},
		chainFirewallCheck: {fmt.Sprintf("%s @%s %s . %s saddr != @%s drop",
			addrProtoPort, setFirewallIPs, addrProtoPort, f.ip, setFirewallAllow)},
		chainEndpointsCheck: {addrProtoPort + " vmap @" + mapNoEndpointServices},
		chainNodePortsCheck: {nodeLocal + " vmap @" + mapNoEndpointNodePort},
		chainClusterIPCheck: r.clusterIPCheckRules(),
		chainServices: {
			addrProtoPort + " vmap @" + mapServiceIPs,
			nodeLocal + " vmap @" + mapServiceNodePorts,
		},
	}
}

// clusterIPCheckRules reject new connections to a ClusterIP on a port it does not serve,
// and drop those to an address of the Service CIDRs that no Service holds.
func (r *renderer) clusterIPCheckRules() []string {
	rules := []string{fmt.Sprintf("%s daddr @%s goto %s", r.f.ip, setClusterIPs, chainReject)}
	if cidrs := r.node.ServiceCIDRs; len(cidrs) > 0 {
		rules = append(rules, fmt.Sprintf("%s daddr %s drop", r.f.ip, prefixSet(cidrs)))
	}
	return rules
}

// helperChainOrder lists helperChains in creation order (jump targets first).
var helperChainOrder = []string{
	chainMarkMasq, chainMarkOffCluster, chainMasquerading, chainReject, chainFirewallCheck,
	chainEndpointsCheck, chainNodePortsCheck, chainClusterIPCheck, chainServices,
}

// sharedSets returns the sets and maps that Service ports add elements to.
func sharedSets(f fam) []knftables.Object {
	a := f.addrType
	objs := []knftables.Object{
		&knftables.Map{Name: mapServiceIPs, Type: a + " . inet_proto . inet_service : verdict",
			Comment: ptr("ClusterIP, external IP, LoadBalancer and NodePort frontends -> entry chains")},
		&knftables.Map{Name: mapServiceNodePorts, Type: "inet_proto . inet_service : verdict",
			Comment: ptr("NodePorts on every local address -> entry chains")},
		&knftables.Map{Name: mapNoEndpointServices, Type: a + " . inet_proto . inet_service : verdict",
			Comment: ptr("frontends without usable endpoints -> reject or drop")},
		&knftables.Map{Name: mapNoEndpointNodePort, Type: "inet_proto . inet_service : verdict",
			Comment: ptr("NodePorts (every local address) without usable endpoints -> reject or drop")},
		&knftables.Set{Name: setClusterIPs, Type: a,
			Comment: ptr("cluster IPs: ports they do not serve are rejected")},
		&knftables.Set{Name: setFirewallIPs, Type: a + " . inet_proto . inet_service",
			Comment: ptr("LoadBalancer frontends with loadBalancerSourceRanges")},
		&knftables.Set{Name: setFirewallAllow, Type: a + " . inet_proto . inet_service . " + a,
			Flags: []knftables.SetFlag{knftables.IntervalFlag}, Comment: ptr("allowed frontend . source range pairs")},
		&knftables.Set{Name: setHairpin, Type: a + " . " + a,
			Comment: ptr("local endpoint . itself: hairpin traffic to masquerade")},
	}
	return objs
}

// endpointMap returns the endpoint map of protocol p and bucket b. Endpoint maps are
// created on first use, so that a small cluster's table holds only the ones it needs.
func endpointMap(f fam, p model.Protocol, b int) *knftables.Map {
	return &knftables.Map{Name: endpointMapName(p, b),
		TypeOf: fmt.Sprintf("numgen random mod 1 : %s daddr . %s dport", f.ip, proto(p))}
}

// sharedSetNames returns the names of sharedSets.
func sharedSetNames(f fam) map[string]bool {
	out := map[string]bool{}
	for _, o := range sharedSets(f) {
		switch s := o.(type) {
		case *knftables.Set:
			out[s.Name] = true
		case *knftables.Map:
			out[s.Name] = true
		}
	}
	return out
}

func ptr[T any](v T) *T { return &v }
