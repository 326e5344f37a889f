// Package model is portico's backend-neutral description of what the node's dataplane must
// do: the only input of a backend.
//
// The proxier compiles Services, EndpointSlices, ServiceCIDRs and the Node into one Table
// per IP family. Every policy decision is made while compiling and is a field of the Table:
// which frontends exist (ServicePort.Frontends), which endpoints serve cluster-wide and
// node-local traffic (Cluster, Local), and, per class of traffic (Internal, External,
// ExternalFromPods, ExternalFromNode), which of the two sets serves it, whether it is
// masqueraded (never, always, or when it does not come from a pod) and whether new
// connections are rejected or dropped while that set is empty (Traffic). Hairpin
// masquerading, source ranges, session affinity and the drop of unallocated Service
// addresses are fields too. A backend maps these fields to kernel objects; it never
// derives a decision from Service semantics of its own.
//
// This package is a leaf: it imports nothing of portico.
package model

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// Family is an IP family.
type Family uint8

const (
	// IPv4 is the IPv4 family.
	IPv4 Family = 4
	// IPv6 is the IPv6 family.
	IPv6 Family = 6
)

// String returns "IPv4" or "IPv6".
func (f Family) String() string {
	switch f {
	case IPv4:
		return "IPv4"
	case IPv6:
		return "IPv6"
	}
	return "Family(" + strconv.Itoa(int(f)) + ")"
}

// Contains reports whether addr belongs to this family (IPv4-mapped IPv6 counts as IPv6).
func (f Family) Contains(addr netip.Addr) bool {
	return addr.IsValid() && (f == IPv4) == addr.Is4()
}

// FamilyOf returns the family of addr.
func FamilyOf(addr netip.Addr) Family {
	if addr.Is4() {
		return IPv4
	}
	return IPv6
}

// Protocol is a transport protocol a Service port can use.
type Protocol uint8

const (
	// TCP is the Transmission Control Protocol.
	TCP Protocol = iota + 1
	// UDP is the User Datagram Protocol.
	UDP
	// SCTP is the Stream Control Transmission Protocol.
	SCTP
)

// String returns the protocol's Kubernetes spelling ("TCP", "UDP", "SCTP").
func (p Protocol) String() string {
	switch p {
	case TCP:
		return "TCP"
	case UDP:
		return "UDP"
	case SCTP:
		return "SCTP"
	}
	return "Protocol(" + strconv.Itoa(int(p)) + ")"
}

// ParseProtocol parses a Kubernetes protocol name; an empty string means TCP, as in the API.
func ParseProtocol(s string) (Protocol, error) {
	switch s {
	case "TCP", "":
		return TCP, nil
	case "UDP":
		return UDP, nil
	case "SCTP":
		return SCTP, nil
	}
	return 0, fmt.Errorf("%q is not one of TCP, UDP, SCTP", s)
}

// ServiceName names a Service.
type ServiceName struct {
	Namespace, Name string
}

// String returns "namespace/name".
func (n ServiceName) String() string { return n.Namespace + "/" + n.Name }

// ServicePortName names one port of a Service. It is unique within a Table.
type ServicePortName struct {
	Namespace, Name string
	// Port is the Service port's name; empty for the single unnamed port of a Service.
	Port     string
	Protocol Protocol
}

// Service returns the name of the Service this port belongs to.
func (n ServicePortName) Service() ServiceName { return ServiceName{n.Namespace, n.Name} }

// String returns "namespace/name:port/PROTO" ("namespace/name/PROTO" for an unnamed port).
func (n ServicePortName) String() string {
	s := n.Namespace + "/" + n.Name
	if n.Port != "" {
		s += ":" + n.Port
	}
	return s + "/" + n.Protocol.String()
}

// Compare orders names by namespace, name, port name and protocol.
func (n ServicePortName) Compare(o ServicePortName) int {
	switch {
	case n.Namespace != o.Namespace:
		return cmpString(n.Namespace, o.Namespace)
	case n.Name != o.Name:
		return cmpString(n.Name, o.Name)
	case n.Port != o.Port:
		return cmpString(n.Port, o.Port)
	}
	return int(n.Protocol) - int(o.Protocol)
}

func cmpString(a, b string) int {
	if a < b {
		return -1
	}
	if a > b {
		return 1
	}
	return 0
}

