package restoretest

import (
	"fmt"
	"slices"
	"strconv"
)

// extensionTargets are the -j targets that are not chains: the standard verdicts and the
// target extensions a kube-proxy-like ruleset uses. Any other -j target must be a user
// chain of the table.
var extensionTargets = map[string]bool{
	"ACCEPT": true, "DROP": true, "RETURN": true, "QUEUE": true, "NFQUEUE": true,
	"REJECT": true, "DNAT": true, "SNAT": true, "MASQUERADE": true, "REDIRECT": true,
	"NETMAP": true, "MARK": true, "CONNMARK": true, "LOG": true, "NFLOG": true,
	"NOTRACK": true, "CT": true, "TPROXY": true, "TCPMSS": true, "SET": true,
	"CLASSIFY": true, "DSCP": true, "TOS": true, "TTL": true, "HL": true, "AUDIT": true,
	"CHECKSUM": true, "TRACE": true, "SECMARK": true, "CONNSECMARK": true,
}

// command applies a command line (-A, -I, -D, -R, -F, -X, -N, -Z) to the block's table.
func (b *block) command(line string) error {
	args, err := SplitArgs(line)
	if err != nil {
		return err
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "-A", "--append", "-I", "--insert", "-R", "--replace":
		return b.write(cmd, rest)
	case "-D", "--delete":
		return b.delete(rest)
	case "-F", "--flush":
		return b.flush(rest)
	case "-X", "--delete-chain":
		return b.deleteChain(rest)
	case "-N", "--new-chain":
		return b.newChain(rest)
	case "-Z", "--zero":
		return nil // counters are not kept
	default:
		return fmt.Errorf("%w: unknown command %q", ErrSyntax, cmd)
	}
}

// chain returns the named chain of the block's table, or ErrNoChain.
func (b *block) chain(name string) (*Chain, error) {
	c, ok := b.t.chains[name]
	if !ok {
		return nil, fmt.Errorf("%w: chain %q in table %s", ErrNoChain, name, b.t.name)
	}
	return c, nil
}

// position parses the rule number args[0] of -I, -R or -D, if it is one.
func position(args []string) (int, bool) {
	if len(args) == 0 {
		return 0, false
	}
	n, err := strconv.Atoi(args[0])
	return n, err == nil
}

// write applies -A, -I [n] and -R n: the chain must exist and a chain target must exist.
func (b *block) write(cmd string, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: %s needs a chain", ErrSyntax, cmd)
	}
	c, err := b.chain(args[0])
	if err != nil {
		return err
	}
	args = args[1:]
	pos, hasPos := position(args)
	isAppend := cmd == "-A" || cmd == "--append"
	isReplace := cmd == "-R" || cmd == "--replace"
	switch {
	case hasPos && !isAppend:
		args = args[1:]
	case isReplace:
		return fmt.Errorf("%w: %s needs a rule number", ErrSyntax, cmd)
	default:
		pos = 1
	}
	rule, err := parseRule(args)
	if err != nil {
		return err
	}
	if err := b.checkTarget(rule); err != nil {
		return err
	}
	b.touch(c.Name)
	b.stats.RulesWritten++
	switch {
	case isAppend:
		c.Rules = append(c.Rules, rule)
	case isReplace:
		if pos < 1 || pos > len(c.Rules) {
			return fmt.Errorf("%w: replace rule %d of %d in %s", ErrBadIndex, pos, len(c.Rules), c.Name)
		}
		c.Rules[pos-1] = rule
	default:
		if pos < 1 || pos > len(c.Rules)+1 {
			return fmt.Errorf("%w: insert at %d into %d rules of %s", ErrBadIndex, pos, len(c.Rules), c.Name)
		}
		c.Rules = slices.Insert(c.Rules, pos-1, rule)
	}
	return nil
}

