//go:build e2e

package e2e

import (
	"net/netip"
	"strings"

	"github.com/portico-dev/portico/e2e/harness/env"
	"github.com/portico-dev/portico/e2e/harness/netns"
	"github.com/portico-dev/portico/e2e/harness/traffic"
)

// policyScenarios are the flows of internalTrafficPolicy, session affinity, endpoint
// conditions, dual-stack Services and masquerading.
func policyScenarios() []Scenario {
	return []Scenario{
		{
			Name: "InternalTrafficPolicyLocal",
			Services: []ServiceSetup{
				{Svc: service("itp", internalLocal()), Backends: ready(a1, b1)},
				{Svc: service("itp-remote", internalLocal(), nodePort()), Backends: ready(b1)},
			},
			Flows: []Flow{
				{Name: "a pod reaches the local endpoint only", From: a2, Service: "itp", Endpoints: []string{a1}, Peer: PeerClient},
				{Name: "the node reaches the local endpoint only", From: nodeA, Service: "itp", Endpoints: []string{a1}},
				{Name: "an off-cluster client reaches the local endpoint only, masqueraded", From: client, Service: "itp", Endpoints: []string{a1}, Peer: PeerNode},
				{Name: "no local endpoint: a pod is dropped", From: a2, Service: "itp-remote", Outcome: traffic.Timeout},
				{Name: "no local endpoint: the NodePort still uses the remote endpoint", From: client, Service: "itp-remote", Kind: ToNodePort, Endpoints: []string{b1}, Peer: PeerNode},
			},
		},
		{
			Name: "SessionAffinity",
			Services: []ServiceSetup{{
				Svc:      service("sticky", affinity(10800), ports(tcp("http", 80), udp("dns", 53))),
				Backends: ready(a1, b1, b2),
			}},
			Flows: []Flow{
				{Name: "16 client connections land on one endpoint", From: client, Service: "sticky", Endpoints: []string{a1, b1, b2}, Sticky: true, Probes: 16, Peer: PeerNode},
				{Name: "16 client UDP sockets land on one endpoint", From: client, Service: "sticky", Proto: "UDP", Endpoints: []string{a1, b1, b2}, Sticky: true, Probes: 16, Peer: PeerNode},
				{Name: "16 connections of a pod land on one endpoint", From: a2, Service: "sticky", Endpoints: []string{a1, b1, b2}, Sticky: true, Probes: 16, Peer: PeerClient},
			},
		},
		{
			Name: "TerminatingFallback",
			Services: []ServiceSetup{
				{Svc: service("fallback"), Backends: []env.Backend{
					{Pod: a1, NotReady: true, Terminating: true},
					{Pod: b1, NotReady: true, NotServing: true, Terminating: true},
				}},
				{Svc: service("ready-wins"), Backends: []env.Backend{
					{Pod: a1, NotReady: true, Terminating: true},
					{Pod: b2},
				}},
			},
			Flows: []Flow{
				{Name: "only serving terminating endpoints: the serving one answers", From: client, Service: "fallback", Endpoints: []string{a1}, Peer: PeerNode},
				{Name: "a ready endpoint exists: only it answers", From: client, Service: "ready-wins", Endpoints: []string{b2}, Peer: PeerNode},
			},
		},
		{
			Name: "DualStack",
			Services: []ServiceSetup{{
				Svc:      service("ds", dualStack(), loadBalancer(), ports(tcp("http", 80), udp("dns", 53))),
				Backends: ready(a1, b1),
				LB:       []string{"192.168.60.40", "fd00:60::40"},
			}},
			Flows: []Flow{
				{Name: "IPv6 ClusterIP from the client", From: client, Service: "ds", Family: netns.IPv6, Endpoints: []string{a1, b1}, Peer: PeerNode},
				{Name: "IPv6 ClusterIP over UDP", From: client, Service: "ds", Family: netns.IPv6, Proto: "UDP", Endpoints: []string{a1, b1}, Peer: PeerNode},
				{Name: "IPv6 NodePort on fd00:50::10", From: client, Service: "ds", Kind: ToNodePort, Family: netns.IPv6, Endpoints: []string{a1, b1}, Peer: PeerNode},
				{Name: "IPv6 LoadBalancer IP", From: client, Service: "ds", Kind: ToLoadBalancer, Family: netns.IPv6, Endpoints: []string{a1, b1}, Peer: PeerNode},
				// Whether a pod's IPv6 traffic counts as in-cluster depends on clusterCIDR; see
				// clusterCIDRPeer.
				{Name: "IPv6 ClusterIP from a pod is masqueraded as clusterCIDR says", From: a2, Service: "ds", Family: netns.IPv6, Endpoints: []string{a1, b1}, Peer: clusterCIDRPeer(a2, netns.IPv6)},
				{Name: "IPv6 port the ClusterIP does not serve is refused", From: client, Service: "ds", Family: netns.IPv6, Port: 81, Outcome: traffic.Refused},
				{Name: "IPv4 ClusterIP", From: client, Service: "ds", Endpoints: []string{a1, b1}, Peer: PeerNode},
				{Name: "IPv4 NodePort", From: client, Service: "ds", Kind: ToNodePort, Endpoints: []string{a1, b1}, Peer: PeerNode},
			},
		},
		masqueradeScenario("MasqueradeClusterCIDR", map[netns.Family][2]Peer{
			netns.IPv4: {PeerClient, PeerClient},
			netns.IPv6: {clusterCIDRPeer(a2, netns.IPv6), clusterCIDRPeer(b1, netns.IPv6)},
		}),
	}
}

