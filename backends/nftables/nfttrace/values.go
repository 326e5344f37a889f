package nfttrace

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// kind is the type of a packet field and of the literals and set keys compared with it.
type kind uint8

const (
	kAddr    kind = iota // an IP address; literals may be prefixes
	kProto               // an IP protocol, by name or number
	kInt                 // a number (port, mark, numgen value); literals may be ranges a-b
	kIface               // an interface name; a literal ending in * is a prefix
	kFibType             // an address type: local, unicast, ...
)

// value is a packet field's value; which member is set depends on the field's kind.
type value struct {
	addr netip.Addr
	num  uint64
	text string
}

// pattern is a literal or a set key component, compared with a field of its kind.
type pattern struct {
	kind     kind
	prefix   netip.Prefix // kAddr
	lo, hi   uint64       // kProto, kInt: an inclusive range
	text     string       // kIface (its prefix when wildcard), kFibType
	wildcard bool
}

// protoNames are the protocol names nft accepts that portico's rules may use.
var protoNames = map[string]uint64{"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58, "sctp": 132}

// fibTypes are the address types of `fib ... type`.
var fibTypes = map[string]bool{
	"unspec": true, "unicast": true, "local": true, "broadcast": true, "anycast": true, "multicast": true,
	"blackhole": true, "unreachable": true, "prohibit": true, "throw": true, "nat": true, "xresolve": true,
}

// parsePattern parses s as a literal of kind k.
func parsePattern(k kind, s string) (pattern, error) {
	p := pattern{kind: k}
	var err error
	switch k {
	case kAddr:
		p.prefix, err = parsePrefix(s)
	case kProto:
		if n, ok := protoNames[s]; ok {
			p.lo, p.hi = n, n
		} else {
			p.lo, p.hi, err = parseRange(s)
		}
	case kInt:
		p.lo, p.hi, err = parseRange(s)
	case kIface:
		p.text, p.wildcard = strings.CutSuffix(s, "*")
	case kFibType:
		if !fibTypes[s] {
			err = fmt.Errorf("unknown address type %q", s)
		}
		p.text = s
	}
	return p, err
}

// parsePrefix parses an address or a prefix; an address is a prefix of its full length.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad prefix: %w", err)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad address: %w", err)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// parseRange parses a number (decimal or 0x hexadecimal) or a range lo-hi.
func parseRange(s string) (uint64, uint64, error) {
	los, his, isRange := strings.Cut(s, "-")
	lo, err := strconv.ParseUint(los, 0, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("bad number %q", s)
	}
	if !isRange {
		return lo, lo, nil
	}
	hi, err := strconv.ParseUint(his, 0, 64)
	if err != nil || hi < lo {
		return 0, 0, fmt.Errorf("bad range %q", s)
	}
	return lo, hi, nil
}

// matches reports whether v, a value of the pattern's kind, matches it.
func (p pattern) matches(v value) bool {
	switch p.kind {
	case kAddr:
		return p.prefix.Contains(v.addr)
	case kProto, kInt:
		return p.lo <= v.num && v.num <= p.hi
	case kIface:
		if p.wildcard {
			return strings.HasPrefix(v.text, p.text)
		}
		return v.text == p.text
	case kFibType:
		return v.text == p.text
	}
	return false
}

// matchesAll reports whether each value matches the pattern at its position.
func matchesAll(pats []pattern, vals []value) bool {
	for i, p := range pats {
		if !p.matches(vals[i]) {
			return false
		}
	}
	return true
}

// parseKey parses a set or map element's key (its concatenated components) as
// literals of the kinds of sels.
func parseKey(key []string, sels []selector) ([]pattern, error) {
	if len(key) != len(sels) {
		return nil, fmt.Errorf("key %q has %d components, the lookup %d", strings.Join(key, " . "), len(key), len(sels))
	}
	pats := make([]pattern, len(key))
	for i, s := range key {
		p, err := parsePattern(sels[i].kind, s)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", strings.Join(key, " . "), err)
		}
		pats[i] = p
	}
	return pats, nil
}
