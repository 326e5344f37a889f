package iptrace

import (
	"fmt"
	"strings"

	"github.com/portico-dev/portico/backends/iptables/restoretest"
	"github.com/portico-dev/portico/model"
)

// rule is a parsed rule: its matches in order and its target.
type rule struct {
	matches []match
	target  target
	// checks are the recent lists the rule's --update or --rcheck matches look up.
	checks []recentList
}

// match is one condition of a rule, evaluated on a path; it may choose (statistic) or
// record (recent --set) as the kernel's match would.
type match func(r *run, at position) (bool, error)

// position is where a rule is: its table, chain and 0-based index in the chain.
type position struct {
	table string
	chain string
	index int
}

// String names the rule for error messages.
func (at position) String() string {
	return fmt.Sprintf("table %s chain %s rule %d", at.table, at.chain, at.index+1)
}

// parser holds the state of parsing one rule.
type parser struct {
	fam    model.Family
	args   []string
	pos    int
	neg    bool           // a "!" precedes the next option
	proto  model.Protocol // the -p protocol, 0 if none
	module string         // the last -m module
	rule   rule
	stat   *statistic // the statistic module being parsed
	recent *recentOpts
}

// parseRule parses a rule's Spec. It knows -s, -d, -i, -p, -m (tcp, udp, sctp, comment,
// conntrack, addrtype, set, mark, statistic, recent), -j and -g with the options of the
// targets ACCEPT, DROP, RETURN, REJECT, DNAT, MARK and MASQUERADE; anything else is an
// error.
func parseRule(spec string, fam model.Family) (*rule, error) {
	args, err := restoretest.SplitArgs(spec)
	if err != nil {
		return nil, err
	}
	p := &parser{fam: fam, args: args}
	for p.pos < len(p.args) {
		if err := p.option(p.next()); err != nil {
			return nil, err
		}
	}
	if err := p.endModule(); err != nil {
		return nil, err
	}
	if p.neg {
		return nil, fmt.Errorf("a trailing !")
	}
	return &p.rule, nil
}

// next returns the next argument.
func (p *parser) next() string {
	a := p.args[p.pos]
	p.pos++
	return a
}

// value returns the argument of option opt.
func (p *parser) value(opt string) (string, error) {
	if p.pos >= len(p.args) {
		return "", fmt.Errorf("option %s needs an argument", opt)
	}
	return p.next(), nil
}

// add appends a match, negated when a "!" preceded its option.
func (p *parser) add(m match, negatable bool, opt string) error {
	if p.neg {
		if !negatable {
			return fmt.Errorf("! before %s is not modelled", opt)
		}
		inner := m
		m = func(r *run, at position) (bool, error) {
			ok, err := inner(r, at)
			return !ok, err
		}
		p.neg = false
	}
	p.rule.matches = append(p.rule.matches, m)
	return nil
}

// option parses one option and its arguments.
func (p *parser) option(opt string) error {
	if opt == "!" {
		if p.neg {
			return fmt.Errorf("two ! in a row")
		}
		p.neg = true
		return nil
	}
	switch opt {
	case "-s", "--source", "-d", "--destination":
		return p.address(opt)
	case "-i", "--in-interface":
		return p.iface(opt)
	case "-p", "--protocol":
		return p.protocol(opt)
	case "-m", "--match":
		return p.startModule(opt)
	case "-j", "--jump", "-g", "--goto":
		return p.parseTarget(opt)
	}
	if strings.HasPrefix(opt, "--") && p.module != "" {
		return p.moduleOption(opt)
	}
	return fmt.Errorf("option %q is not modelled", opt)
}

// startModule parses -m NAME.
func (p *parser) startModule(opt string) error {
	if err := p.endModule(); err != nil {
		return err
	}
	name, err := p.value(opt)
	if err != nil {
		return err
	}
	switch name {
	case "tcp", "udp", "sctp":
		if p.proto == 0 || protoName(p.proto) != name {
			return fmt.Errorf("-m %s without -p %s before it", name, name)
		}
	case "comment", "conntrack", "addrtype", "set", "mark":
	case "statistic":
		p.stat = &statistic{}
	case "recent":
		p.recent = &recentOpts{name: "DEFAULT", rsource: true}
	default:
		return fmt.Errorf("match module %q is not modelled", name)
	}
	if p.neg {
		return fmt.Errorf("! before -m")
	}
	p.module = name
	return nil
}

// endModule ends the current module: statistic and recent become matches only once all
// their options are read.
func (p *parser) endModule() error {
	defer func() { p.module, p.stat, p.recent = "", nil, nil }()
	switch {
	case p.stat != nil:
		m, err := p.stat.match()
		if err != nil {
			return err
		}
		return p.add(m, false, "-m statistic")
	case p.recent != nil:
		m, list, err := p.recent.match(p.fam)
		if err != nil {
			return err
		}
		if p.recent.action != "--set" {
			p.rule.checks = append(p.rule.checks, list)
		}
		return p.add(m, false, "-m recent")
	}
	return nil
}

// moduleOption parses an option of the current module.
func (p *parser) moduleOption(opt string) error {
	switch p.module {
	case "tcp", "udp", "sctp":
		return p.dport(opt)
	case "comment":
		if opt != "--comment" {
			break
		}
		_, err := p.value(opt)
		return err
	case "conntrack":
		return p.ctstate(opt)
	case "addrtype":
		return p.addrtype(opt)
	case "set":
		return p.matchSet(opt)
	case "mark":
		return p.mark(opt)
	case "statistic":
		return p.stat.option(p, opt)
	case "recent":
		return p.recent.option(p, opt)
	}
	return fmt.Errorf("option %s of -m %s is not modelled", opt, p.module)
}
