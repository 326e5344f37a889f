package iptrace

import (
	"fmt"
)

// maxDepth bounds nested chains: deeper means a loop.
const maxDepth = 64

// flow is how a chain ends for the packet.
type flow int

const (
	flowNone   flow = iota // the end of the chain or RETURN: back to the caller
	flowAccept             // ACCEPT, or a NAT target: the table is done for this hook
	flowDrop               // DROP
	flowReject             // REJECT
)

// builtin runs the built-in chain r.hook of r.table; a packet that leaves it without a
// verdict meets its policy.
func (r *run) builtin() (flow, error) {
	c, ok := r.t.rs.Chain(r.table, r.hook)
	if !ok {
		return flowNone, fmt.Errorf("table %s has no built-in chain %s", r.table, r.hook)
	}
	f, err := r.chain(r.hook, 0)
	if err != nil || f != flowNone {
		return f, err
	}
	if c.Policy == "DROP" {
		return flowDrop, nil
	}
	return flowAccept, nil
}

// chain runs the rules of a chain of r.table, depth chains deep.
func (r *run) chain(name string, depth int) (flow, error) {
	if depth > maxDepth {
		return flowNone, fmt.Errorf("more than %d nested chains in table %s at chain %s: a loop", maxDepth, r.table, name)
	}
	c, ok := r.t.rs.Chain(r.table, name)
	if !ok {
		return flowNone, fmt.Errorf("table %s has no chain %s", r.table, name)
	}
	for i, rl := range c.Rules {
		at := position{table: r.table, chain: name, index: i}
		f, next, err := r.rule(at, rl.Spec, depth)
		if err != nil {
			return flowNone, fmt.Errorf("%s %q: %w", at, rl.Spec, err)
		}
		if !next {
			return f, nil
		}
	}
	return flowNone, nil
}

// rule evaluates one rule: it returns how the chain ends, or next when the chain goes on.
func (r *run) rule(at position, spec string, depth int) (f flow, next bool, err error) {
	rl, err := r.t.rule(spec)
	if err != nil {
		return flowNone, false, err
	}
	for _, m := range rl.matches {
		ok, err := m(r, at)
		if err != nil || !ok {
			return flowNone, err == nil, err
		}
	}
	return r.target(rl.target, at, depth)
}

// target applies a matching rule's target.
func (r *run) target(t target, at position, depth int) (flow, bool, error) {
	switch t.kind {
	case tNone:
		return flowNone, true, nil
	case tChain:
		return r.jump(t, depth)
	case tReturn:
		return flowNone, false, nil
	case tAccept:
		return flowAccept, false, nil
	case tDrop, tReject:
		return r.refuse(t.kind)
	case tMark:
		r.pkt.mark = r.pkt.mark&^t.mask ^ t.value
		return flowNone, true, nil
	case tDNAT:
		return r.dnat(t, at)
	case tMasquerade:
		if r.table != "nat" || r.hook != "POSTROUTING" {
			return flowNone, false, fmt.Errorf("MASQUERADE in %s %s: valid in nat POSTROUTING only", r.table, r.hook)
		}
		r.pkt.masq = true
		return flowAccept, false, nil
	}
	return flowNone, false, fmt.Errorf("internal error: target kind %d", t.kind)
}

// jump runs a user chain: after -j the rule's chain goes on unless the called chain gave
// a verdict; after -g the called chain's end is the rule's chain's end.
func (r *run) jump(t target, depth int) (flow, bool, error) {
	c, ok := r.t.rs.Chain(r.table, t.chain)
	if !ok || c.Builtin {
		return flowNone, false, fmt.Errorf("target %s is neither a modelled target nor a user chain of table %s", t.chain, r.table)
	}
	f, err := r.chain(t.chain, depth+1)
	if err != nil {
		return flowNone, false, err
	}
	return f, f == flowNone && !t.goTo, nil
}

// refuse applies DROP or REJECT, which the nat table does not allow; REJECT is valid in
// INPUT, FORWARD and OUTPUT only.
func (r *run) refuse(k targetKind) (flow, bool, error) {
	if r.table == "nat" {
		return flowNone, false, fmt.Errorf("DROP or REJECT in table nat")
	}
	if k == tDrop {
		return flowDrop, false, nil
	}
	if r.hook != "INPUT" && r.hook != "FORWARD" && r.hook != "OUTPUT" {
		return flowNone, false, fmt.Errorf("REJECT reached from %s: valid from INPUT, FORWARD and OUTPUT only", r.hook)
	}
	return flowReject, false, nil
}

// dnat rewrites the destination; valid in nat PREROUTING and OUTPUT.
func (r *run) dnat(t target, at position) (flow, bool, error) {
	if r.table != "nat" || (r.hook != "PREROUTING" && r.hook != "OUTPUT") {
		return flowNone, false, fmt.Errorf("DNAT in %s %s: valid in nat PREROUTING and OUTPUT only", r.table, r.hook)
	}
	r.pkt.dst = t.dest(r.pkt.dst.Port())
	r.pkt.dnat, r.dnatAt = true, at
	return flowAccept, false, nil
}
