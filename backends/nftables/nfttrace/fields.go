package nfttrace

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/portico-dev/portico/model"
)

// field is a property of the packet that rules match.
type field uint8

const (
	fSaddr    field = iota // ip saddr, ip6 saddr
	fDaddr                 // ip daddr, ip6 daddr
	fL4proto               // meta l4proto
	fDport                 // th dport, tcp dport, udp dport, sctp dport
	fMark                  // meta mark
	fIifname               // iifname, meta iifname
	fFibSaddr              // fib saddr type
	fFibDaddr              // fib daddr type
)

// selector is a packet field as a rule names it.
type selector struct {
	name  string // as written, for messages
	field field
	kind  kind
	proto uint64 // a transport protocol the field depends on (tcp dport), 0 for none
}

// value returns the field's value for the current packet; ok is false when the packet has
// no such field (tcp dport of a UDP packet), so that the rule does not match.
func (r *run) value(s selector) (v value, ok bool) {
	p := &r.pkt
	switch s.field {
	case fSaddr:
		return value{addr: p.src}, true
	case fDaddr:
		return value{addr: p.dst.Addr()}, true
	case fL4proto:
		return value{num: p.proto}, true
	case fDport:
		return value{num: uint64(p.dst.Port())}, s.proto == 0 || s.proto == p.proto
	case fMark:
		return value{num: uint64(p.mark)}, true
	case fIifname:
		return value{text: p.iif}, true
	case fFibSaddr:
		return value{text: r.addrType(p.src)}, true
	case fFibDaddr:
		return value{text: r.addrType(p.dst.Addr())}, true
	}
	return value{}, false
}

// values returns the values of sels, or ok false when the packet lacks one of them.
func (r *run) values(sels []selector) ([]value, bool) {
	vals := make([]value, len(sels))
	for i, s := range sels {
		v, ok := r.value(s)
		if !ok {
			return nil, false
		}
		vals[i] = v
	}
	return vals, true
}

// parseSelector reads one packet field: ip|ip6 saddr|daddr, meta l4proto|mark|iifname,
// iifname, th dport, tcp|udp|sctp dport, fib saddr|daddr type.
func (p *parser) parseSelector() (selector, error) {
	first := p.next()
	switch first {
	case "ip", "ip6":
		if (first == "ip") != (p.fam == model.IPv4) {
			return selector{}, fmt.Errorf("%q in a table of family %s", first, p.fam)
		}
		return p.selectorFrom(first, map[string]selector{"saddr": {field: fSaddr, kind: kAddr}, "daddr": {field: fDaddr, kind: kAddr}})
	case "meta":
		return p.selectorFrom(first, map[string]selector{
			"l4proto": {field: fL4proto, kind: kProto}, "mark": {field: fMark, kind: kInt}, "iifname": {field: fIifname, kind: kIface},
		})
	case "iifname":
		return selector{name: first, field: fIifname, kind: kIface}, nil
	case "th":
		return p.selectorFrom(first, map[string]selector{"dport": {field: fDport, kind: kInt}})
	case "tcp", "udp", "sctp":
		return p.selectorFrom(first, map[string]selector{"dport": {field: fDport, kind: kInt, proto: protoNames[first]}})
	case "fib":
		s, err := p.selectorFrom(first, map[string]selector{"saddr": {field: fFibSaddr, kind: kFibType}, "daddr": {field: fFibDaddr, kind: kFibType}})
		if err != nil {
			return selector{}, err
		}
		if p.next() != "type" {
			return selector{}, fmt.Errorf("%q: only \"%s type\" is supported", s.name, s.name)
		}
		return s, nil
	}
	return selector{}, fmt.Errorf("unsupported expression %q", strings.TrimSpace(first+" "+p.peek()))
}

// selectorFrom reads the word after first and returns the selector it names in known.
func (p *parser) selectorFrom(first string, known map[string]selector) (selector, error) {
	second := p.next()
	s, ok := known[second]
	if !ok {
		return selector{}, fmt.Errorf("unsupported expression %q", strings.TrimSpace(first+" "+second))
	}
	s.name = first + " " + second
	return s, nil
}

// addrType returns the fib address type of a: local for node-a's addresses, else unicast.
func (r *run) addrType(a netip.Addr) string {
	if r.t.host.IsLocal(a) {
		return "local"
	}
	return "unicast"
}
