package model

import "slices"

// Diff says what changed between the last Table a backend applied and the next one.
type Diff struct {
	// Full asks the backend to rewrite everything it owns: the first sync, after a failed
	// sync, after a change of the Node settings, and periodically.
	Full bool
	// Changed are the Service ports that are new or whose Hash differs, sorted.
	Changed []ServicePortName
	// Removed are the Service ports that exist in the previous Table but not in the next,
	// sorted.
	Removed []ServicePortName
}

// Empty reports whether there is nothing to do.
func (d Diff) Empty() bool { return !d.Full && len(d.Changed) == 0 && len(d.Removed) == 0 }

// Compare returns the Diff from prev to next. A nil prev (nothing applied yet) or a change
// of the Node settings makes the Diff full; Changed and Removed are filled in either case.
func Compare(prev, next *Table) Diff {
	var d Diff
	if prev == nil {
		d.Full = true
		d.Changed = next.Names()
		return d
	}
	d.Full = !prev.node.Equal(next.node)
	for i := range next.shards {
		a, b := prev.shards[i], next.shards[i]
		if a == b {
			continue // shared: nothing in it changed
		}
		for name, sp := range b.ports() {
			if old, ok := a.ports()[name]; !ok || old.Hash != sp.Hash {
				d.Changed = append(d.Changed, name)
			}
		}
		for name := range a.ports() {
			if _, ok := b.ports()[name]; !ok {
				d.Removed = append(d.Removed, name)
			}
		}
	}
	slices.SortFunc(d.Changed, ServicePortName.Compare)
	slices.SortFunc(d.Removed, ServicePortName.Compare)
	return d
}
