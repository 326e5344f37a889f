package iptables

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/portico-dev/portico/model"
)

// partialSync writes what the Service ports named by d changed: the ports' own chains,
// the shared chains holding their frontends, and set entries (added before the restore,
// deleted after it, so that no rule ever misses an entry it relies on).
func (fs *familyState) partialSync(ctx context.Context, k kernel, t *model.Table, d model.Diff, mark uint32) error {
	c := newChange(false)
	r := newRenderer(fs.x, t.Node(), mark)
	for _, name := range slices.Concat(d.Changed, d.Removed) {
		var plan *portPlan
		delete(fs.refused, name) // named again: try it
		if sp, ok := t.Get(name); ok {
			plan = c.renderPort(r, sp, nil)
		}
		fs.applyPort(c, name, fs.ports[name], plan)
	}
	fs.finishShared(c)
	if c.empty() {
		return c.skippedError(fs.x.f)
	}
	if len(c.adds) > 0 {
		if err := k.IPSetRestore(ctx, fs.entriesInput("add", c.adds)); err != nil {
			return fmt.Errorf("ipset restore adding %d %s entries: %w", len(c.adds), fs.x.f, err)
		}
	}
	for _, p := range fs.x.pieces(c, fs.pieceRules) {
		in := p.input(c, fs.x.descending)
		if err := restore(ctx, k, fs.x.f, in); err != nil {
			return fmt.Errorf("iptables-restore of %d changed %s chains: %w", len(c.write)+len(c.remove), fs.x.f, &restoreFailure{in, err})
		}
	}
	if len(c.dels) > 0 {
		if err := k.IPSetRestore(ctx, fs.entriesInput("del", c.dels)); err != nil {
			return fmt.Errorf("ipset restore deleting %d %s entries: %w", len(c.dels), fs.x.f, err)
		}
	}
	return c.skippedError(fs.x.f)
}

// maxElem is the capacity of every set (ipset's default, 65,536, is short of a large
// cluster's frontends).
const maxElem = 1 << 20

// createLine is the ipset line that creates the set of kind (or its temporary twin).
func (fs *familyState) createLine(name, typ string) string {
	return fmt.Sprintf("create %s %s family %s maxelem %d\n", name, typ, fs.x.ipsetFam, maxElem)
}

// fullSetsInput fills a temporary twin of each set with every entry of the mirror and
// swaps it with the set (ipset swap is atomic: a rule never sees a half-filled set).
func (fs *familyState) fullSetsInput() []byte {
	var b strings.Builder
	for _, k := range setKinds {
		name := setName(fs.x.f, k.kind)
		tmp := tempSetName(name)
		b.WriteString(fs.createLine(tmp, k.typ))
		fmt.Fprintf(&b, "flush %s\n", tmp)
		for _, e := range slices.Sorted(maps.Keys(fs.sets[k.kind])) {
			fmt.Fprintf(&b, "add %s %s\n", tmp, e)
		}
		b.WriteString(fs.createLine(name, k.typ))
		fmt.Fprintf(&b, "swap %s %s\ndestroy %s\n", tmp, name, tmp)
	}
	return []byte(b.String())
}

// entriesInput adds or deletes entries.
func (fs *familyState) entriesInput(op string, es []setEntry) []byte {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "%s %s %s\n", op, setName(fs.x.f, e.kind), e.entry)
	}
	return []byte(b.String())
}

// listing is what a listing of the kernel found: portico's chains, and the rules of
// other chains that jump to them (listChains).
type listing struct {
	chains map[string]chainState
	jumps  map[string]bool
	at     time.Time
}

// preparedMaxAge is how old Prepare's listing may be when the first full sync uses it
// (the informers' LIST normally takes a second or two; an API server that did not answer
// for longer leaves time for the kernel to change).
const preparedMaxAge = 30 * time.Second

// listing returns the listing Prepare made (once, and only while it is recent), or lists
// the kernel now.
func (fs *familyState) listing(ctx context.Context, k kernel) (*listing, error) {
	l := fs.prepared
	fs.prepared = nil
	if l != nil && time.Since(l.at) < preparedMaxAge {
		return l, nil
	}
	return list(ctx, k, fs.x)
}

// list lists the kernel (listChains).
func list(ctx context.Context, k kernel, x fam) (*listing, error) {
	at := time.Now()
	chains, jumps, err := listChains(ctx, k, x)
	if err != nil {
		return nil, err
	}
	return &listing{chains: chains, jumps: jumps, at: at}, nil
}

// listChains reads which of portico's chains the kernel holds in each table, and which
// rules of other chains jump to them ("-A CHAIN ..." lines), with one save of every table
// (without -t, which would make iptables-legacy create a table that does not exist).
func listChains(ctx context.Context, k kernel, x fam) (map[string]chainState, map[string]bool, error) {
	out, jumps := map[string]chainState{}, map[string]bool{}
	save, err := k.Save(ctx, x.f, "")
	if err != nil {
		return nil, nil, fmt.Errorf("listing the %s chains: %w", x.f, err)
	}
	table := ""
	for line := range strings.Lines(save) {
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
		case strings.HasPrefix(line, ":"+chainPrefix):
			name, _, _ := strings.Cut(line[1:], " ")
			out[name] = chainState{table: table}
		case strings.HasPrefix(line, "-A ") && refersToOwn(line):
			jumps[table+" "+line] = true
		}
	}
	return out, jumps, nil
}

// missingJumps returns the jumps that a listing (table + " " + "-A ..." line) lacks.
func missingJumps(have map[string]bool) []jump {
	var out []jump
	for _, j := range jumps() {
		if !have[j.table+" -A "+j.chain+" "+strings.Join(j.spec, " ")] {
			out = append(out, j)
		}
	}
	return out
}
