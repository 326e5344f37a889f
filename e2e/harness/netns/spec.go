package netns

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"regexp"
)

// Family names an IP family. Its values match the Kubernetes IPFamily strings.
type Family string

// The two IP families.
const (
	IPv4 Family = "IPv4"
	IPv6 Family = "IPv6"
)

// Families lists both IP families, IPv4 first.
var Families = []Family{IPv4, IPv6}

// Short names of the namespaces in the default spec.
const (
	API    = "api"
	LAN    = "lan"
	NodeA  = "node-a"
	NodeB  = "node-b"
	Client = "client"
	PodA1  = "pod-a1"
	PodA2  = "pod-a2"
	PodB1  = "pod-b1"
	PodB2  = "pod-b2"
)

// maxIfName is the longest interface name the kernel accepts (IFNAMSIZ - 1).
const maxIfName = 15

// prefixPattern matches a harness run prefix: "pc" and six hex digits.
var prefixPattern = regexp.MustCompile(`^pc[0-9a-f]{6}$`)

// namePattern matches the full name of a namespace a harness run created.
var namePattern = regexp.MustCompile(`^(pc[0-9a-f]{6})-[a-z0-9-]+$`)

// Spec describes a topology as plain data. Namespace names in it are short names
// ("node-a"); the topology prefixes them with Prefix ("pc1a2b3c-node-a").
type Spec struct {
	// Prefix is the per-run unique prefix ("pc" and six hex digits). New picks a random
	// one when it is empty.
	Prefix string
	// API is the control-plane namespace.
	API APISpec
	// LAN is the L2 switch joining the nodes and the client.
	LAN LANSpec
	// Nodes are the cluster nodes, each with its pods.
	Nodes []NodeSpec
	// Client is the host outside the cluster.
	Client ClientSpec
}

// APISpec describes the control-plane namespace and its point-to-point link to one node.
type APISpec struct {
	// Name is the namespace's short name.
	Name string
	// Node is the short name of the node namespace holding the other end of the link.
	Node string
	// Addr is the api side's address (the apiserver binds to it).
	Addr netip.Prefix
	// NodeAddr is the node side's address.
	NodeAddr netip.Prefix
	// Routes are extra routes in the api namespace.
	Routes []Route
}

// LANSpec describes the namespace that holds the bridge joining nodes and client.
type LANSpec struct {
	// Name is the namespace's short name.
	Name string
	// Bridge is the bridge's interface name.
	Bridge string
}

// NodeSpec describes one node namespace: eth0 on the LAN, a pod bridge and its pods.
type NodeSpec struct {
	// Name is the namespace's short name; it doubles as the Kubernetes node name.
	Name string
	// IPv4 and IPv6 are eth0's addresses; a zero prefix leaves that family out.
	IPv4, IPv6 netip.Prefix
	// Bridge is the pod bridge's interface name.
	Bridge string
	// BridgeIPv4 and BridgeIPv6 are the pod bridge's addresses (the pods' gateways);
	// their masked prefixes are the node's pod CIDRs.
	BridgeIPv4, BridgeIPv6 netip.Prefix
	// Pods are the pods attached to the bridge.
	Pods []PodSpec
	// Routes are extra routes in the node namespace (other nodes' pod CIDRs).
	Routes []Route
	// Zone is the node's topology zone.
	Zone string
}

// PodSpec describes one pod namespace, attached to its node's bridge.
type PodSpec struct {
	// Name is the namespace's short name.
	Name string
	// IPv4 and IPv6 are eth0's addresses inside the bridge's prefixes; a zero address
	// leaves that family out.
	IPv4, IPv6 netip.Addr
}

// ClientSpec describes the namespace outside the cluster.
type ClientSpec struct {
	// Name is the namespace's short name.
	Name string
	// Addrs are eth0's addresses, in order; the first of a family is its primary.
	Addrs []netip.Prefix
	// Routes are the client's routes towards cluster-facing prefixes.
	Routes []Route
}

