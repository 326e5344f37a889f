package restoretest

import (
	"fmt"
	"sort"
	"strings"
)

// Stats counts what the last Restore did, in the blocks it committed (a block that failed
// counts nothing). Sequence tests use it to check that a partial restore touched only
// what changed.
type Stats struct {
	// Tables are the tables committed, in input order.
	Tables []string
	// TablesReplaced counts tables committed without noflush (replaced as a whole).
	TablesReplaced int
	// ChainsDeclared counts `:CHAIN` lines.
	ChainsDeclared int
	// ChainsCreated counts user chains that did not exist and were created (by `:CHAIN` or -N).
	ChainsCreated int
	// ChainsFlushed counts existing user chains emptied by a `:CHAIN` line (with noflush)
	// and chains emptied by -F.
	ChainsFlushed int
	// ChainsDeleted counts user chains deleted by -X.
	ChainsDeleted int
	// RulesWritten counts rules added or replaced (-A, -I, -R).
	RulesWritten int
	// RulesDeleted counts rules deleted by -D.
	RulesDeleted int
	// Touched lists, sorted and without repeats, the chains ("table/CHAIN") that a line
	// of a committed block declared, created, flushed, deleted or wrote rules into.
	Touched []string
}

// LastStats returns the counters of the last Restore.
func (r *Ruleset) LastStats() Stats {
	s := r.stats
	s.Tables = append([]string(nil), s.Tables...)
	s.Touched = append([]string(nil), s.Touched...)
	return s
}

// block is the state of one `*table` … `COMMIT` block being applied: a working copy of
// the table and what the block did so far.
type block struct {
	t       *table
	stats   Stats
	touched map[string]bool
}

// touch records that the block touched chain.
func (b *block) touch(chain string) {
	b.touched[b.t.name+"/"+chain] = true
}

// Restore applies iptables-restore input, as `iptables-restore` (noflush false) or
// `iptables-restore --noflush` (noflush true) would. Each `*table` … `COMMIT` block is
// applied when its COMMIT is reached, all of it or nothing; like the real tool, blocks
// committed before a failing line stay applied. A failure returns a *RestoreError naming
// the line. Empty lines and lines starting with '#' are skipped.
func (r *Ruleset) Restore(input string, noflush bool) error {
	r.stats = Stats{}
	touched := map[string]bool{}
	defer func() {
		for c := range touched {
			r.stats.Touched = append(r.stats.Touched, c)
		}
		sort.Strings(r.stats.Touched)
	}()
	lines := strings.Split(input, "\n")
	if strings.HasSuffix(input, "\n") {
		lines = lines[:len(lines)-1]
	}
	var cur *block
	for i, raw := range lines {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var err error
		cur, err = r.applyLine(cur, line, noflush, touched)
		if err != nil {
			return &RestoreError{Line: i + 1, Text: raw, Err: err}
		}
	}
	if cur != nil {
		return &RestoreError{Line: len(lines) + 1, Err: fmt.Errorf("%w for table %s", ErrNoCommit, cur.t.name)}
	}
	return nil
}

// applyLine applies one non-empty, non-comment line and returns the block in progress
// afterwards (nil outside a block).
func (r *Ruleset) applyLine(cur *block, line string, noflush bool, touched map[string]bool) (*block, error) {
	switch {
	case strings.HasPrefix(line, "*"):
		if cur != nil {
			return nil, fmt.Errorf("%w: table %s opened before COMMIT of %s", ErrNoCommit, line[1:], cur.t.name)
		}
		return r.begin(line[1:], noflush)
	case cur == nil:
		return nil, ErrOutsideTable
	case line == "COMMIT":
		r.commit(cur, touched)
		return nil, nil
	case strings.HasPrefix(line, ":"):
		return cur, cur.declare(line)
	default:
		return cur, cur.command(line)
	}
}

// begin opens a block for the named table: a copy of the table with noflush, a fresh
// table without.
func (r *Ruleset) begin(name string, noflush bool) (*block, error) {
	if _, ok := builtinChains[name]; !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownTable, name)
	}
	b := &block{touched: map[string]bool{}}
	if noflush {
		b.t = r.table(name).clone()
	} else {
		b.t = newTable(name)
		b.stats.TablesReplaced = 1
		if r.Legacy {
			for _, c := range builtinChains[name] {
				b.t.chains[c].Policy = r.table(name).chains[c].Policy
			}
		}
	}
	return b, nil
}

// commit installs the block's table and adds its counters to the Restore's.
func (r *Ruleset) commit(b *block, touched map[string]bool) {
	r.table(b.t.name) // make sure the map exists
	r.tables[b.t.name] = b.t
	s := &r.stats
	s.Tables = append(s.Tables, b.t.name)
	s.TablesReplaced += b.stats.TablesReplaced
	s.ChainsDeclared += b.stats.ChainsDeclared
	s.ChainsCreated += b.stats.ChainsCreated
	s.ChainsFlushed += b.stats.ChainsFlushed
	s.ChainsDeleted += b.stats.ChainsDeleted
	s.RulesWritten += b.stats.RulesWritten
	s.RulesDeleted += b.stats.RulesDeleted
	for c := range b.touched {
		touched[c] = true
	}
}

// declare applies a `:CHAIN POLICY [p:b]` line: a built-in chain gets the policy and
// keeps its rules; a user chain is created, or flushed if it exists.
func (b *block) declare(line string) error {
	d, err := parseChainDecl(line)
	if err != nil {
		return err
	}
	b.stats.ChainsDeclared++
	b.touch(d.name)
	c, ok := b.t.chains[d.name]
	switch {
	case ok && c.Builtin:
		if d.policy != "ACCEPT" && d.policy != "DROP" {
			return fmt.Errorf("%w %q for built-in chain %s", ErrBadPolicy, d.policy, d.name)
		}
		c.Policy = d.policy
	case d.policy != "-":
		return fmt.Errorf("%w %q: %s is not a built-in chain", ErrBadPolicy, d.policy, d.name)
	case ok:
		c.Rules = nil
		b.stats.ChainsFlushed++
	default:
		b.t.chains[d.name] = &Chain{Name: d.name, Policy: "-"}
		b.stats.ChainsCreated++
	}
	return nil
}
