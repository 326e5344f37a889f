package ipsettest

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/portico-dev/portico/model"
)

// component is the kind of one dimension of a set type.
type component int

const (
	compIP   component = iota // a plain address
	compPort                  // proto:port
	compNet                   // a network (a plain address is a full-length one)
)

// setTypes are the set types the fake knows, with their dimensions.
var setTypes = map[string][]component{
	"hash:ip":          {compIP},
	"hash:ip,port":     {compIP, compPort},
	"hash:ip,port,ip":  {compIP, compPort, compIP},
	"hash:ip,port,net": {compIP, compPort, compNet},
}

// protocols are the transport protocols of port components, as ipset spells them.
var protocols = map[string]model.Protocol{"tcp": model.TCP, "udp": model.UDP, "sctp": model.SCTP}

// protoName returns ipset's spelling of p.
func protoName(p model.Protocol) string {
	return strings.ToLower(p.String())
}

// entry is one element of a set: one value per dimension of the set's type.
type entry struct {
	ip    netip.Addr
	proto model.Protocol // port component only
	port  uint16
	net   netip.Prefix // third component: an address (full-length prefix) or a network
}

// String prints the entry as ipset save does.
func (e entry) String(dims []component) string {
	parts := []string{e.ip.String()}
	if len(dims) > 1 {
		parts = append(parts, protoName(e.proto)+":"+strconv.Itoa(int(e.port)))
	}
	if len(dims) > 2 {
		if e.net.Bits() == e.net.Addr().BitLen() {
			parts = append(parts, e.net.Addr().String())
		} else {
			parts = append(parts, e.net.String())
		}
	}
	return strings.Join(parts, ",")
}

// parseEntry parses an entry of a set of type dims and family fam.
func parseEntry(s string, dims []component, fam model.Family) (entry, error) {
	parts := strings.Split(s, ",")
	if len(parts) != len(dims) {
		return entry{}, fmt.Errorf("%w: entry %q has %d components, the set type has %d", ErrSyntax, s, len(parts), len(dims))
	}
	var e entry
	var err error
	if e.ip, err = parseAddr(parts[0], fam); err != nil {
		return entry{}, err
	}
	if len(dims) > 1 {
		if e.proto, e.port, err = parsePort(parts[1]); err != nil {
			return entry{}, err
		}
	}
	if len(dims) > 2 {
		if e.net, err = parseThird(parts[2], dims[2], fam); err != nil {
			return entry{}, err
		}
	}
	return e, nil
}

// parseAddr parses a plain address of family fam.
func parseAddr(s string, fam model.Family) (netip.Addr, error) {
	if strings.ContainsAny(s, "/-") {
		return netip.Addr{}, fmt.Errorf("%w: address %q: CIDRs and ranges in an ip component", ErrUnsupported, s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%w: cannot parse address %q", ErrSyntax, s)
	}
	if !fam.Contains(a) {
		return netip.Addr{}, fmt.Errorf("%w: address %q in a set of family %s", ErrFamily, s, familyName(fam))
	}
	return a, nil
}

// parsePort parses "proto:port" (a bare port is tcp, as in ipset).
func parsePort(s string) (model.Protocol, uint16, error) {
	name, num, found := strings.Cut(s, ":")
	if !found {
		name, num = "tcp", s
	}
	p, ok := protocols[strings.ToLower(name)]
	if !ok {
		return 0, 0, fmt.Errorf("%w: protocol %q of %q (the fake knows tcp, udp, sctp)", ErrUnsupported, name, s)
	}
	if strings.Contains(num, "-") {
		return 0, 0, fmt.Errorf("%w: port range %q", ErrUnsupported, s)
	}
	port, err := strconv.ParseUint(num, 10, 16)
	if err != nil || (len(num) > 1 && num[0] == '0') {
		return 0, 0, fmt.Errorf("%w: cannot parse %q as a %s port", ErrSyntax, num, name)
	}
	return p, uint16(port), nil
}

// parseThird parses the third component: a plain address (compIP) or a network (compNet),
// both returned as a masked prefix.
func parseThird(s string, kind component, fam model.Family) (netip.Prefix, error) {
	if kind == compIP {
		if strings.Contains(s, "/") {
			return netip.Prefix{}, fmt.Errorf("%w: plain IP address must be supplied: %q", ErrSyntax, s)
		}
		a, err := parseAddr(s, fam)
		return netip.PrefixFrom(a, a.BitLen()), err
	}
	addr, bits, hasBits := strings.Cut(s, "/")
	a, err := parseAddr(addr, fam)
	if err != nil {
		return netip.Prefix{}, err
	}
	n := a.BitLen()
	if hasBits {
		v, err := strconv.Atoi(bits)
		if err != nil || v < 1 || v > a.BitLen() {
			return netip.Prefix{}, fmt.Errorf("%w: the CIDR of %q is invalid", ErrSyntax, s)
		}
		n = v
	}
	return netip.PrefixFrom(a, n).Masked(), nil
}

// familyName is ipset's name of a family.
func familyName(f model.Family) string {
	if f == model.IPv6 {
		return "inet6"
	}
	return "inet"
}