// Route is a gatewayed route.
type Route struct {
	// Dst is the destination prefix.
	Dst netip.Prefix
	// Via is the gateway; it must be on a connected prefix.
	Via netip.Addr
}

// RandomPrefix returns a fresh run prefix: "pc" and six random hex digits.
func RandomPrefix() string {
	var b [3]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux.
	return "pc" + hex.EncodeToString(b[:])
}

// DefaultSpec returns the standard topology with the given prefix: api, lan, node-a
// (where portico runs), node-b (a remote node), two pods on each node, and a client.
//
// node-b runs no proxy: it routes Service traffic (the service CIDRs) to node-a, so that
// tests can send traffic from a pod of another node through portico.
func DefaultSpec(prefix string) Spec {
	nodeB := defaultNode(NodeB, "zone-b", 11, 2, 1, 10, PodB1, PodB2)
	nodeB.Routes = append(nodeB.Routes,
		viaRoute("10.96.0.0/16", "192.168.50.10"),
		viaRoute("fd00:96::/112", "fd00:50::10"))
	return Spec{
		Prefix: prefix,
		API: APISpec{
			Name: API, Node: NodeA,
			Addr:     netip.MustParsePrefix("10.0.255.1/30"),
			NodeAddr: netip.MustParsePrefix("10.0.255.2/30"),
		},
		LAN: LANSpec{Name: LAN, Bridge: "br0"},
		Nodes: []NodeSpec{
			defaultNode(NodeA, "zone-a", 10, 1, 2, 11, PodA1, PodA2),
			nodeB,
		},
		Client: ClientSpec{
			Name: Client,
			Addrs: []netip.Prefix{
				netip.MustParsePrefix("192.168.50.100/24"),
				netip.MustParsePrefix("192.168.50.101/24"),
				netip.MustParsePrefix("fd00:50::100/64"),
				// An address in the load-balancer range: a load balancer that SNATs to
				// its own ingress IP (the flow table's SourceRangesOwnIngress).
				netip.MustParsePrefix("192.168.60.71/32"),
			},
			Routes: []Route{
				viaRoute("10.96.0.0/16", "192.168.50.10"),
				viaRoute("fd00:96::/112", "fd00:50::10"),
				viaRoute("192.168.60.0/24", "192.168.50.10"),
				viaRoute("fd00:60::/64", "fd00:50::10"),
			},
		},
	}
}

// defaultNode builds a node of the default spec: host byte h on the LAN, pod subnet
// index s, a route to the other node's pod subnet o through its host byte oh.
func defaultNode(name, zone string, h, s, o, oh int, pod1, pod2 string) NodeSpec {
	return NodeSpec{
		Name:       name,
		IPv4:       netip.MustParsePrefix(fmt.Sprintf("192.168.50.%d/24", h)),
		IPv6:       netip.MustParsePrefix(fmt.Sprintf("fd00:50::%d/64", h)),
		Bridge:     "cni0",
		BridgeIPv4: netip.MustParsePrefix(fmt.Sprintf("10.244.%d.1/24", s)),
		BridgeIPv6: netip.MustParsePrefix(fmt.Sprintf("fd00:244:%d::1/64", s)),
		Pods: []PodSpec{
			{Name: pod1, IPv4: addr("10.244.%d.10", s), IPv6: addr("fd00:244:%d::10", s)},
			{Name: pod2, IPv4: addr("10.244.%d.11", s), IPv6: addr("fd00:244:%d::11", s)},
		},
		// The client stands for the world outside the cluster: it is the nodes' default
		// gateway, so that a node routes (and its rules then reject or forward) traffic to
		// any address, as a real node with a default route does.
		Routes: []Route{
			viaRoute(fmt.Sprintf("10.244.%d.0/24", o), fmt.Sprintf("192.168.50.%d", oh)),
			viaRoute(fmt.Sprintf("fd00:244:%d::/64", o), fmt.Sprintf("fd00:50::%d", oh)),
			viaRoute("0.0.0.0/0", "192.168.50.100"),
			viaRoute("::/0", "fd00:50::100"),
		},
		Zone: zone,
	}
}

