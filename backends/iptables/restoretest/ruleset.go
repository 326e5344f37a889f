// Package restoretest is a unit-test fake of iptables-restore: it parses restore input
// and keeps an in-memory ruleset, so that tests of the iptables backend can check what a
// restore changed (Stats) and what the tables hold afterwards (Save) without a kernel.
//
// The semantics follow iptables-restore v1.8.9 (iptables-nft-restore where the two
// variants differ), checked against the real tools in a network namespace:
//
//   - Each `*table` … `COMMIT` block is applied atomically when its COMMIT is reached.
//     Like the real tools (both nft and legacy), an input with several blocks is NOT
//     atomic as a whole: blocks committed before a failing block stay applied.
//   - Without noflush a block replaces its table: chains it does not declare are gone,
//     built-in chains it does not declare get policy ACCEPT (iptables-nft; legacy keeps
//     their policy: set Ruleset.Legacy).
//   - With noflush a declared user chain is created or flushed; a declared built-in chain
//     gets the new policy and keeps its rules.
//   - Rules are compared as normalised text: the fake does not canonicalise matches the
//     way iptables does (`-p tcp --dport 80` is saved by iptables as
//     `-p tcp -m tcp --dport 80`), so tests must write rules in iptables-save form.
//
// Where the variants disagree the fake takes the stricter reading: a policy on a user
// chain and `-X` of a built-in chain are errors (legacy), though iptables-nft accepts them.
package restoretest

import (
	"slices"
	"sort"
)

// Tables lists the tables the fake knows, in the order Save prints them.
var Tables = []string{"raw", "mangle", "nat", "filter"}

// builtinChains holds each table's built-in chains in iptables-save order.
var builtinChains = map[string][]string{
	"filter": {"INPUT", "FORWARD", "OUTPUT"},
	"nat":    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	"mangle": {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
	"raw":    {"PREROUTING", "OUTPUT"},
}

// Rule is one rule of a chain.
type Rule struct {
	// Spec is the rule's arguments after the chain name, whitespace normalised, with
	// arguments that contain blanks double-quoted (as iptables-save prints them).
	Spec string
	// Target is the argument of -j or -g, "" if the rule has none.
	Target string
	// Goto is true when Target comes from -g (goto) rather than -j (jump).
	Goto bool
	// Comment is the argument of --comment, "" if the rule has none.
	Comment string
}

// Chain is one chain of a table.
type Chain struct {
	// Name is the chain's name.
	Name string
	// Builtin is true for the table's built-in chains (INPUT, PREROUTING, ...).
	Builtin bool
	// Policy is ACCEPT or DROP for a built-in chain and "-" for a user chain.
	Policy string
	// Rules are the chain's rules in order.
	Rules []Rule
}

// table is one table: its chains by name.
type table struct {
	name   string
	chains map[string]*Chain
}

// Ruleset is the fake's in-memory state: the four tables with their chains and rules.
// The zero value is an empty ruleset (every table holds only its built-in chains with
// policy ACCEPT), as in a fresh network namespace. A Ruleset is not safe for concurrent use.
type Ruleset struct {
	// Legacy makes a restore without noflush keep the policies of the built-in chains a
	// block does not declare, as iptables-legacy-restore does; iptables-nft-restore (the
	// default, false) resets them to ACCEPT.
	Legacy bool

	tables map[string]*table
	stats  Stats
}

// newTable returns a table holding only its built-in chains, with policy ACCEPT.
func newTable(name string) *table {
	t := &table{name: name, chains: map[string]*Chain{}}
	for _, c := range builtinChains[name] {
		t.chains[c] = &Chain{Name: c, Builtin: true, Policy: "ACCEPT"}
	}
	return t
}

// clone returns a deep copy of t.
func (t *table) clone() *table {
	c := &table{name: t.name, chains: make(map[string]*Chain, len(t.chains))}
	for name, ch := range t.chains {
		cp := *ch
		cp.Rules = slices.Clone(ch.Rules)
		c.chains[name] = &cp
	}
	return c
}

// userChains returns the names of t's user chains, sorted.
func (t *table) userChains() []string {
	var names []string
	for name, c := range t.chains {
		if !c.Builtin {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// table returns the named table, creating it empty the first time.
func (r *Ruleset) table(name string) *table {
	if r.tables == nil {
		r.tables = map[string]*table{}
	}
	t, ok := r.tables[name]
	if !ok {
		t = newTable(name)
		r.tables[name] = t
	}
	return t
}

// Chains returns the names of a table's chains: the built-in ones in iptables-save order,
// then the user chains sorted. It returns nil for an unknown table.
func (r *Ruleset) Chains(tableName string) []string {
	builtins, ok := builtinChains[tableName]
	if !ok {
		return nil
	}
	return append(slices.Clone(builtins), r.table(tableName).userChains()...)
}

// Chain returns a copy of a table's chain and whether it exists.
func (r *Ruleset) Chain(tableName, chain string) (Chain, bool) {
	if _, ok := builtinChains[tableName]; !ok {
		return Chain{}, false
	}
	c, ok := r.table(tableName).chains[chain]
	if !ok {
		return Chain{}, false
	}
	cp := *c
	cp.Rules = slices.Clone(c.Rules)
	return cp, true
}

// Rules returns a copy of a chain's rules, nil if the table or chain does not exist.
func (r *Ruleset) Rules(tableName, chain string) []Rule {
	c, _ := r.Chain(tableName, chain)
	return c.Rules
}
