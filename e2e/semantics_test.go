//go:build e2e

package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/portico-dev/portico/e2e/harness/netns"
	"github.com/portico-dev/portico/e2e/harness/traffic"
)

const (
	a1, a2 = netns.PodA1, netns.PodA2
	b1, b2 = netns.PodB1, netns.PodB2
	client = netns.Client
	nodeA  = netns.NodeA
)

// TestServiceSemantics runs the static scenarios of the packet-flow table.
func TestServiceSemantics(t *testing.T) {
	for _, sc := range staticScenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			runScenario(ctx, t, sc)
		})
	}
}

func staticScenarios() []Scenario {
	return append(append(baseScenarios(), externalScenarios()...), policyScenarios()...)
}

func baseScenarios() []Scenario {
	return []Scenario{
		{
			Name: "ClusterIP",
			Services: []ServiceSetup{{
				Svc:      service("web", ports(tcp("http", 80), udp("dns", 53))),
				Backends: ready(a1, b1, b2),
			}},
			Flows: []Flow{
				{Name: "client TCP is balanced over every endpoint and masqueraded", From: client, Service: "web", Endpoints: []string{a1, b1, b2}, Peer: PeerNode},
				{Name: "client UDP is balanced over every endpoint", From: client, Service: "web", Proto: "UDP", Endpoints: []string{a1, b1, b2}, Peer: PeerNode},
				{Name: "a pod keeps its source address", From: a2, Service: "web", Endpoints: []string{a1, b1, b2}, Peer: PeerClient},
				{Name: "the node itself reaches the ClusterIP", From: nodeA, Service: "web", Endpoints: []string{a1, b1, b2}},
				{Name: "a port the ClusterIP does not serve is refused", From: client, Service: "web", Port: 81, Outcome: traffic.Refused},
			},
		},
		{
			Name: "NoEndpoints",
			Services: []ServiceSetup{{
				Svc:      service("empty", nodePort(), ports(tcp("http", 80), udp("dns", 53))),
				Backends: ready(),
			}},
			Flows: []Flow{
				{Name: "TCP to the ClusterIP is refused at once", From: client, Service: "empty", Outcome: traffic.Refused},
				{Name: "UDP to the ClusterIP is refused at once", From: client, Service: "empty", Proto: "UDP", Outcome: traffic.Refused},
				{Name: "a pod is refused too", From: a1, Service: "empty", Outcome: traffic.Refused},
				{Name: "the NodePort is refused", From: client, Service: "empty", Kind: ToNodePort, Outcome: traffic.Refused},
			},
		},
		{
			Name:     "Hairpin",
			Services: []ServiceSetup{{Svc: service("self"), Backends: ready(a1)}},
			Flows: []Flow{
				{Name: "an endpoint reaching its own Service is masqueraded and answered", From: a1, Service: "self", Endpoints: []string{a1}, Peer: PeerNode},
			},
		},
	}
}
