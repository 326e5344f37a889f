package iptables

import (
	"fmt"
	"net/netip"
	"strconv"

	"github.com/portico-dev/portico/backends/iptables/variant"
	"github.com/portico-dev/portico/model"
)

// fam holds what differs between the iptables and ip6tables syntax.
type fam struct {
	f         model.Family
	cmd       variant.Family
	hostBits  int    // 32 or 128: the prefix length of one address
	loopback  string // the loopback range, as iptables-save prints it
	icmpError string // REJECT's --reject-with for non-TCP
	fullMask  string // xt_recent's --mask of one address
	ipsetFam  string // ipset's family option
	// descending declares chains in descending order (iptables-nft; see declOrder).
	descending bool
}

func newFam(f model.Family) fam {
	if f == model.IPv6 {
		return fam{f: f, cmd: variant.IPv6, hostBits: 128, loopback: "::1/128",
			icmpError: "icmp6-port-unreachable", fullMask: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ipsetFam: "inet6"}
	}
	return fam{f: f, cmd: variant.IPv4, hostBits: 32, loopback: "127.0.0.0/8",
		icmpError: "icmp-port-unreachable", fullMask: "255.255.255.255", ipsetFam: "inet"}
}

// host renders one address as a prefix: "10.96.0.1/32".
func (x fam) host(a netip.Addr) string { return a.String() + "/" + strconv.Itoa(x.hostBits) }

// dnatTo renders a DNAT destination: "10.244.1.10:8080", "[fd00::10]:8080".
func (x fam) dnatTo(ep model.Endpoint) string { return ep.AddrPort().String() }

// protoName is the protocol as iptables and ipset spell it.
func protoName(p model.Protocol) string {
	switch p {
	case model.UDP:
		return "udp"
	case model.SCTP:
		return "sctp"
	}
	return "tcp"
}

// protoLetter abbreviates the protocol in the NodePort tree's chain names.
func protoLetter(p model.Protocol) string {
	switch p {
	case model.UDP:
		return "U"
	case model.SCTP:
		return "S"
	}
	return "T"
}

// dport matches a protocol and destination port: "-p tcp -m tcp --dport 80".
func dport(p model.Protocol, port uint16) string {
	n := protoName(p)
	return fmt.Sprintf("-p %s -m %s --dport %d", n, n, port)
}

// dportRange matches a protocol and a range of destination ports.
func dportRange(p model.Protocol, lo, hi int) string {
	n := protoName(p)
	return fmt.Sprintf("-p %s -m %s --dport %d:%d", n, n, lo, hi)
}

// ipPort renders an ipset "ip,proto:port" entry part.
func ipPort(a netip.Addr, p model.Protocol, port uint16) string {
	return a.String() + "," + protoName(p) + ":" + strconv.Itoa(int(port))
}