func addr(format string, args ...any) netip.Addr {
	return netip.MustParseAddr(fmt.Sprintf(format, args...))
}

func viaRoute(dst, via string) Route {
	return Route{Dst: netip.MustParsePrefix(dst), Via: netip.MustParseAddr(via)}
}

// FamilyOf returns the family of a.
func FamilyOf(a netip.Addr) Family {
	if a.Unmap().Is4() {
		return IPv4
	}
	return IPv6
}

// Validate checks that the spec is usable: a valid prefix, unique short names, interface
// names within the kernel's limit, pod addresses inside their bridge's prefixes.
func (s Spec) Validate() error {
	if !prefixPattern.MatchString(s.Prefix) {
		return fmt.Errorf("netns: prefix %q does not match %s", s.Prefix, prefixPattern)
	}
	seen := map[string]bool{}
	for _, n := range s.shortNames() {
		if n == "" || seen[n] {
			return fmt.Errorf("netns: namespace name %q is empty or repeated", n)
		}
		if !namePattern.MatchString(s.Prefix + "-" + n) {
			return fmt.Errorf("netns: namespace name %q must be lower-case letters, digits and '-'", n)
		}
		seen[n] = true
	}
	if s.node(s.API.Node) == nil {
		return fmt.Errorf("netns: api link node %q is not a node of the spec", s.API.Node)
	}
	for _, n := range s.Nodes {
		if err := n.validate(); err != nil {
			return err
		}
	}
	for _, n := range append(s.shortNames(), s.LAN.Bridge) {
		if len(n) > maxIfName {
			return fmt.Errorf("netns: %q is longer than %d characters (used as an interface name)", n, maxIfName)
		}
	}
	return nil
}

func (n NodeSpec) validate() error {
	for _, p := range n.Pods {
		if len(podPort(p.Name)) > maxIfName {
			return fmt.Errorf("netns: pod name %q too long for its bridge port name", p.Name)
		}
		if p.IPv4.IsValid() && !n.BridgeIPv4.Masked().Contains(p.IPv4) {
			return fmt.Errorf("netns: pod %s address %s outside %s", p.Name, p.IPv4, n.BridgeIPv4)
		}
		if p.IPv6.IsValid() && !n.BridgeIPv6.Masked().Contains(p.IPv6) {
			return fmt.Errorf("netns: pod %s address %s outside %s", p.Name, p.IPv6, n.BridgeIPv6)
		}
	}
	return nil
}

// podPort is the name of a pod's veth end on its node's bridge.
func podPort(pod string) string { return "veth-" + pod }

// shortNames lists every namespace's short name in creation order.
func (s Spec) shortNames() []string {
	names := []string{s.API.Name, s.LAN.Name}
	for _, n := range s.Nodes {
		names = append(names, n.Name)
		for _, p := range n.Pods {
			names = append(names, p.Name)
		}
	}
	return append(names, s.Client.Name)
}

func (s Spec) node(name string) *NodeSpec {
	for i := range s.Nodes {
		if s.Nodes[i].Name == name {
			return &s.Nodes[i]
		}
	}
	return nil
}

func (s Spec) pod(name string) (*NodeSpec, *PodSpec) {
	for i := range s.Nodes {
		for j := range s.Nodes[i].Pods {
			if s.Nodes[i].Pods[j].Name == name {
				return &s.Nodes[i], &s.Nodes[i].Pods[j]
			}
		}
	}
	return nil, nil
}

// PodCIDRs returns the node's pod CIDRs (its bridge prefixes, masked), IPv4 first.
func (n NodeSpec) PodCIDRs() []netip.Prefix {
	var out []netip.Prefix
	for _, p := range []netip.Prefix{n.BridgeIPv4, n.BridgeIPv6} {
		if p.IsValid() {
			out = append(out, p.Masked())
		}
	}
	return out
}
