package main

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/portico-dev/portico/e2e/harness/env"
	"github.com/portico-dev/portico/e2e/harness/netns"
	"github.com/portico-dev/portico/e2e/harness/traffic"
)

// connections is how many connections each probe opens.
const connections = 12

// probe is one thing the demo shows answering.
type probe struct {
	label, from, proto string
	dst                netip.AddrPort
}

// showTraffic probes every frontend of every example Service and fails if one of them
// does not answer every connection.
func showTraffic(ctx context.Context, e *env.Env, svcs []*corev1.Service) error {
	step(4, steps, "Traffic: %d connections to each frontend", connections)
	var failed []string
	for _, svc := range svcs {
		if svc.Spec.Type == corev1.ServiceTypeExternalName {
			info("%-26s ExternalName: a DNS alias (%s) answered by cluster DNS; portico programs nothing for it", svc.Name, svc.Spec.ExternalName)
			continue
		}
		for _, p := range probesFor(e, svc) {
			if !runProbe(ctx, e, p) {
				failed = append(failed, p.label)
			}
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("not every connection was answered: %s", strings.Join(failed, "; "))
	}
	return nil
}

// probesFor lists the frontends of a Service, probed from the client outside the cluster
// (it routes the service range to node-a): ClusterIPs, NodePorts, load-balancer IPs. The
// first ClusterIP is also probed from a pod, whose address is not masqueraded.
func probesFor(e *env.Env, svc *corev1.Service) []probe {
	var out []probe
	cip, _ := netip.ParseAddr(svc.Spec.ClusterIP)
	for i, p := range svc.Spec.Ports {
		proto := string(p.Protocol)
		if svc.Spec.Type == corev1.ServiceTypeClusterIP {
			dst := netip.AddrPortFrom(cip, uint16(p.Port))
			out = append(out, probe{fmt.Sprintf("%s ClusterIP %s", svc.Name, proto), netns.Client, proto, dst})
			if i == 0 {
				out = append(out, probe{fmt.Sprintf("%s ClusterIP %s", svc.Name, proto), netns.PodA2, proto, dst})
			}
		}
		if p.NodePort != 0 && svc.Spec.Type == corev1.ServiceTypeNodePort {
			node := e.Topo.NodeIP(netns.NodeA, netns.IPv4)
			out = append(out, probe{fmt.Sprintf("%s NodePort", svc.Name), netns.Client, proto, netip.AddrPortFrom(node, uint16(p.NodePort))})
		}
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			ip, _ := netip.ParseAddr(ing.IP)
			out = append(out, probe{fmt.Sprintf("%s LoadBalancer", svc.Name), netns.Client, proto, netip.AddrPortFrom(ip, uint16(p.Port))})
		}
	}
	return out
}

// runProbe opens the connections and prints who answered and what source they saw.
func runProbe(ctx context.Context, e *env.Env, p probe) bool {
	st := traffic.ProbeN(ctx, e.Topo, p.from, netip.Addr{}, p.dst, p.proto, 2*time.Second, connections)
	ok := st.OK() == st.Sent && st.Sent > 0
	mark := "\033[32mok\033[0m  "
	if !ok {
		mark = "\033[31mFAIL\033[0m"
	}
	fmt.Printf("      %s %-26s from %-7s to %s/%s: %d of %d answered\n", mark, p.label, p.from, p.dst, p.proto, st.OK(), st.Sent)
	fmt.Printf("             answered by  %s\n", servers(e, st))
	fmt.Printf("             source seen  %s\n", peers(e, p, st))
	return ok
}

func servers(e *env.Env, st traffic.Stats) string {
	var parts []string
	for s, n := range st.Servers {
		parts = append(parts, fmt.Sprintf("%s %s ×%d", podName(e, s.Addr()), s.Addr(), n))
	}
	slices.Sort(parts)
	if len(parts) == 0 {
		return "nobody"
	}
	return strings.Join(parts, ", ")
}

// peers says whether the endpoints saw the client's address or the node's (masquerade).
func peers(e *env.Env, p probe, st traffic.Stats) string {
	var parts []string
	node := nodeAddrs(e, netns.NodeA)
	for a := range st.Peers {
		who := "the client itself: not masqueraded"
		switch {
		case slices.Contains(node, a):
			who = "node-a: masqueraded"
		case p.from != netns.Client:
			who = p.from + " itself: not masqueraded"
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", a, who))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// nodeAddrs returns a node's LAN and bridge addresses.
func nodeAddrs(e *env.Env, node string) []netip.Addr {
	for _, n := range e.Topo.Spec().Nodes {
		if n.Name == node {
			return []netip.Addr{n.IPv4.Addr(), n.IPv6.Addr(), n.BridgeIPv4.Addr(), n.BridgeIPv6.Addr()}
		}
	}
	return nil
}

func podName(e *env.Env, a netip.Addr) string {
	for _, n := range e.Topo.Spec().Nodes {
		for _, p := range n.Pods {
			if p.IPv4 == a || p.IPv6 == a {
				return p.Name
			}
		}
	}
	return "?"
}
