//go:build e2e

package e2e

import (
	"net/http"
	"net/netip"

	"github.com/portico-dev/portico/e2e/harness/netns"
	"github.com/portico-dev/portico/e2e/harness/traffic"
)

// cni0A is node-a's pod bridge address: a node address that is not its primary one.
var cni0A = netip.MustParseAddr("10.244.1.1")

// externalScenarios are the flows of external frontends: NodePorts, LoadBalancer ingress
// IPs, external IPs, loadBalancerSourceRanges and externalTrafficPolicy: Local. Load
// balancer and external IPs are in 192.168.60.0/24 (the client routes it to node-a), one
// block per scenario so that no two scenarios share an address.
func externalScenarios() []Scenario {
	return []Scenario{
		{
			// nftables mode defaults nodePortAddresses to "primary": 192.168.50.10 and
			// fd00:50::10 on node-a, and no other node address.
			Name:     "NodePortPrimary",
			Services: []ServiceSetup{{Svc: service("np", nodePort()), Backends: ready(a2, b1)}},
			Flows: []Flow{
				{Name: "the NodePort on the primary address is balanced and masqueraded", From: client, Service: "np", Kind: ToNodePort, Endpoints: []string{a2, b1}, Peer: PeerNode},
				{Name: "the NodePort on cni0 is not served", From: a1, Service: "np", Kind: ToNodePort, Addr: cni0A, Outcome: traffic.Refused},
				{Name: "the ClusterIP still works", From: client, Service: "np", Endpoints: []string{a2, b1}, Peer: PeerNode},
			},
		},
		{
			Name: "LoadBalancerAndExternalIPs",
			Services: []ServiceSetup{{
				Svc:      service("lb", loadBalancer(), externalIPs("192.168.60.11"), ports(tcp("http", 80), udp("dns", 53))),
				Backends: ready(a1, b1),
				LB:       []string{"192.168.60.10"},
			}},
			Flows: []Flow{
				{Name: "the LoadBalancer IP is balanced and masqueraded", From: client, Service: "lb", Kind: ToLoadBalancer, Endpoints: []string{a1, b1}, Peer: PeerNode},
				{Name: "the LoadBalancer IP over UDP", From: client, Service: "lb", Kind: ToLoadBalancer, Proto: "UDP", Endpoints: []string{a1, b1}, Peer: PeerNode},
				{Name: "the external IP is balanced and masqueraded", From: client, Service: "lb", Kind: ToExternalIP, Endpoints: []string{a1, b1}, Peer: PeerNode},
				{Name: "the NodePort of a LoadBalancer", From: client, Service: "lb", Kind: ToNodePort, Endpoints: []string{a1, b1}, Peer: PeerNode},
				{Name: "a pod reaching the LoadBalancer IP is masqueraded (externalTrafficPolicy Cluster)", From: a2, Service: "lb", Kind: ToLoadBalancer, Endpoints: []string{a1, b1}, Peer: PeerNode},
			},
		},
		{
			Name: "SourceRanges",
			Services: []ServiceSetup{{
				Svc:      service("fw", loadBalancer(), sourceRanges("192.168.50.100/32")),
				Backends: ready(a1, b1),
				LB:       []string{"192.168.60.20"},
			}, {
				// The client has one IPv6 address, fd00:50::100: one Service allows it,
				// the other allows only addresses it does not have.
				Svc:      service("fw6", dualStack(), loadBalancer(), sourceRanges("192.168.50.100/32", "fd00:50::/112")),
				Backends: ready(a1, b1),
				LB:       []string{"192.168.60.21", "fd00:60::21"},
			}, {
				Svc:      service("fw6-deny", dualStack(), loadBalancer(), sourceRanges("192.168.50.200/32", "fd00:50::200/128")),
				Backends: ready(a1, b1),
				LB:       []string{"192.168.60.22", "fd00:60::22"},
			}},
			Flows: []Flow{
				{Name: "a source inside the ranges is answered", From: client, SrcIndex: 0, Service: "fw", Kind: ToLoadBalancer, Endpoints: []string{a1, b1}, Peer: PeerNode},
				{Name: "a source outside the ranges is dropped", From: client, SrcIndex: 1, Service: "fw", Kind: ToLoadBalancer, Outcome: traffic.Timeout},
				{Name: "the ranges do not restrict the NodePort", From: client, SrcIndex: 1, Service: "fw", Kind: ToNodePort, Endpoints: []string{a1, b1}, Peer: PeerNode},
				{Name: "the ranges do not restrict the ClusterIP", From: client, SrcIndex: 1, Service: "fw", Endpoints: []string{a1, b1}, Peer: PeerNode},
				{Name: "IPv6: a source inside the ranges is answered", From: client, Service: "fw6", Kind: ToLoadBalancer, Family: netns.IPv6, Endpoints: []string{a1, b1}, Peer: PeerNode},
				{Name: "IPv6: a source outside the ranges is dropped", From: client, Service: "fw6-deny", Kind: ToLoadBalancer, Family: netns.IPv6, Outcome: traffic.Timeout},
				{Name: "IPv4 of the same Service: a source outside the ranges is dropped", From: client, Service: "fw6-deny", Kind: ToLoadBalancer, Outcome: traffic.Timeout},
			},
		},
		{
			Name: "ExternalTrafficPolicyLocal",
			Services: []ServiceSetup{
				{Svc: service("etp", dualStack(), loadBalancer(), externalLocal()), Backends: ready(a1, b1), LB: []string{"192.168.60.30", "fd00:60::30"}},
				{Svc: service("etp-remote", dualStack(), loadBalancer(), externalLocal()), Backends: ready(b1), LB: []string{"192.168.60.31", "fd00:60::31"}},
			},
			Flows: []Flow{
				{Name: "the NodePort goes to the local endpoint only, keeping the client address", From: client, Service: "etp", Kind: ToNodePort, Endpoints: []string{a1}, Peer: PeerClient},
				{Name: "the LoadBalancer IP goes to the local endpoint only, keeping the client address", From: client, Service: "etp", Kind: ToLoadBalancer, Endpoints: []string{a1}, Peer: PeerClient},
				{Name: "a second client address is kept too", From: client, SrcIndex: 1, Service: "etp", Kind: ToLoadBalancer, Endpoints: []string{a1}, Peer: PeerClient},
				{Name: "a pod reaching the ClusterIP uses every endpoint", From: a2, Service: "etp", Endpoints: []string{a1, b1}, Peer: PeerClient},
				{Name: "the client reaching the ClusterIP uses every endpoint", From: client, Service: "etp", Endpoints: []string{a1, b1}, Peer: PeerNode},
				{Name: "a pod reaching the LoadBalancer IP short-circuits to every endpoint", From: a2, Service: "etp", Kind: ToLoadBalancer, Endpoints: []string{a1, b1}, Peer: PeerClient},
				{Name: "IPv6: the NodePort goes to the local endpoint only, keeping the client address", From: client, Service: "etp", Kind: ToNodePort, Family: netns.IPv6, Endpoints: []string{a1}, Peer: PeerClient},
				{Name: "IPv6: the LoadBalancer IP goes to the local endpoint only, keeping the client address", From: client, Service: "etp", Kind: ToLoadBalancer, Family: netns.IPv6, Endpoints: []string{a1}, Peer: PeerClient},
				{Name: "IPv6: no local endpoint: the LoadBalancer IP drops", From: client, Service: "etp-remote", Kind: ToLoadBalancer, Family: netns.IPv6, Outcome: traffic.Timeout},
				{Name: "IPv6: no local endpoint: the node itself reaching the LoadBalancer IP short-circuits", From: nodeA, Service: "etp-remote", Kind: ToLoadBalancer, Family: netns.IPv6, Endpoints: []string{b1}},
				{Name: "no local endpoint: the NodePort drops", From: client, Service: "etp-remote", Kind: ToNodePort, Outcome: traffic.Timeout},
				{Name: "no local endpoint: the LoadBalancer IP drops", From: client, Service: "etp-remote", Kind: ToLoadBalancer, Outcome: traffic.Timeout},
				{Name: "no local endpoint: the ClusterIP still works", From: client, Service: "etp-remote", Endpoints: []string{b1}, Peer: PeerNode},
				{Name: "no local endpoint: a pod reaching the LoadBalancer IP short-circuits to the remote endpoint", From: a2, Service: "etp-remote", Kind: ToLoadBalancer, Endpoints: []string{b1}, Peer: PeerClient},
				{Name: "no local endpoint: the node itself reaching the LoadBalancer IP short-circuits", From: nodeA, Service: "etp-remote", Kind: ToLoadBalancer, Endpoints: []string{b1}},
			},
			HealthChecks: []HealthCheck{
				{Name: "health check with a local endpoint answers 200", Service: "etp", Code: http.StatusOK, LocalEndpoints: 1},
				{Name: "health check without a local endpoint answers 503", Service: "etp-remote", Code: http.StatusServiceUnavailable, LocalEndpoints: 0},
			},
		},
	}
}
