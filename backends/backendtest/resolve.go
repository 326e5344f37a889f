package backendtest

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

// Fam returns the flow's family as the topology spells it.
func (f Flow) Fam() netns.Family { return netns.Family(f.FamilyOf()) }

// Source returns the address a flow's packets leave their host with, and the interface of
// node-a they arrive on ("" when node-a sends them itself). A pod's packets carry its own
// address; pods of node-a arrive on its pod bridge, everything else on eth0. Node-a's own
// packets carry its eth0 address (its route towards every frontend but its own addresses)
// or, for a destination of node-a itself, that address.
func Source(spec netns.Spec, f Flow, dst netip.Addr) (netip.Addr, string, error) {
	fam := f.Fam()
	a := nodeSpec(spec, NodeName)
	switch {
	case f.From == spec.Client.Name:
		src, err := clientSource(spec, f)
		return src, "eth0", err
	case f.From == NodeName:
		if slices.Contains(NodeAddrs(), dst) {
			return dst, "", nil
		}
		return familyAddr(a.IPv4.Addr(), a.IPv6.Addr(), fam), "", nil
	case nodeSpec(spec, f.From) != nil:
		n := nodeSpec(spec, f.From)
		return familyAddr(n.IPv4.Addr(), n.IPv6.Addr(), fam), "eth0", nil
	}
	node, _ := podOf(spec, f.From)
	iface := "eth0"
	if node.Name == NodeName {
		iface = a.Bridge
	}
	return PodAddr(spec, f.From, fam), iface, nil
}

// clientSource picks the client's address of the flow's family: by index, by value, or
// its first.
func clientSource(spec netns.Spec, f Flow) (netip.Addr, error) {
	var addrs []netip.Addr
	for _, p := range spec.Client.Addrs {
		if netns.FamilyOf(p.Addr()) == f.Fam() {
			addrs = append(addrs, p.Addr())
		}
	}
	if a, err := netip.ParseAddr(f.Src); err == nil {
		if !slices.Contains(addrs, a) {
			return netip.Addr{}, fmt.Errorf("flow %q: the client has no address %s (it has %v)", f.Name, a, addrs)
		}
		return a, nil
	}
	i := 0
	if f.Src != "" {
		i, _ = strconv.Atoi(f.Src)
	}
	if i >= len(addrs) {
		return netip.Addr{}, fmt.Errorf("flow %q: the client has no %s address #%d (it has %v)", f.Name, f.Fam(), i, addrs)
	}
	return addrs[i], nil
}

func nodeSpec(spec netns.Spec, name string) *netns.NodeSpec {
	for i := range spec.Nodes {
		if spec.Nodes[i].Name == name {
			return &spec.Nodes[i]
		}
	}
	return nil
}

func familyAddr(v4, v6 netip.Addr, fam netns.Family) netip.Addr {
	if fam == netns.IPv6 {
		return v6
	}
	return v4
}

// Destination returns the address and port a flow targets on svc (the stored Service,
// with its allocated addresses; nil for a flow without a Service).
func Destination(spec netns.Spec, svc *corev1.Service, f Flow) (netip.AddrPort, error) {
	var port uint16
	var candidates []string
	if svc != nil {
		sp := ServicePortFor(svc, f.Protocol())
		port = uint16(sp.Port)
		switch f.Via {
		case "", "ClusterIP":
			candidates = svc.Spec.ClusterIPs
		case "NodePort":
			a := nodeSpec(spec, NodeName)
			candidates = []string{familyAddr(a.IPv4.Addr(), a.IPv6.Addr(), f.Fam()).String()}
			port = uint16(sp.NodePort)
		case "LoadBalancer":
			for _, ing := range svc.Status.LoadBalancer.Ingress {
				candidates = append(candidates, ing.IP)
			}
		case "ExternalIP":
			candidates = svc.Spec.ExternalIPs
		}
	}
	if f.Port != 0 {
		port = f.Port
	}
	if f.Addr != "" {
		candidates = []string{f.Addr}
	}
	for _, c := range candidates {
		if ip, err := netip.ParseAddr(c); err == nil && netns.FamilyOf(ip) == f.Fam() {
			return netip.AddrPortFrom(ip, port), nil
		}
	}
	return netip.AddrPort{}, fmt.Errorf("flow %q: no %s %s frontend among %v", f.Name, f.Fam(), orDefault(f.Via, "ClusterIP"), candidates)
}

// ServicePortFor returns the Service's first port of protocol proto (its first port when
// it has none of that protocol).
func ServicePortFor(svc *corev1.Service, proto string) corev1.ServicePort {
	for _, p := range svc.Spec.Ports {
		if strings.EqualFold(string(p.Protocol), proto) {
			return p
		}
	}
	return svc.Spec.Ports[0]
}

// ExpectedEndpoints returns the addresses and ports the pods of f.Expect answer on for
// f's port of svc.
func ExpectedEndpoints(spec netns.Spec, svc *corev1.Service, f Flow) []netip.AddrPort {
	target := uint16(ServerPort)
	if svc != nil {
		if t := ServicePortFor(svc, f.Protocol()).TargetPort.IntVal; t != 0 {
			target = uint16(t)
		}
	}
	var out []netip.AddrPort
	for _, p := range f.Expect.Pods {
		out = append(out, netip.AddrPortFrom(PodAddr(spec, p, f.Fam()), target))
	}
	slices.SortFunc(out, netip.AddrPort.Compare)
	return out
}
