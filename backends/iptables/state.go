package iptables

import (
	"slices"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/model"
)

// chainState is what the kernel holds of a chain portico wrote.
type chainState struct {
	table string
	hash  uint64
	rules int
}

// chainRef names a per-port chain and the hash of its rules.
type chainRef struct {
	name string
	hash uint64
}

// portState is what one Service port put into the kernel.
type portState struct {
	chains  []chainRef
	leaves  []leafRule
	entries []setEntry
}

// familyState mirrors what portico put into one family's tables and sets, so that a
// partial sync writes only what changed without reading the kernel.
type familyState struct {
	x fam
	// ready is true after a successful full sync with nothing failed since.
	ready bool
	// listed is true when chains holds every portico chain the kernel has (after a listing
	// or a successful sync); false after a failure or at start.
	listed bool
	// prepared is the listing Prepare made while the informers listed, which the first
	// full sync uses instead of listing again (nil once used, or after a failure).
	prepared *listing
	ports    map[model.ServicePortName]*portState
	// shared holds the rules of the shared chains (tree leaves, PORTICO-NP-EMPTY) by owner.
	shared map[string]map[model.ServicePortName][]string
	// sharedTable is the table of each shared chain.
	sharedTable map[string]string
	// children holds, per tree chain, the non-empty chains under it and the rule to each.
	children map[string]map[string]string
	chains   map[string]chainState
	// sets counts the users of each entry, per set kind.
	sets map[string]map[string]int
	// pieceRules bounds the rules of one iptables-restore (0: no bound); see pieces.
	pieceRules int
	// inFlight is how many inputs of a full sync may run at once (0 or 1: one; see inFlight).
	inFlight int
	// ids maps the id in per-port chain names to the port.
	ids map[string]model.ServicePortName
	// refused holds the ports whose rules iptables-restore refused, and why (confine.go).
	refused map[model.ServicePortName]error
	// baseline holds the tables' entry counts after the last sync or check
	// (iptables-legacy only; nil otherwise or when unknown).
	baseline map[string]uint32
}

func newFamilyState(x fam) *familyState {
	fs := &familyState{x: x, chains: map[string]chainState{}, refused: map[model.ServicePortName]error{}}
	fs.resetMirror()
	return fs
}

// resetMirror forgets the ports, shared chains and set entries (not the chains the kernel
// holds, which a full sync needs to delete what is no longer used).
func (fs *familyState) resetMirror() {
	fs.ports = map[model.ServicePortName]*portState{}
	fs.ids = map[string]model.ServicePortName{}
	fs.shared = map[string]map[model.ServicePortName][]string{}
	fs.sharedTable = map[string]string{}
	fs.children = map[string]map[string]string{}
	fs.sets = map[string]map[string]int{}
	for _, k := range setKinds {
		fs.sets[k.kind] = map[string]int{}
	}
}

// failed forgets everything: the next sync is full and lists the kernel first.
func (fs *familyState) failed() {
	fs.ready, fs.listed, fs.baseline, fs.prepared = false, false, nil, nil
	fs.chains = map[string]chainState{}
	fs.resetMirror()
}

// change is what one sync writes: chains to (re)write and to delete per table, set
// entries to add and delete, and the shared chains whose rules changed.
type change struct {
	full   bool
	write  map[string]tableRules
	remove map[string]string
	adds   []setEntry
	dels   []setEntry
	dirty  map[string]bool
	// jumps are rules to insert at the top of built-in chains (the listing lacked them).
	jumps []jump
	// skipped are the ports left out because they cannot be rendered.
	skipped []backends.SkippedPort
}

// renderPort renders sp for c, or records it as skipped (nil plan: its rules go): when its
// fields cannot be rendered, or iptables-restore refused its rules (refused).
func (c *change) renderPort(r *renderer, sp *model.ServicePort, refused error) *portPlan {
	if refused != nil {
		c.skipped = append(c.skipped, backends.SkippedPort{Name: sp.Name, Err: refused})
		return nil
	}
	plan, err := r.renderChecked(sp)
	if err != nil {
		c.skipped = append(c.skipped, backends.SkippedPort{Name: sp.Name, Err: err})
		return nil
	}
	return plan
}

