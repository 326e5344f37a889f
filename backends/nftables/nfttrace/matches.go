package nfttrace

import (
	"fmt"
	"slices"
	"strings"

	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/model"
)

// step is one match or statement of a rule.
type step interface {
	// eval runs the step on the path's packet: ok false means the rule does not match
	// (the chain goes on with its next rule); a verdict other than vNone ends the rule.
	eval(r *run) (ok bool, v verdict, err error)
}

// match compares packet fields with a literal, an anonymous or named set, or looks them
// up in a verdict map.
type match struct {
	sels   []selector
	mask   uint64 // applied to the single numeric field when masked
	masked bool
	negate bool
	lit    [][]pattern // literal or anonymous set: one pattern per field in each element
	set    string      // named set
	vmap   string      // named verdict map
}

func (m *match) eval(r *run) (bool, verdict, error) {
	vals, ok := r.values(m.sels)
	if !ok {
		return false, verdict{}, nil
	}
	if m.masked {
		vals[0].num &= m.mask
	}
	switch {
	case m.vmap != "":
		return r.lookupVerdict(m.vmap, m.sels, vals)
	case m.set != "":
		found, err := r.inSet(m.set, m.sels, vals)
		return found != m.negate, verdict{}, err
	}
	found := slices.ContainsFunc(m.lit, func(e []pattern) bool { return matchesAll(e, vals) })
	return found != m.negate, verdict{}, nil
}

// inSet reports whether vals are a key of the named set (or were added to it on this
// path). nft also looks keys up in a map that way.
func (r *run) inSet(name string, sels []selector, vals []value) (bool, error) {
	var elems []*knftables.Element
	switch s, m := r.tbl.Sets[name], r.tbl.Maps[name]; {
	case s != nil:
		elems = s.Elements
	case m != nil:
		elems = m.Elements
	default:
		return false, fmt.Errorf("no set %q", name)
	}
	for _, added := range r.added[name] {
		if slices.Equal(added, vals) {
			return true, nil
		}
	}
	for _, e := range elems {
		pats, err := parseKey(e.Key, sels)
		if err != nil {
			return false, fmt.Errorf("set %s: %w", name, err)
		}
		if matchesAll(pats, vals) {
			return true, nil
		}
	}
	return false, nil
}

// mapElement returns the element of the named map whose key vals match, or nil.
func (r *run) mapElement(name string, sels []selector, vals []value) (*knftables.Element, error) {
	m := r.tbl.Maps[name]
	if m == nil {
		return nil, fmt.Errorf("no map %q", name)
	}
	for _, e := range m.Elements {
		pats, err := parseKey(e.Key, sels)
		if err != nil {
			return nil, fmt.Errorf("map %s: %w", name, err)
		}
		if matchesAll(pats, vals) {
			return e, nil
		}
	}
	return nil, nil
}

// lookupVerdict applies the verdict a verdict map holds for vals; without an element the
// rule does not match.
func (r *run) lookupVerdict(name string, sels []selector, vals []value) (bool, verdict, error) {
	e, err := r.mapElement(name, sels, vals)
	if err != nil || e == nil {
		return false, verdict{}, err
	}
	words := strings.Fields(strings.Join(e.Value, " "))
	v, n, err := parseVerdict(words)
	if err == nil && n != len(words) {
		err = fmt.Errorf("unexpected %q after the verdict", strings.Join(words[n:], " "))
	}
	if err != nil {
		return false, verdict{}, fmt.Errorf("map %s, key %q: %w", name, strings.Join(e.Key, " . "), err)
	}
	return true, v, nil
}

// ctMatch matches the connection's state (always new: the tracer follows first packets)
// or status flags (dnat once the destination was rewritten, snat once masqueraded).
type ctMatch struct {
	status bool
	negate bool
	flags  []string
}

var (
	ctStates   = map[string]bool{"new": true, "established": true, "related": true, "invalid": true, "untracked": true}
	ctStatuses = map[string]bool{"expected": true, "seen-reply": true, "assured": true, "confirmed": true, "snat": true, "dnat": true, "dying": true}
)

// ct parses `ct state|status [==|!=] FLAGS`.
func (p *parser) ct() (step, error) {
	p.next()
	m := &ctMatch{}
	known := ctStates
	switch w := p.next(); w {
	case "state":
	case "status":
		m.status, known = true, ctStatuses
	default:
		return nil, fmt.Errorf("unsupported expression \"ct %s\"", w)
	}
	switch p.peek() {
	case "==":
		p.next()
	case "!=":
		p.next()
		m.negate = true
	}
	flags, err := p.flags()
	if err != nil {
		return nil, fmt.Errorf("ct: %w", err)
	}
	for _, f := range flags {
		if !known[f] {
			return nil, fmt.Errorf("unknown conntrack flag %q", f)
		}
	}
	m.flags = flags
	return m, nil
}

