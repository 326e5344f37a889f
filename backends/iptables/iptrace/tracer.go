package iptrace

import (
	"fmt"
	"net/netip"

	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/backends/iptables/ipsettest"
	"github.com/portico-dev/portico/backends/iptables/restoretest"
	"github.com/portico-dev/portico/model"
)

// tracer follows packets through the tables of one family that a restoretest.Ruleset
// holds, with the sets of an ipsettest.Sets.
type tracer struct {
	rs    *restoretest.Ruleset
	sets  *ipsettest.Sets
	fam   model.Family
	host  backendtest.Host
	rules map[string]parsed // parsed rules by Spec
}

// parsed is a rule's parse result, kept so that each Spec is parsed once.
type parsed struct {
	rule *rule
	err  error
}

// New returns a Tracer over the rules rs holds (the iptables tables of family f: one
// Ruleset per family) and the ipsets sets holds (shared by both families; nil when the
// rules use none), for node-a described by host. The tracer reads rs and sets at every
// Trace, so it sees every sync made after New.
func New(rs *restoretest.Ruleset, sets *ipsettest.Sets, f model.Family, host backendtest.Host) backendtest.Tracer {
	return &tracer{rs: rs, sets: sets, fam: f, host: host, rules: map[string]parsed{}}
}

// Trace follows p through every path the rules allow and gathers their outcome.
func (t *tracer) Trace(p backendtest.Packet) (backendtest.Result, error) {
	if t.host.Martian(p) {
		return backendtest.Result{Verdict: backendtest.VerdictDrop}, nil
	}
	res, err := t.trace(p)
	if err != nil {
		return backendtest.Result{}, fmt.Errorf("tracing %s: %w", p, err)
	}
	return res, nil
}

// trace does Trace's work.
func (t *tracer) trace(p backendtest.Packet) (backendtest.Result, error) {
	if _, ok := protocols[protoName(p.Proto)]; !ok {
		return backendtest.Result{}, fmt.Errorf("unknown protocol %s", p.Proto)
	}
	if !t.fam.Contains(p.Src) || !t.fam.Contains(p.Dst.Addr()) {
		return backendtest.Result{}, fmt.Errorf("the addresses are not %s, the family of the traced rules", t.fam)
	}
	start := packet{proto: p.Proto, src: p.Src, dst: p.Dst, iif: p.InIface}
	outs, err := t.follow(start)
	if err != nil {
		return backendtest.Result{}, err
	}
	if err := uniform(outs); err != nil {
		return backendtest.Result{}, err
	}
	return merge(outs)
}

// follow runs the packet once per sequence of random choices and returns the outcome of
// each path.
func (t *tracer) follow(start packet) ([]outcome, error) {
	pick := &chooser{}
	var outs []outcome
	for {
		r := &run{t: t, pick: pick, pkt: start, prob: 1}
		o, err := r.walk()
		if err != nil {
			return nil, err
		}
		outs = append(outs, o)
		more, err := pick.next()
		if err != nil || !more {
			return outs, err
		}
	}
}

// rule returns the parsed rule of a Spec.
func (t *tracer) rule(spec string) (*rule, error) {
	p, ok := t.rules[spec]
	if !ok {
		p.rule, p.err = parseRule(spec, t.fam)
		t.rules[spec] = p
	}
	return p.rule, p.err
}

// outcome is where one path of a packet ends.
type outcome struct {
	verdict backendtest.Verdict
	target  netip.AddrPort // VerdictDNAT only
	masq    bool
	sticky  bool
	prob    float64  // the probability of the path
	dnatAt  position // the DNAT rule (VerdictDNAT only)
}

// String describes the outcome for error messages.
func (o outcome) String() string {
	if o.verdict == backendtest.VerdictDNAT {
		return fmt.Sprintf("dnat to %s (masqueraded: %t) by %s", o.target, o.masq, o.dnatAt)
	}
	return o.verdict.String()
}
