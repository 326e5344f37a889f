package nftables

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/proxier/model"
)

// partialTransaction writes only the Service ports named in d, plus the deletion of the
// objects the previous transaction emptied. Its size is proportional to the change.
func (fs *familyState) partialTransaction(t *model.Table, d model.Diff) *txWriter {
	w := &txWriter{}
	fs.deleteStale(w)
	for _, name := range slices.Concat(d.Removed, d.Changed) {
		old := fs.ports[name]
		var plan *portPlan
		if sp, ok := t.Get(name); ok {
			plan = fs.r.render(sp, fs.slotFunc(old))
		}
		fs.applyPort(w, name, old, plan, false)
	}
	fs.dropRecreated(w)
	return w
}

// dropRecreated removes from the pending deletions the objects this transaction brought
// back (a Service port deleted and re-created between two syncs).
func (fs *familyState) dropRecreated(w *txWriter) {
	keep := w.deletes[:0]
	var deleted []string
	for _, o := range w.deletes {
		name := objectName(o)
		if fs.inUse(name) {
			continue
		}
		keep = append(keep, o)
		deleted = append(deleted, name)
	}
	w.deletes = keep
	fs.pending.deleted = deleted
}

// inUse reports whether a Service port now owns the chain or set called name, or reads
// the endpoint map called name.
func (fs *familyState) inUse(name string) bool {
	for _, ps := range fs.ports {
		if _, ok := ps.chain(name); ok || slices.Contains(ps.affinity, name) {
			return true
		}
	}
	return fs.mapUsers[name] > 0
}

func objectName(o knftables.Object) string {
	switch v := o.(type) {
	case *knftables.Chain:
		return v.Name
	case *knftables.Set:
		return v.Name
	case *knftables.Map:
		return v.Name
	}
	return ""
}

// fullTransaction rewrites the whole table: every shared set and map is flushed and
// refilled and every chain rewritten in one atomic transaction, so that existing
// connections (held by conntrack) and the rules of other tables are not disturbed, and
// objects left by an earlier run that the model no longer needs are emptied (and deleted
// by the next transaction).
func (fs *familyState) fullTransaction(t *model.Table, mark uint32, existing existingObjects) *txWriter {
	// The objects the last transaction emptied can go now, as in a partial sync.
	emptiedChains, emptiedSets := fs.staleChains, fs.staleSets
	fs.reset()
	fs.r.node = t.Node()
	w := &txWriter{epAdd: make([]epOp, 0, endpointCount(t))}
	fs.writeSkeleton(w, mark)
	for sp := range t.All() {
		fs.applyPort(w, sp.Name, nil, fs.r.render(sp, fs.slotFunc(nil)), true)
	}
	fs.retireUnknown(w, existing, emptiedChains, emptiedSets)
	fs.flushEndpointMaps(w, existing, emptiedSets)
	return w
}

// flushEndpointMaps empties the endpoint maps an earlier run left: the ones still used
// are refilled by this transaction; the others are deleted now if the last transaction
// already emptied them, else by the next one.
func (fs *familyState) flushEndpointMaps(w *txWriter, existing existingObjects, emptied map[string]bool) {
	for _, s := range existing.sets {
		if !strings.HasPrefix(s, endpointMapPrefix) {
			continue
		}
		if emptied[s] && !fs.pending.epMaps[s] {
			w.deletes = append(w.deletes, &knftables.Map{Name: s})
			continue
		}
		flush := flushMarker{&knftables.Map{Name: s}}
		// Flushes go first, before the additions that refill the maps.
		w.setup = append([]knftables.Object{w.setup[0], flush}, w.setup[1:]...)
		if !fs.pending.epMaps[s] {
			fs.pending.staleSets[s] = true
		}
		fs.epMaps[s] = true
	}
}

// endpointCount is the number of endpoint slots a full sync of t writes (an upper bound).
func endpointCount(t *model.Table) int {
	n := 0
	for sp := range t.All() {
		n += len(sp.Cluster) + len(sp.Local)
	}
	return n
}

// writeSkeleton writes the table, the shared sets and maps (flushed) and the fixed chains.
func (fs *familyState) writeSkeleton(w *txWriter, mark uint32) {
	w.setup = append(w.setup, &knftables.Table{Comment: ptr("portico service proxy: rules for Kubernetes Services")})
	for _, o := range sharedSets(fs.r.f) {
		w.setup = append(w.setup, o, flushMarker{o})
	}
	helpers := helperChains(fs.r.f, mark)
	for _, name := range helperChainOrder {
		fs.skeletonChain(w, &knftables.Chain{Name: name}, helpers[name])
	}
	for _, bc := range baseChains() {
		fs.skeletonChain(w, &knftables.Chain{
			Name: bc.name, Type: ptr(bc.typ), Hook: ptr(bc.hook), Priority: ptr(bc.priority),
		}, bc.rules)
	}
}

func (fs *familyState) skeletonChain(w *txWriter, c *knftables.Chain, rules []string) {
	w.setup = append(w.setup, c, flushMarker{&knftables.Chain{Name: c.Name}})
	for _, r := range rules {
		w.setup = append(w.setup, &knftables.Rule{Chain: c.Name, Rule: r})
	}
}

// existingObjects are the chains and sets found in the kernel before a full sync.
type existingObjects struct {
	chains, sets []string
}

// listExisting lists portico's table as the kernel holds it; found is false when the
// kernel has no such table.
func (fs *familyState) listExisting(ctx context.Context) (existing existingObjects, found bool, err error) {
	all, err := fs.nft.ListAll(ctx)
	if err != nil {
		if knftables.IsNotFound(err) {
			return existingObjects{}, false, nil
		}
		return existingObjects{}, false, fmt.Errorf("listing table %s: %w", tableName, err)
	}
	return existingObjects{chains: all["chain"], sets: append(all["set"], all["map"]...)}, true, nil
}

// retireUnknown empties the chains left by an earlier run that no Service port uses; they
// and the unused affinity sets are deleted by the next transaction. Those that the last
// committed transaction already emptied (emptiedChains, emptiedSets) are deleted now.
func (fs *familyState) retireUnknown(w *txWriter, existing existingObjects, emptiedChains, emptiedSets map[string]bool) {
	for _, c := range existing.chains {
		if !isPortObject(c) || fs.inUse(c) {
			continue
		}
		if emptiedChains[c] {
			w.deletes = append(w.deletes, &knftables.Chain{Name: c})
			continue
		}
		w.flushes = append(w.flushes, &knftables.Chain{Name: c})
		fs.pending.staleChains[c] = true
	}
	for _, s := range existing.sets {
		if !isPortObject(s) || fs.inUse(s) {
			continue
		}
		if emptiedSets[s] {
			w.deletes = append(w.deletes, &knftables.Set{Name: s})
			continue
		}
		fs.pending.staleSets[s] = true
	}
}
