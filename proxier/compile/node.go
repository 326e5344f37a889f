// Package compile turns Kubernetes objects into the backend-neutral model: the pure part of
// the proxier. Nothing here talks to the API server or the kernel.
package compile

import (
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/portico-dev/portico/model"
)

// NodePortAddrs are the addresses of one family that NodePorts answer on.
type NodePortAddrs struct {
	// Any is true when NodePorts answer on every local address (nodePortAddresses "all"
	// or a zero CIDR).
	Any bool
	// Addrs are the node's addresses selected by nodePortAddresses, sorted (unused when
	// Any is set).
	Addrs []netip.Addr
}

// NodeInfo is what compiling needs to know about this node.
type NodeInfo struct {
	// Name is the node's name (hostnameOverride).
	Name string
	// Zone is the node's topology.kubernetes.io/zone label.
	Zone string
	// NodePorts are the NodePort addresses per family.
	NodePorts map[model.Family]NodePortAddrs
	// Tables are the per-family Node settings of the model.
	Tables map[model.Family]model.Node
}

// NodePortSelector is nodePortAddresses in parsed form.
type NodePortSelector struct {
	Primary, Localhost, All bool
	CIDRs                   []netip.Prefix
}

// LocalTrafficConfig is detectLocalMode with its parameters.
type LocalTrafficConfig struct {
	// Mode is ClusterCIDR, NodeCIDR, BridgeInterface or InterfaceNamePrefix.
	Mode            string
	ClusterCIDRs    []netip.Prefix
	BridgeInterface string
	InterfacePrefix string
}

// NodeConfig is the configuration that ResolveNode combines with the Node object.
type NodeConfig struct {
	Name          string
	Families      []model.Family
	NodePorts     NodePortSelector
	LocalTraffic  LocalTrafficConfig
	MasqueradeAll bool
	// BindAddress, when not unspecified, is the node's primary IP of its family
	// (kube-proxy's bindAddress rule).
	BindAddress netip.Addr
}

// ResolveNode computes NodeInfo from the configuration, this node's Node object (nil when
// not known yet) and the addresses currently assigned to the node's interfaces.
func ResolveNode(cfg NodeConfig, node *corev1.Node, localAddrs []netip.Addr) NodeInfo {
	info := NodeInfo{
		Name:      cfg.Name,
		NodePorts: map[model.Family]NodePortAddrs{},
		Tables:    map[model.Family]model.Node{},
	}
	if node != nil {
		info.Zone = node.Labels[corev1.LabelTopologyZone]
	}
	primary := PrimaryIPs(node, cfg.BindAddress)
	for _, fam := range cfg.Families {
		info.NodePorts[fam] = selectNodePortAddrs(cfg.NodePorts, fam, primary[fam], localAddrs)
		info.Tables[fam] = model.Node{
			Name:          cfg.Name,
			LocalTraffic:  localTraffic(cfg.LocalTraffic, fam, node),
			MasqueradeAll: cfg.MasqueradeAll,
		}
	}
	return info
}

// PrimaryIPs returns the node's primary IP per family: bindAddress when it is set, else the
// first InternalIP of the Node object, else its first ExternalIP.
func PrimaryIPs(node *corev1.Node, bind netip.Addr) map[model.Family]netip.Addr {
	out := map[model.Family]netip.Addr{}
	if node != nil {
		for _, typ := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP} {
			for _, a := range node.Status.Addresses {
				ip, err := netip.ParseAddr(a.Address)
				if a.Type != typ || err != nil {
					continue
				}
				ip = ip.Unmap()
				if _, seen := out[model.FamilyOf(ip)]; !seen {
					out[model.FamilyOf(ip)] = ip
				}
			}
		}
	}
	if bind.IsValid() && !bind.IsUnspecified() {
		out[model.FamilyOf(bind)] = bind.Unmap()
	}
	return out
}

// selectNodePortAddrs applies nodePortAddresses to one family. An empty selector means
// every local address, as in kube-proxy's iptables and ipvs modes.
func selectNodePortAddrs(sel NodePortSelector, fam model.Family, primary netip.Addr, local []netip.Addr) NodePortAddrs {
	empty := !sel.Primary && !sel.Localhost && !sel.All && len(sel.CIDRs) == 0
	if empty || sel.All || slices.ContainsFunc(sel.CIDRs, func(p netip.Prefix) bool {
		return fam.Contains(p.Addr()) && p.Bits() == 0
	}) {
		return NodePortAddrs{Any: true}
	}
	var addrs []netip.Addr
	if sel.Primary && primary.IsValid() && !primary.IsLoopback() {
		addrs = append(addrs, primary)
	}
	for _, a := range local {
		if !fam.Contains(a) {
			continue
		}
		if (sel.Localhost && a.IsLoopback()) || slices.ContainsFunc(sel.CIDRs, func(p netip.Prefix) bool { return p.Contains(a) }) {
			addrs = append(addrs, a)
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return NodePortAddrs{Addrs: slices.Compact(addrs)}
}

func localTraffic(cfg LocalTrafficConfig, fam model.Family, node *corev1.Node) model.LocalTraffic {
	switch cfg.Mode {
	case "ClusterCIDR":
		return model.LocalTraffic{CIDRs: familyPrefixes(cfg.ClusterCIDRs, fam)}
	case "NodeCIDR":
		if node == nil {
			return model.LocalTraffic{}
		}
		var cidrs []netip.Prefix
		for _, s := range node.Spec.PodCIDRs {
			if p, err := netip.ParsePrefix(s); err == nil {
				cidrs = append(cidrs, p.Masked())
			}
		}
		return model.LocalTraffic{CIDRs: familyPrefixes(cidrs, fam)}
	case "BridgeInterface":
		return model.LocalTraffic{BridgeInterface: cfg.BridgeInterface}
	case "InterfaceNamePrefix":
		return model.LocalTraffic{InterfacePrefix: cfg.InterfacePrefix}
	}
	return model.LocalTraffic{}
}

func familyPrefixes(in []netip.Prefix, fam model.Family) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range in {
		if fam.Contains(p.Addr()) {
			out = append(out, p)
		}
	}
	return out
}

// fieldError formats a problem with one field of an object.
func fieldError(kind string, obj model.ServiceName, path string, value any, reason string) error {
	return fmt.Errorf("%s %s: %s: %q %s", kind, obj, path, fmt.Sprint(value), reason)
}