// skippedError reports the skipped ports of family f, or nil.
func (c *change) skippedError(f model.Family) error {
	if len(c.skipped) == 0 {
		return nil
	}
	slices.SortFunc(c.skipped, func(a, b backends.SkippedPort) int { return a.Name.Compare(b.Name) })
	return &backends.SkippedError{Family: f, Ports: c.skipped}
}

// tableRules is a chain's table and rules.
type tableRules struct {
	table string
	rules []string
}

func newChange(full bool) *change {
	return &change{full: full, write: map[string]tableRules{}, remove: map[string]string{}, dirty: map[string]bool{}}
}

// empty reports whether the change writes nothing.
func (c *change) empty() bool {
	return len(c.write) == 0 && len(c.remove) == 0 && len(c.adds) == 0 && len(c.dels) == 0
}

// writeChain (re)writes a chain and records it.
func (fs *familyState) writeChain(c *change, table, name string, rules []string) {
	fs.writeHashed(c, table, name, rules, hashRules(rules))
}

// writeHashed is writeChain for rules whose hash h is known.
func (fs *familyState) writeHashed(c *change, table, name string, rules []string, h uint64) {
	if old, ok := fs.chains[name]; ok && old.hash == h && !c.full {
		return
	}
	c.write[name] = tableRules{table, rules}
	delete(c.remove, name)
	fs.chains[name] = chainState{table: table, hash: h, rules: len(rules)}
}

// removeChain flushes and deletes a chain the kernel holds.
func (fs *familyState) removeChain(c *change, name string) {
	old, ok := fs.chains[name]
	if !ok {
		return
	}
	c.remove[name] = old.table
	delete(fs.chains, name)
}

// applyPort moves the mirror of one Service port from old to plan (nil: removed),
// recording in c the chains to write and delete, the shared chains whose rules change and
// the set entries to add and delete.
func (fs *familyState) applyPort(c *change, name model.ServicePortName, old *portState, plan *portPlan) {
	if old == nil {
		old = &portState{}
	}
	next := &portState{}
	if plan != nil {
		next = &portState{leaves: plan.leaves, entries: plan.entries}
		for _, ch := range plan.chains {
			next.chains = append(next.chains, chainRef{ch.name, ch.hash})
			fs.writeHashed(c, tableNAT, ch.name, ch.rules, ch.hash)
		}
	}
	for _, ch := range old.chains {
		if !slices.ContainsFunc(next.chains, func(r chainRef) bool { return r.name == ch.name }) {
			fs.removeChain(c, ch.name)
		}
	}
	fs.moveShared(c, name, old.leaves, next.leaves)
	fs.moveEntries(c, old.entries, next.entries)
	if plan == nil {
		delete(fs.ports, name)
		return
	}
	fs.ports[name] = next
	fs.ids[portID(name)] = name
}

// moveShared replaces a port's rules in the shared chains, marking the chains that change.
func (fs *familyState) moveShared(c *change, name model.ServicePortName, old, next []leafRule) {
	byChain := func(ls []leafRule) map[string][]string {
		m := map[string][]string{}
		for _, l := range ls {
			m[l.chain] = append(m[l.chain], l.spec)
			fs.sharedTable[l.chain] = l.table
		}
		return m
	}
	o, n := byChain(old), byChain(next)
	for chain := range o {
		if _, ok := n[chain]; !ok {
			delete(fs.shared[chain], name)
			c.dirty[chain] = true
		}
	}
	for chain, rules := range n {
		if slices.Equal(o[chain], rules) && !c.full {
			continue
		}
		if fs.shared[chain] == nil {
			fs.shared[chain] = map[model.ServicePortName][]string{}
		}
		fs.shared[chain][name] = rules
		c.dirty[chain] = true
	}
}

// moveEntries counts a port's set entries out and in: an entry whose first user arrives is
// added, one whose last user leaves deleted.
func (fs *familyState) moveEntries(c *change, old, next []setEntry) {
	for _, e := range next {
		fs.sets[e.kind][e.entry]++
		if fs.sets[e.kind][e.entry] == 1 {
			c.adds = append(c.adds, e)
		}
	}
	for _, e := range old {
		fs.sets[e.kind][e.entry]--
		if fs.sets[e.kind][e.entry] <= 0 {
			delete(fs.sets[e.kind], e.entry)
			c.dels = append(c.dels, e)
		}
	}
}
