package ipvs

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/portico-dev/portico/model"
)

// vsKey identifies a virtual server: address, protocol and port.
type vsKey struct {
	addr  netip.Addr
	proto model.Protocol
	port  uint16
}

func (k vsKey) compare(o vsKey) int {
	return cmp.Or(k.addr.Compare(o.addr), cmp.Compare(k.proto, o.proto), cmp.Compare(k.port, o.port))
}

// virtualServer is what one frontend of a Service port asks of IPVS.
type virtualServer struct {
	key vsKey
	// scheduler is the IPVS scheduler.
	scheduler string
	// timeout is the persistence timeout in seconds (ClientIP affinity); 0: none.
	timeout uint32
	// dests are the real servers (weight 1 each), sorted.
	dests []netip.AddrPort
	// bound is true when the address belongs on portico's dummy interface (ClusterIP,
	// external IP, load-balancer IP); NodePorts use the node's own addresses.
	bound bool
}

// renderer turns Service ports into virtual servers.
type renderer struct {
	node             model.Node
	defaultScheduler string
}

// render returns the virtual servers of sp, sorted by key: one per frontend, a NodePort on
// every local address giving one per address of the node (loopback excepted: IPVS mode
// never served NodePorts on localhost).
func (r renderer) render(sp *model.ServicePort) []virtualServer {
	var out []virtualServer
	for _, f := range sp.Frontends {
		vs := virtualServer{
			scheduler: cmp.Or(sp.Scheduler, r.defaultScheduler),
			timeout:   uint32(sp.Affinity.Timeout.Seconds()),
			dests:     servers(sp, f),
			bound:     f.Kind != model.NodePort,
		}
		for _, a := range r.addrs(f) {
			vs.key = vsKey{a, sp.Name.Protocol, f.Port}
			out = append(out, vs)
		}
	}
	slices.SortFunc(out, func(a, b virtualServer) int { return a.key.compare(b.key) })
	return slices.CompactFunc(out, func(a, b virtualServer) bool { return a.key == b.key })
}

// addrs returns the addresses of frontend f's virtual servers.
func (r renderer) addrs(f model.Frontend) []netip.Addr {
	if !f.AnyLocalAddr() {
		return []netip.Addr{f.Addr}
	}
	return slices.DeleteFunc(slices.Clone(r.node.Addrs), netip.Addr.IsLoopback)
}

// servers returns the real servers of frontend f: the endpoints of the set that its
// default class (Internal, or External: traffic from other hosts) forwards to. IPVS
// cannot choose real servers by source, so where pods or the node itself are sent
// elsewhere (externalTrafficPolicy: Local with pods short-circuited to the cluster's
// endpoints) they get the external traffic's servers too (README.md, "What differs").
func servers(sp *model.ServicePort, f model.Frontend) []netip.AddrPort {
	classes := sp.FrontendClasses(f)
	c := classes[len(classes)-1]
	if sp.Verdict(c) != model.Forward {
		return nil
	}
	var out []netip.AddrPort
	for _, e := range sp.Endpoints(sp.Traffic(c).Endpoints) {
		out = append(out, e.AddrPort())
	}
	slices.SortFunc(out, netip.AddrPort.Compare)
	return slices.Compact(out) // IPVS holds a real server once
}
