// Package compile turns Kubernetes objects into the backend-neutral model: the pure part of
// the proxier. Nothing here talks to the API server or the kernel.
package compile

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/portico-dev/portico/endpoints"
	"github.com/portico-dev/portico/model"
)

// NodePortAddrs are the addresses of one family that NodePorts answer on.
type NodePortAddrs struct {
	// Any is true when NodePorts answer on every local address but the loopback ones
	// (nodePortAddresses empty, "all" or a zero CIDR).
	Any bool
	// Addrs are the node's addresses selected by nodePortAddresses, sorted; with Any,
	// only the loopback addresses that localhost NodePorts add.
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
	// MasqueradeAll masquerades all traffic to ClusterIPs.
	MasqueradeAll bool
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
	// LocalhostNodePorts serves NodePorts on the node's IPv4 loopback addresses as well
	// (iptables mode's localhostNodePorts; the other modes never do).
	LocalhostNodePorts bool
	// BindAddress, when not unspecified, is the node's primary IP of its family
	// (kube-proxy's bindAddress rule).
	BindAddress netip.Addr
}

// ResolveNode computes NodeInfo from the configuration, this node's Node object (nil when
// not known yet), the addresses currently assigned to the node's interfaces and the
// cluster's Service CIDRs (from the ServiceCIDR objects).
func ResolveNode(cfg NodeConfig, node *corev1.Node, localAddrs []netip.Addr, serviceCIDRs []netip.Prefix) NodeInfo {
	info := NodeInfo{
		Name:          cfg.Name,
		NodePorts:     map[model.Family]NodePortAddrs{},
		Tables:        map[model.Family]model.Node{},
		MasqueradeAll: cfg.MasqueradeAll,
	}
	if node != nil {
		info.Zone = node.Labels[corev1.LabelTopologyZone]
	}
	primary := PrimaryIPs(node, cfg.BindAddress)
	for _, fam := range cfg.Families {
		info.NodePorts[fam] = selectNodePortAddrs(cfg, fam, primary[fam], localAddrs)
		info.Tables[fam] = model.Node{
			Name:         cfg.Name,
			Addrs:        familyAddrs(localAddrs, fam),
			LocalTraffic: localTraffic(cfg.LocalTraffic, fam, node),
			ServiceCIDRs: familyPrefixes(serviceCIDRs, fam),
		}
	}
	return info
}

// familyAddrs returns the addresses of family fam, sorted and without duplicates.
func familyAddrs(in []netip.Addr, fam model.Family) []netip.Addr {
	var out []netip.Addr
	for _, a := range in {
		if fam.Contains(a) {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
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
// every local address, as in kube-proxy's iptables and ipvs modes. Loopback addresses are
// selected only with localhost NodePorts, and only for IPv4 (the kernel routes IPv4
// loopback traffic to another host only with route_localnet, which has no IPv6 twin).
func selectNodePortAddrs(cfg NodeConfig, fam model.Family, primary netip.Addr, local []netip.Addr) NodePortAddrs {
	sel := cfg.NodePorts
	empty := !sel.Primary && !sel.Localhost && !sel.All && len(sel.CIDRs) == 0
	loopback := cfg.LocalhostNodePorts && fam == model.IPv4
	var out NodePortAddrs
	out.Any = empty || sel.All || slices.ContainsFunc(sel.CIDRs, func(p netip.Prefix) bool {
		return fam.Contains(p.Addr()) && p.Bits() == 0
	})
	if sel.Primary && primary.IsValid() && !primary.IsLoopback() && !out.Any {
		out.Addrs = append(out.Addrs, primary)
	}
	for _, a := range local {
		if !fam.Contains(a) || (a.IsLoopback() && !loopback) {
			continue
		}
		if out.Any && a.IsLoopback() || !out.Any && selects(sel, a) {
			out.Addrs = append(out.Addrs, a)
		}
	}
	slices.SortFunc(out.Addrs, netip.Addr.Compare)
	out.Addrs = slices.Compact(out.Addrs)
	return out
}

// selects reports whether the keywords and CIDRs of sel select the local address a.
func selects(sel NodePortSelector, a netip.Addr) bool {
	return (sel.Localhost && a.IsLoopback()) || slices.ContainsFunc(sel.CIDRs, func(p netip.Prefix) bool { return p.Contains(a) })
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

// Kinds of object a Problem is about.
const (
	KindService       = "Service"
	KindEndpointSlice = "EndpointSlice"
)

// Problem is a field of a Service, or of one of its EndpointSlices, that compiling
// skipped together with the port, endpoint or slice it belongs to; the rest is still
// compiled. Its Error names the object, the field and the value.
type Problem struct {
	// Kind is KindService or KindEndpointSlice.
	Kind string
	// Service is the Service compiled: the object itself, or the Service the
	// EndpointSlice belongs to.
	Service model.ServiceName
	// Slice is the EndpointSlice's name (in the Service's namespace) for
	// KindEndpointSlice; empty otherwise.
	Slice string
	// Field is the field's path in the object, e.g. spec.ports[0].port.
	Field string
	// Value is the field's value as written; nil when the problem is that it is empty.
	Value any
	// Reason says what is wrong, e.g. "is out of range 1-65535".
	Reason string
}

// Error returns the problem as the log shows it: for a Service
// `service <namespace>/<name>: <field>: "<value>" <reason>`, for an EndpointSlice the
// text of endpoints.Problem.
func (p *Problem) Error() string {
	if p.Kind == KindEndpointSlice {
		ep := endpoints.Problem{Namespace: p.Service.Namespace, Slice: p.Slice, Field: p.Field, Value: p.Value, Reason: p.Reason}
		return ep.Error()
	}
	return fmt.Sprintf("service %s: %s: %q %s", p.Service, p.Field, fmt.Sprint(p.Value), p.Reason)
}

// fieldError returns a problem with one field of Service obj.
func fieldError(obj model.ServiceName, path string, value any, reason string) error {
	return &Problem{Kind: KindService, Service: obj, Field: path, Value: value, Reason: reason}
}

// sliceProblems returns Merge's errors for the slices of Service obj, each problem with a
// slice as a Problem of kind KindEndpointSlice.
func sliceProblems(obj model.ServiceName, errs []error) []error {
	for i, err := range errs {
		var p *endpoints.Problem
		if errors.As(err, &p) {
			errs[i] = &Problem{Kind: KindEndpointSlice, Service: obj, Slice: p.Slice, Field: p.Field, Value: p.Value, Reason: p.Reason}
		}
	}
	return errs
}