// FrontendKind says how traffic reaches a Service port.
type FrontendKind uint8

const (
	// ClusterIP is a Service's cluster IP: internal traffic.
	ClusterIP FrontendKind = iota + 1
	// ExternalIP is an address from spec.externalIPs: external traffic.
	ExternalIP
	// LoadBalancer is a load-balancer ingress IP from status.loadBalancer: external traffic.
	LoadBalancer
	// NodePort is a node address and the Service's nodePort: external traffic.
	NodePort
)

// String returns the kind's name.
func (k FrontendKind) String() string {
	switch k {
	case ClusterIP:
		return "ClusterIP"
	case ExternalIP:
		return "ExternalIP"
	case LoadBalancer:
		return "LoadBalancer"
	case NodePort:
		return "NodePort"
	}
	return "FrontendKind(" + strconv.Itoa(int(k)) + ")"
}

// External reports whether traffic to this kind of frontend follows the external traffic
// policy (everything but ClusterIP).
func (k FrontendKind) External() bool { return k != ClusterIP }

// Frontend is one destination address and port that a Service port answers on.
type Frontend struct {
	Kind FrontendKind
	// Addr is the destination address. For a NodePort frontend an invalid (zero) Addr means
	// "every address local to the node" (nodePortAddresses includes "all").
	Addr netip.Addr
	Port uint16
}

// AnyLocalAddr reports whether the frontend matches every local address of the node.
func (f Frontend) AnyLocalAddr() bool { return !f.Addr.IsValid() }

// String returns "Kind addr:port" ("Kind *:port" for every local address).
func (f Frontend) String() string {
	if f.AnyLocalAddr() {
		return fmt.Sprintf("%s *:%d", f.Kind, f.Port)
	}
	return fmt.Sprintf("%s %s", f.Kind, netip.AddrPortFrom(f.Addr, f.Port))
}

func (f Frontend) compare(o Frontend) int {
	if f.Kind != o.Kind {
		return int(f.Kind) - int(o.Kind)
	}
	if c := f.Addr.Compare(o.Addr); c != 0 {
		return c
	}
	return int(f.Port) - int(o.Port)
}

// Endpoint is one backend of a Service port, with the conditions it was chosen by.
type Endpoint struct {
	Addr netip.Addr
	Port uint16
	// Local is true when the endpoint runs on this node.
	Local bool
	// Ready, Serving and Terminating are the EndpointSlice conditions (with the API's
	// defaults applied: a nil ready or serving means true, a nil terminating false).
	Ready, Serving, Terminating bool
}

// AddrPort returns the endpoint's address and port.
func (e Endpoint) AddrPort() netip.AddrPort { return netip.AddrPortFrom(e.Addr, e.Port) }

// String returns "addr:port".
func (e Endpoint) String() string { return e.AddrPort().String() }

func (e Endpoint) compare(o Endpoint) int {
	if c := e.Addr.Compare(o.Addr); c != 0 {
		return c
	}
	return int(e.Port) - int(o.Port)
}

// Verdict is what happens to new connections of one traffic class of a Service port.
type Verdict uint8

const (
	// Forward means the traffic is load-balanced over endpoints.
	Forward Verdict = iota + 1
	// Reject means the client gets an immediate refusal (no usable endpoint anywhere).
	Reject
	// Drop means packets are dropped silently (a Local policy with no endpoint on this node,
	// while other nodes have some, so that a load balancer's health check steers away).
	Drop
)

// String returns the verdict's name.
func (v Verdict) String() string {
	switch v {
	case Forward:
		return "forward"
	case Reject:
		return "reject"
	case Drop:
		return "drop"
	}
	return "Verdict(" + strconv.Itoa(int(v)) + ")"
}

// IPVSSchedulers are the schedulers of Linux's IPVS (net/netfilter/ipvs, ip_vs_*.c):
// the values ServicePort.Scheduler may take. A kernel may lack some of their modules.
var IPVSSchedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}

// Affinity is the session affinity of a Service port.
type Affinity struct {
	// Timeout is how long a client stays with its endpoint after its last new connection;
	// zero means no affinity.
	Timeout time.Duration
}

// Enabled reports whether ClientIP affinity is on.
func (a Affinity) Enabled() bool { return a.Timeout > 0 }
