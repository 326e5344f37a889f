package iptables

import (
	"maps"
	"slices"

	"github.com/portico-dev/portico/model"
)

// finishShared rewrites the shared chains c marked dirty, and up the dispatch tree the
// chains whose children appeared or vanished: a leaf, or a first-level chain, exists only
// while it holds rules.
func (fs *familyState) finishShared(c *change) {
	for len(c.dirty) > 0 {
		chains := slices.Sorted(maps.Keys(c.dirty))
		clear(c.dirty)
		for _, ch := range chains {
			fs.rewriteShared(c, ch)
		}
	}
}

// rewriteShared writes one shared or tree chain from the mirror, deletes it when it is a
// tree chain left empty, and marks its parent dirty when it appears or vanishes.
func (fs *familyState) rewriteShared(c *change, ch string) {
	rules := fs.sharedRules(ch)
	node, isTree := fs.x.parentOf(ch)
	if !isTree {
		fs.writeChain(c, fs.tableOf(ch), ch, rules)
		return
	}
	kids := fs.children[node.parent]
	_, had := kids[ch]
	if len(rules) == 0 {
		fs.removeChain(c, ch)
		if had {
			delete(kids, ch)
			c.dirty[node.parent] = true
		}
		return
	}
	fs.writeChain(c, node.table, ch, rules)
	if !had {
		if kids == nil {
			kids = map[string]string{}
			fs.children[node.parent] = kids
		}
		kids[ch] = node.rule
		c.dirty[node.parent] = true
	}
}

// sharedRules returns the rules of a shared chain: the rules its owners put there (in the
// order of their names), then the jumps to its non-empty children (by their names); the
// root of the address tree ends with the jump to the NodePort tree.
func (fs *familyState) sharedRules(ch string) []string {
	var rules []string
	owners := fs.shared[ch]
	names := slices.SortedFunc(maps.Keys(owners), model.ServicePortName.Compare)
	for _, n := range names {
		rules = append(rules, owners[n]...)
	}
	kids := fs.children[ch]
	for _, k := range slices.Sorted(maps.Keys(kids)) {
		rules = append(rules, kids[k])
	}
	if ch == chainServices {
		rules = append(rules, "-m addrtype --dst-type LOCAL -j "+chainNodePorts)
	}
	return rules
}

// tableOf returns the table of a shared chain.
func (fs *familyState) tableOf(ch string) string {
	switch ch {
	case chainServices, chainNodePorts:
		return tableNAT
	case chainNodePortsEmpty:
		return tableFilter
	}
	return fs.sharedTable[ch]
}