// checkTarget checks that a rule's -j target is an extension target or a user chain of
// the table, and that a -g target is a user chain.
func (b *block) checkTarget(rule Rule) error {
	if rule.Target == "" || (!rule.Goto && extensionTargets[rule.Target]) {
		return nil
	}
	if c, ok := b.t.chains[rule.Target]; ok && !c.Builtin {
		return nil
	}
	return fmt.Errorf("%w: target chain %q does not exist in table %s", ErrNoChain, rule.Target, b.t.name)
}

// delete applies -D chain n and -D chain rule-spec (the first rule with the same text).
func (b *block) delete(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("%w: -D needs a chain and a rule or rule number", ErrSyntax)
	}
	c, err := b.chain(args[0])
	if err != nil {
		return err
	}
	idx := -1
	if n, ok := position(args[1:]); ok && len(args) == 2 {
		if n < 1 || n > len(c.Rules) {
			return fmt.Errorf("%w: delete rule %d of %d in %s", ErrBadIndex, n, len(c.Rules), c.Name)
		}
		idx = n - 1
	} else {
		spec := joinArgs(args[1:])
		idx = slices.IndexFunc(c.Rules, func(r Rule) bool { return r.Spec == spec })
		if idx < 0 {
			return fmt.Errorf("%w: %s %s", ErrNoMatch, c.Name, spec)
		}
	}
	c.Rules = slices.Delete(c.Rules, idx, idx+1)
	b.touch(c.Name)
	b.stats.RulesDeleted++
	return nil
}

// flush applies -F [chain]: without a chain every chain of the table is emptied.
func (b *block) flush(args []string) error {
	if len(args) > 1 {
		return fmt.Errorf("%w: -F takes at most a chain", ErrSyntax)
	}
	if len(args) == 1 {
		c, err := b.chain(args[0])
		if err != nil {
			return err
		}
		b.flushChain(c)
		return nil
	}
	for _, c := range b.t.chains {
		b.flushChain(c)
	}
	return nil
}

// flushChain empties c and counts it.
func (b *block) flushChain(c *Chain) {
	c.Rules = nil
	b.touch(c.Name)
	b.stats.ChainsFlushed++
}

// deleteChain applies -X [chain]: the chain must be a user chain, empty and not
// referenced; without a chain every user chain is deleted, under the same conditions.
func (b *block) deleteChain(args []string) error {
	if len(args) > 1 {
		return fmt.Errorf("%w: -X takes at most a chain", ErrSyntax)
	}
	names := b.t.userChains()
	if len(args) == 1 {
		c, err := b.chain(args[0])
		if err != nil {
			return err
		}
		if c.Builtin {
			return fmt.Errorf("%w: %s", ErrBuiltinChain, c.Name)
		}
		names = []string{c.Name}
	}
	for _, name := range names {
		if err := b.deletable(b.t.chains[name]); err != nil {
			return err
		}
	}
	for _, name := range names {
		delete(b.t.chains, name)
		b.touch(name)
		b.stats.ChainsDeleted++
	}
	return nil
}

// deletable checks that user chain c holds no rules and that no rule of the table
// jumps or goes to it.
func (b *block) deletable(c *Chain) error {
	if len(c.Rules) > 0 {
		return fmt.Errorf("%w: %s holds %d rules", ErrChainNotEmpty, c.Name, len(c.Rules))
	}
	for _, other := range b.t.chains {
		for _, r := range other.Rules {
			if r.Target == c.Name {
				return fmt.Errorf("%w: %s is the target of a rule in %s", ErrChainBusy, c.Name, other.Name)
			}
		}
	}
	return nil
}

// newChain applies -N chain: the chain must not exist.
func (b *block) newChain(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("%w: -N takes a chain", ErrSyntax)
	}
	if _, ok := b.t.chains[args[0]]; ok {
		return fmt.Errorf("%w: %s", ErrChainExists, args[0])
	}
	b.t.chains[args[0]] = &Chain{Name: args[0], Policy: "-"}
	b.touch(args[0])
	b.stats.ChainsCreated++
	return nil
}