// masqueradeScenario checks which ClusterIP traffic is masqueraded, for a dual-stack
// Service whose only endpoint is pod-a1: the client's (always), and per family pod-a2's
// and pod-b1's (through node-b, which routes the service CIDRs to node-a), as the
// local-traffic detection says: peers[family] = {pod-a2's, pod-b1's}.
func masqueradeScenario(name string, peers map[netns.Family][2]Peer) Scenario {
	sc := Scenario{
		Name:     name,
		Services: []ServiceSetup{{Svc: service("masq", dualStack()), Backends: ready(a1)}},
	}
	for _, fam := range netns.Families {
		p := peers[fam]
		sc.Flows = append(sc.Flows,
			Flow{Name: string(fam) + " the client is masqueraded", From: client, Service: "masq", Family: fam, Endpoints: []string{a1}, Peer: PeerNode},
			Flow{Name: string(fam) + " pod-a2 (local pod) is " + peerWord(p[0]), From: a2, Service: "masq", Family: fam, Endpoints: []string{a1}, Peer: p[0]},
			Flow{Name: string(fam) + " pod-b1 (remote pod) is " + peerWord(p[1]), From: b1, Service: "masq", Family: fam, Endpoints: []string{a1}, Peer: p[1]},
		)
	}
	return sc
}

// clusterCIDRPeer is what a pod's ClusterIP traffic must look like with detectLocalMode
// ClusterCIDR: not masqueraded when clusterCIDR holds the pod's address, else
// masqueraded (traffic from outside the cluster CIDR counts as off-cluster).
//
// The expectation is derived from the configuration (the harness's clusterCIDR
// "10.244.0.0/16,fd00:244::/44" covers both nodes' pod ranges), so the flow stays right
// whatever ranges a test configures.
func clusterCIDRPeer(pod string, fam netns.Family) Peer {
	ip := suite.Topo.PodIP(pod, fam)
	s, _ := suite.Portico.ConfigDocument()["clusterCIDR"].(string)
	for _, c := range strings.Split(s, ",") {
		if p, err := netip.ParsePrefix(strings.TrimSpace(c)); err == nil && p.Contains(ip) {
			return PeerClient
		}
	}
	return PeerNode
}

func peerWord(p Peer) string {
	if p == PeerNode {
		return "masqueraded"
	}
	return "not masqueraded"
}
