package nfttrace

import (
	"errors"
	"fmt"
	"strings"

	"github.com/portico-dev/portico/model"
)

// parser reads the words of one rule.
type parser struct {
	words []string
	pos   int
	fam   model.Family
}

// peek returns the next word, or "" at the end.
func (p *parser) peek() string {
	if p.pos < len(p.words) {
		return p.words[p.pos]
	}
	return ""
}

// next consumes and returns the next word, or "" at the end.
func (p *parser) next() string {
	w := p.peek()
	if p.pos < len(p.words) {
		p.pos++
	}
	return w
}

// expect consumes the next word, which must be w.
func (p *parser) expect(w string) error {
	if got := p.next(); got != w {
		return fmt.Errorf("expected %q, found %q", w, got)
	}
	return nil
}

// done reports whether every word was read.
func (p *parser) done() bool { return p.pos >= len(p.words) }

// parseRule parses a rule of a table of family fam into the steps the tracer runs.
//
// Matches: `ct state S`, `ct status S` (S one flag, a comma list or a set; `!=` too);
// `F [& mask] [==|!=] RHS` where F is one packet field or a concatenation `F . F ...`
// of ip|ip6 saddr|daddr, meta l4proto, th dport, tcp|udp|sctp dport, meta mark, iifname,
// fib saddr|daddr type, and RHS a literal (address, prefix, protocol, number, range,
// interface name with a trailing * wildcard, address type), an anonymous set `{ a, b }`,
// a named set `@s`, or `vmap @m`; `numgen random mod N [offset O] [==|!=] V`.
//
// Statements: `meta mark set [meta mark (|^&) ]V`; `dnat [ip|ip6] to ADDR[:PORT]`
// (`[ADDR]:PORT` for IPv6); `dnat [ip|ip6] to numgen random mod N [offset O] map @m`;
// `masquerade [random|fully-random|persistent]`; `update|add @s { F }`; `counter`;
// accept, drop, continue, return, jump C, goto C, `reject [with tcp reset | with
// icmp|icmpv6|icmpx [type] T]`; a trailing `comment "..."`.
func parseRule(text string, fam model.Family) ([]step, error) {
	words, err := tokenize(text)
	if err != nil {
		return nil, err
	}
	if len(words) == 0 {
		return nil, errors.New("empty rule")
	}
	p := &parser{words: words, fam: fam}
	var steps []step
	terminal := false
	for !p.done() {
		if p.peek() == "comment" && p.pos+2 == len(p.words) {
			break
		}
		if terminal {
			return nil, fmt.Errorf("%q after a statement that ends the rule", strings.Join(p.words[p.pos:], " "))
		}
		s, end, err := p.item()
		if err != nil {
			return nil, err
		}
		steps, terminal = append(steps, s), end
	}
	return steps, nil
}

// item parses one match or statement; end reports a statement after which nothing of the
// rule runs.
func (p *parser) item() (s step, end bool, err error) {
	switch p.peek() {
	case "ct":
		s, err = p.ct()
	case "numgen":
		s, err = p.numgenMatch()
	case "update", "add":
		s, err = p.update()
	case "counter":
		s, err = p.counter()
	case "masquerade":
		s, err = p.masquerade()
		end = true
	case "dnat":
		s, err = p.dnat()
		end = true
	case "reject":
		s, err = p.reject()
		end = true
	case "accept", "drop", "continue", "return", "jump", "goto":
		s, err = p.verdictStmt()
		end = true
	default:
		if p.pos+2 < len(p.words) && p.words[p.pos] == "meta" && p.words[p.pos+1] == "mark" && p.words[p.pos+2] == "set" {
			s, err = p.markSet()
		} else {
			s, end, err = p.match()
		}
	}
	return s, end, err
}

// verdictStmt parses a verdict statement.
func (p *parser) verdictStmt() (step, error) {
	v, n, err := parseVerdict(p.words[p.pos:])
	p.pos += n
	return verdictStmt{v: v}, err
}

// match parses a field (or concatenation), an optional mask and comparison, and the
// right-hand side; a verdict-map lookup ends the rule.
func (p *parser) match() (step, bool, error) {
	m := &match{}
	for {
		sel, err := p.parseSelector()
		if err != nil {
			return nil, false, err
		}
		m.sels = append(m.sels, sel)
		if p.peek() != "." {
			break
		}
		p.next()
	}
	if err := p.mask(m); err != nil {
		return nil, false, err
	}
	switch p.peek() {
	case "==", "eq":
		p.next()
	case "!=", "ne":
		p.next()
		m.negate = true
	}
	err := p.rhs(m)
	return m, m.vmap != "", err
}

// mask parses `& N` after a single numeric field.
func (p *parser) mask(m *match) error {
	if w := p.peek(); w != "&" && w != "and" {
		return nil
	}
	p.next()
	if len(m.sels) != 1 || m.sels[0].kind != kInt {
		return fmt.Errorf("a mask on %q", m.sels[0].name)
	}
	lo, hi, err := parseRange(p.next())
	if err != nil || lo != hi {
		return fmt.Errorf("bad mask: %w", errors.Join(err, errors.New("not one number")))
	}
	m.mask, m.masked = lo, true
	return nil
}

// rhs parses what a match compares its fields with.
func (p *parser) rhs(m *match) error {
	switch w := p.peek(); {
	case w == "vmap":
		p.next()
		if m.negate {
			return errors.New("a negated verdict map")
		}
		name, err := p.setRef()
		m.vmap = name
		return err
	case strings.HasPrefix(w, "@"):
		name, err := p.setRef()
		m.set = name
		return err
	case w == "{":
		lit, err := p.anonSet(m.sels)
		m.lit = lit
		return err
	case w == "":
		return fmt.Errorf("%q compared with nothing", m.sels[0].name)
	}
	e, err := p.element(m.sels)
	m.lit = [][]pattern{e}
	return err
}

// setRef parses `@name`.
func (p *parser) setRef() (string, error) {
	w := p.next()
	name, ok := strings.CutPrefix(w, "@")
	if !ok || name == "" {
		return "", fmt.Errorf("expected @set, found %q (anonymous maps are not supported)", w)
	}
	return name, nil
}

// anonSet parses `{ e, e, ... }`, each element a concatenation of literals of the kinds
// of sels.
func (p *parser) anonSet(sels []selector) ([][]pattern, error) {
	if err := p.expect("{"); err != nil {
		return nil, err
	}
	var out [][]pattern
	for {
		e, err := p.element(sels)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
		switch w := p.next(); w {
		case "}":
			return out, nil
		case ",":
		default:
			return nil, fmt.Errorf("expected \",\" or \"}\" in a set, found %q", w)
		}
	}
}

// element parses one literal per selector, joined by ".".
func (p *parser) element(sels []selector) ([]pattern, error) {
	pats := make([]pattern, len(sels))
	for i, s := range sels {
		if i > 0 {
			if err := p.expect("."); err != nil {
				return nil, err
			}
		}
		pat, err := parsePattern(s.kind, p.next())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		pats[i] = pat
	}
	return pats, nil
}

// flags parses a comma-separated list of words (one word, a list a,b, or a set { a, b }).
func (p *parser) flags() ([]string, error) {
	braced := p.peek() == "{"
	if braced {
		p.next()
	}
	var out []string
	for {
		w := p.next()
		if w == "" {
			return nil, errors.New("missing value")
		}
		out = append(out, w)
		if p.peek() != "," {
			break
		}
		p.next()
	}
	if braced {
		return out, p.expect("}")
	}
	return out, nil
}
