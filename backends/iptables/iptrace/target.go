package iptrace

import (
	"fmt"
	"net/netip"
	"strings"
)

// targetKind is what a rule does when it matches.
type targetKind int

const (
	tNone       targetKind = iota // no target: go on with the next rule
	tChain                        // -j CHAIN or -g CHAIN
	tReturn                       // RETURN
	tAccept                       // ACCEPT
	tDrop                         // DROP
	tReject                       // REJECT
	tDNAT                         // DNAT --to-destination
	tMark                         // MARK --set-xmark
	tMasquerade                   // MASQUERADE
)

// target is a rule's parsed target.
type target struct {
	kind  targetKind
	chain string // tChain
	goTo  bool   // tChain through -g
	to    netip.AddrPort
	port  bool   // tDNAT: to has a port (else the port is kept)
	value uint32 // tMark: new mark = (mark &^ mask) ^ value
	mask  uint32
}

// builtinTargets are the targets the tracer models, by name.
var builtinTargets = map[string]targetKind{
	"RETURN": tReturn, "ACCEPT": tAccept, "DROP": tDrop, "REJECT": tReject,
	"DNAT": tDNAT, "MARK": tMark, "MASQUERADE": tMasquerade,
}

// parseTarget parses -j/-g NAME and the target's options, which end the rule. A name
// that is not a modelled target is taken for a user chain (Trace fails when the table
// has no such chain).
func (p *parser) parseTarget(opt string) error {
	if err := p.endModule(); err != nil {
		return err
	}
	name, err := p.value(opt)
	if err != nil {
		return err
	}
	if p.neg {
		return fmt.Errorf("! before %s", opt)
	}
	goTo := opt == "-g" || opt == "--goto"
	kind, ok := builtinTargets[name]
	switch {
	case goTo && ok:
		return fmt.Errorf("-g %s: goto needs a user chain", name)
	case !ok:
		p.rule.target = target{kind: tChain, chain: name, goTo: goTo}
		return p.noMoreOptions(name)
	}
	p.rule.target = target{kind: kind}
	opts := p.args[p.pos:]
	p.pos = len(p.args)
	return p.rule.target.options(name, opts, p)
}

// noMoreOptions reports arguments after a target that takes none.
func (p *parser) noMoreOptions(name string) error {
	if p.pos < len(p.args) {
		return fmt.Errorf("arguments %q after target %s are not modelled", p.args[p.pos:], name)
	}
	return nil
}

// options parses the options of a modelled target.
func (t *target) options(name string, opts []string, p *parser) error {
	bad := func() error { return fmt.Errorf("target options %q of %s are not modelled", opts, name) }
	switch {
	case len(opts) == 0 && t.kind != tDNAT && t.kind != tMark:
		return nil
	case t.kind == tReject && len(opts) == 2 && opts[0] == "--reject-with":
		return nil
	case t.kind == tMasquerade && len(opts) == 1 && opts[0] == "--random-fully":
		return nil
	case t.kind == tDNAT && len(opts) == 2 && opts[0] == "--to-destination":
		return t.parseDNAT(opts[1], p)
	case t.kind == tMark && len(opts) == 2 && opts[0] == "--set-xmark":
		var err error
		t.value, t.mask, err = parseMark(opts[1])
		return err
	}
	return bad()
}

// parseDNAT parses A, A:P, or for IPv6 [A]:P or A.
func (t *target) parseDNAT(v string, p *parser) error {
	bad := fmt.Errorf("--to-destination %q is not a single %s address with an optional port", v, p.fam)
	if ap, err := netip.ParseAddrPort(v); err == nil {
		if !p.fam.Contains(ap.Addr()) || ap.Addr().Zone() != "" {
			return bad
		}
		t.to, t.port = ap, true
		return nil
	}
	a, err := netip.ParseAddr(strings.Trim(v, "[]"))
	if err != nil || !p.fam.Contains(a) || strings.ContainsAny(v, "-") {
		return bad
	}
	t.to = netip.AddrPortFrom(a, 0)
	return nil
}

// dest returns the destination of a DNAT of a packet to port.
func (t *target) dest(port uint16) netip.AddrPort {
	if t.port {
		return t.to
	}
	return netip.AddrPortFrom(t.to.Addr(), port)
}
