package backendtest

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/portico-dev/portico/model"
)

// Packet is the first packet of a new connection as it reaches node-a, the node whose
// rules are traced.
type Packet struct {
	// Proto is the transport protocol.
	Proto model.Protocol
	// Src is the packet's source address.
	Src netip.Addr
	// Dst is the packet's destination address and port.
	Dst netip.AddrPort
	// InIface is the interface of node-a the packet arrives on ("eth0" from the LAN,
	// "cni0" from a pod of node-a), or "" when node-a sends the packet itself.
	InIface string
}

// String returns "PROTO src -> dst via iface".
func (p Packet) String() string {
	via := "from node-a itself"
	if p.InIface != "" {
		via = "in on " + p.InIface
	}
	return fmt.Sprintf("%s %s -> %s %s", p.Proto, p.Src, p.Dst, via)
}

// Host is what a tracer needs to know about node-a besides its rules.
type Host struct {
	// LocalAddrs are node-a's addresses: what "is this address local" (nftables' fib
	// type local, iptables' addrtype LOCAL) matches. Every 127.0.0.0/8 address is local
	// too.
	LocalAddrs []netip.Addr
}

// Martian reports whether node-a drops p before any rule sees it: a packet arriving from
// outside with one of node-a's own addresses as its source fails the kernel's source
// validation (a "martian source"). In ipvs mode the frontends are node-a's addresses too
// (bound to the dummy interface), so a client using a load-balancer ingress IP as its
// source is one.
func (h Host) Martian(p Packet) bool {
	return p.InIface != "" && h.IsLocal(p.Src)
}

// IsLocal reports whether a is an address of node-a.
func (h Host) IsLocal(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsLoopback() || slices.Contains(h.LocalAddrs, a)
}

// Verdict is what a traced packet comes to in node-a's rules.
type Verdict int

const (
	// VerdictAccept means no rule stopped or rewrote the packet: it goes on unchanged,
	// to node-a itself when its destination is local, else routed on.
	VerdictAccept Verdict = iota
	// VerdictDNAT means the destination was rewritten to an endpoint.
	VerdictDNAT
	// VerdictReject means the client is refused (TCP reset or ICMP error).
	VerdictReject
	// VerdictDrop means the packet is dropped silently.
	VerdictDrop
)

// String returns the verdict's name.
func (v Verdict) String() string {
	switch v {
	case VerdictAccept:
		return "accept"
	case VerdictDNAT:
		return "dnat"
	case VerdictReject:
		return "reject"
	case VerdictDrop:
		return "drop"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// Target is one endpoint a traced packet may be sent to, and how it leaves node-a.
type Target struct {
	// Endpoint is the new destination.
	Endpoint netip.AddrPort
	// Masquerade is true when the packet leaves node-a with a source address of node-a
	// instead of the client's.
	Masquerade bool
}

// Result is the outcome of tracing one packet through every path the rules allow (a
// random endpoint choice is followed for every choice).
type Result struct {
	// Verdict is the packet's fate. Every path of one packet must end in the same verdict;
	// a tracer reports an error otherwise.
	Verdict Verdict
	// Targets are the endpoints the packet may be sent to (VerdictDNAT only), sorted by
	// endpoint, each once.
	Targets []Target
	// Sticky is true when the choice of endpoint is remembered per client (session
	// affinity).
	Sticky bool
}

// String returns a one-line description of the result.
func (r Result) String() string {
	if r.Verdict != VerdictDNAT {
		return r.Verdict.String()
	}
	parts := make([]string, len(r.Targets))
	for i, t := range r.Targets {
		parts[i] = t.Endpoint.String()
		if t.Masquerade {
			parts[i] += " (masqueraded)"
		}
	}
	s := "dnat to " + strings.Join(parts, ", ")
	if r.Sticky {
		s += ", sticky"
	}
	return s
}

// Tracer follows a packet through the rules a backend put into its fake kernel, without
// a kernel: upstream kube-proxy's tracer tests do the same for its rules. A backend's
// tracer reads the backend's own objects (chains, sets, maps, virtual servers) as the
// backend's fake holds them; an object or rule it does not understand is an error, never
// silently ignored.
type Tracer interface {
	// Trace follows p through node-a's rules of p's family.
	Trace(p Packet) (Result, error)
}
