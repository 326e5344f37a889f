package nfttrace

import (
	"fmt"
	"strings"

	"sigs.k8s.io/knftables"
)

// maxDepth bounds nested jumps and gotos, so that a loop of chains is an error.
const maxDepth = 32

// verdictKind is what a rule tells the chain that runs it.
type verdictKind uint8

const (
	vNone   verdictKind = iota // go on with the next rule (no verdict, or continue)
	vAccept                    // end the base chain: the packet goes on to the next one
	vDrop                      // drop the packet
	vReject                    // refuse the packet
	vJump                      // run chain, then go on with the next rule
	vGoto                      // run chain instead of the rest of this one
	vReturn                    // leave this chain: back to the rule after the jump
)

// verdict is a rule's verdict; chain names the target of a jump or goto.
type verdict struct {
	kind  verdictKind
	chain string
}

// final reports whether the verdict ends the base chain.
func (v verdict) final() bool { return v.kind == vAccept || v.kind == vDrop || v.kind == vReject }

// chain runs the rules of ch (reached through depth nested jumps and gotos) and returns
// its final verdict (accept, drop, reject), or vNone when the packet leaves the chain
// without one: at its end, by return, or at the end of a chain it went to.
func (r *run) chain(ch *knftables.FakeChain, depth int) (verdict, error) {
	for _, rule := range ch.Rules {
		v, err := r.rule(rule)
		if err != nil {
			return verdict{}, ruleError(ch, rule, err)
		}
		switch v.kind {
		case vNone:
			continue
		case vReturn:
			return verdict{}, nil
		case vJump, vGoto:
			target, err := r.target(v.chain, depth+1)
			if err != nil {
				return verdict{}, ruleError(ch, rule, err)
			}
			sub, err := r.chain(target, depth+1)
			if err != nil || sub.final() {
				return sub, err
			}
			if v.kind == vGoto {
				return verdict{}, nil
			}
		default:
			return v, nil
		}
	}
	return verdict{}, nil
}

// target returns the regular chain a jump or goto names, which runs at depth.
func (r *run) target(name string, depth int) (*knftables.FakeChain, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("more than %d nested jumps and gotos (a loop of chains?)", maxDepth)
	}
	ch := r.tbl.Chains[name]
	if ch == nil {
		return nil, fmt.Errorf("no chain %q", name)
	}
	if ch.Hook != nil {
		return nil, fmt.Errorf("jump or goto to base chain %q", name)
	}
	return ch, nil
}

// rule runs one rule: its steps in order until one does not match or gives a verdict.
func (r *run) rule(rule *knftables.Rule) (verdict, error) {
	steps, err := r.t.rules.get(rule.Rule)
	if err != nil {
		return verdict{}, err
	}
	for _, s := range steps {
		ok, v, err := s.eval(r)
		if err != nil || !ok {
			return verdict{}, err
		}
		if v.kind != vNone {
			return v, nil
		}
	}
	return verdict{}, nil
}

// ruleError names the chain and rule an error comes from.
func ruleError(ch *knftables.FakeChain, rule *knftables.Rule, err error) error {
	return fmt.Errorf("chain %s, rule %q: %w", ch.Name, rule.Rule, err)
}

// parseVerdict reads a verdict from words (a verdict statement or a verdict map's value):
// accept, drop, continue, return, jump <chain> or goto <chain>. It returns the number of
// words used.
func parseVerdict(words []string) (verdict, int, error) {
	if len(words) == 0 {
		return verdict{}, 0, fmt.Errorf("missing verdict")
	}
	switch words[0] {
	case "accept":
		return verdict{kind: vAccept}, 1, nil
	case "drop":
		return verdict{kind: vDrop}, 1, nil
	case "continue":
		return verdict{kind: vNone}, 1, nil
	case "return":
		return verdict{kind: vReturn}, 1, nil
	case "jump", "goto":
		if len(words) < 2 {
			return verdict{}, 0, fmt.Errorf("%s without a chain", words[0])
		}
		kind := vJump
		if words[0] == "goto" {
			kind = vGoto
		}
		return verdict{kind: kind, chain: words[1]}, 2, nil
	}
	return verdict{}, 0, fmt.Errorf("unknown verdict %q", strings.Join(words, " "))
}