func (m *ctMatch) eval(r *run) (bool, verdict, error) {
	set := map[string]bool{"new": !m.status, "dnat": m.status && r.pkt.dnat, "snat": m.status && r.pkt.masq}
	hit := slices.ContainsFunc(m.flags, func(f string) bool { return set[f] })
	return hit != m.negate, verdict{}, nil
}

// numgenMatch compares a random number with a literal: both outcomes that the literal
// allows are followed, each as a path of its own.
type numgenMatch struct {
	mod, offset uint64
	negate      bool
	lit         [][]pattern
}

// numgenMatch parses `numgen random mod N [offset O] [==|!=] V`.
func (p *parser) numgenMatch() (step, error) {
	m := &numgenMatch{}
	var err error
	if m.mod, m.offset, err = p.numgen(); err != nil {
		return nil, err
	}
	sels := []selector{{name: "numgen", kind: kInt}}
	switch p.peek() {
	case "==":
		p.next()
	case "!=":
		p.next()
		m.negate = true
	}
	if p.peek() == "{" {
		m.lit, err = p.anonSet(sels)
		return m, err
	}
	if w := p.peek(); w == "vmap" || w == "map" || strings.HasPrefix(w, "@") {
		return nil, fmt.Errorf("numgen looked up in %q is not supported", w)
	}
	e, err := p.element(sels)
	m.lit = [][]pattern{e}
	return m, err
}

// maxNumgenMod bounds numgen's modulus (the tracer tries each value).
const maxNumgenMod = 1 << 16

// numgen parses `numgen random mod N [offset O]`.
func (p *parser) numgen() (mod, offset uint64, err error) {
	if p.next() != "numgen" || p.next() != "random" || p.next() != "mod" {
		return 0, 0, fmt.Errorf("only \"numgen random mod N\" is supported")
	}
	mod, hi, err := parseRange(p.next())
	if err != nil || mod != hi || mod == 0 || mod > maxNumgenMod {
		return 0, 0, fmt.Errorf("numgen: a modulus between 1 and %d expected", maxNumgenMod)
	}
	if p.peek() == "offset" {
		p.next()
		lo, hi, err := parseRange(p.next())
		if err != nil || lo != hi {
			return 0, 0, fmt.Errorf("numgen: bad offset")
		}
		offset = lo
	}
	return mod, offset, nil
}

func (m *numgenMatch) eval(r *run) (bool, verdict, error) {
	canMatch, canMiss := false, false
	for n := m.offset; n < m.offset+m.mod; n++ {
		hit := slices.ContainsFunc(m.lit, func(e []pattern) bool { return e[0].matches(value{num: n}) })
		if hit != m.negate {
			canMatch = true
		} else {
			canMiss = true
		}
	}
	if !canMatch || !canMiss {
		return canMatch, verdict{}, nil
	}
	c, err := r.pick.choose(2)
	return c == 0, verdict{}, err
}

// counter counts packets, which changes nothing for the tracer.
type counter struct{}

func (counter) eval(*run) (bool, verdict, error) { return true, verdict{}, nil }

// verdictStmt is a verdict statement.
type verdictStmt struct{ v verdict }

func (s verdictStmt) eval(*run) (bool, verdict, error) { return true, s.v, nil }

// reject parses `reject [with tcp reset | with icmp|icmpv6|icmpx [type] T]`.
func (p *parser) reject() (step, error) {
	p.next()
	if p.peek() != "with" {
		return verdictStmt{v: verdict{kind: vReject}}, nil
	}
	p.next()
	switch w := p.next(); w {
	case "tcp":
		if err := p.expect("reset"); err != nil {
			return nil, fmt.Errorf("reject with tcp: %w", err)
		}
	case "icmp", "icmpv6", "icmpx":
		if (w == "icmp" && p.fam == model.IPv6) || (w == "icmpv6" && p.fam == model.IPv4) {
			return nil, fmt.Errorf("reject with %s in a table of family %s", w, p.fam)
		}
		if p.peek() == "type" {
			p.next()
		}
		if p.next() == "" {
			return nil, fmt.Errorf("reject with %s: missing type", w)
		}
	default:
		return nil, fmt.Errorf("unsupported reject with %q", w)
	}
	return verdictStmt{v: verdict{kind: vReject}}, nil
}
