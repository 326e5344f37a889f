package nftables

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/model"
)

// portState is what one Service port has in the kernel. Its collections hold one to three
// entries, so they are slices (a map per port costs more at 10,000 ports).
type portState struct {
	chains   []chainRef
	groups   []storedGroup
	affinity []string
	elems    []elem
}

// chainRef is a chain of a port, the hash of its rules and their number (for the rule
// gauge; the mirror does not keep the rules).
type chainRef struct {
	name  string
	hash  uint64
	rules int
}

// chain returns the hash of the port's chain called name.
func (ps *portState) chain(name string) (uint64, bool) {
	for _, c := range ps.chains {
		if c.name == name {
			return c.hash, true
		}
	}
	return 0, false
}

func findGroup(gs []groupPlan, chain string) (groupPlan, bool) {
	for _, g := range gs {
		if g.chain == chain {
			return g, true
		}
	}
	return groupPlan{}, false
}

// familyState mirrors portico's table of one family, so that a partial sync writes only
// what changed without listing the kernel.
type familyState struct {
	nft   knftables.Interface
	r     renderer
	ports map[model.ServicePortName]*portState
	// portTotals are the objects of every port in ports, kept up to date by applyPort
	// (countObjects reads them instead of walking every port after each sync).
	portTotals objectCounts
	store      *elementStore
	slots      *slotAllocator
	// staleChains and staleSets were emptied by the last transaction and are deleted by
	// the next one (once nothing can refer to them any more).
	staleChains, staleSets map[string]bool
	// epMaps are the endpoint maps the kernel holds (they are created on first use, and
	// leave it when a transaction deletes them); mapUsers counts the endpoint groups that
	// read each one. A map the kernel holds without users is in staleSets; a map with
	// users never is.
	epMaps   map[string]bool
	mapUsers map[string]int
	// skeletonRules is the number of rules of the fixed chains, as the last full sync
	// wrote them (they depend on the Node settings).
	skeletonRules int
	// ready is true after a successful full sync; until then every sync is full.
	ready bool
	// pending holds the effects of the transaction being built, applied by committed.
	pending pendingState
	// batched applies transactions with nft directly, elements batched (see apply.go).
	batched bool

	// skipped are the Service ports left out of the kernel, with the reason: they could
	// not be rendered, or the kernel rejected their objects (confine.go). Unlike the
	// mirror they survive reset: a full sync checks them before it writes the others.
	skipped map[model.ServicePortName]error
	// report holds the ports that the sync under way tried and could not program.
	report map[model.ServicePortName]error
	// suspects are the ports most likely at fault: the changed ports of a partial
	// transaction the kernel rejected, and skipped ports that a full sync writes again
	// because they pass a check alone. A full sync checks them first and blames them
	// before the others for a fault that ports have only together; it forgets them once
	// it succeeds.
	suspects map[model.ServicePortName]bool
	// retryAt is when the skipped ports are tried again, retryBackoff how long the last
	// wait was; now tells the time (a field for tests).
	retryAt      time.Time
	retryBackoff time.Duration
	now          func() time.Time
}

// pendingState is what a transaction changes in the mirror once it succeeds.
type pendingState struct {
	release                []block
	staleChains, staleSets map[string]bool
	epMaps                 map[string]bool // endpoint maps the transaction creates
	deleted                []string        // stale objects the transaction deletes
}

func newFamilyState(nft knftables.Interface, f fam) *familyState {
	fs := &familyState{nft: nft, r: renderer{f: f}, now: time.Now,
		skipped: map[model.ServicePortName]error{}, report: map[model.ServicePortName]error{},
		suspects: map[model.ServicePortName]bool{}}
	fs.reset()
	return fs
}

// reset forgets everything: the next sync is a full one that rebuilds the mirror.
func (fs *familyState) reset() {
	fs.ports = map[model.ServicePortName]*portState{}
	fs.portTotals = objectCounts{}
	fs.store = newElementStore()
	fs.slots = newSlotAllocator()
	fs.staleChains, fs.staleSets = map[string]bool{}, map[string]bool{}
	fs.epMaps = map[string]bool{}
	fs.mapUsers = map[string]int{}
	fs.skeletonRules = 0
	fs.ready = false
	fs.pending = newPending()
}

func newPending() pendingState {
	return pendingState{staleChains: map[string]bool{}, staleSets: map[string]bool{}, epMaps: map[string]bool{}}
}

// committed applies the pending effects after the transaction succeeded. A deleted
// object leaves every record of what the kernel holds: an endpoint map that a later sync
// needs again must be created again.
func (fs *familyState) committed() {
	for _, b := range fs.pending.release {
		fs.slots.release(b)
	}
	for _, n := range fs.pending.deleted {
		delete(fs.staleChains, n)
		delete(fs.staleSets, n)
		delete(fs.epMaps, n)
	}
	for n := range fs.pending.staleChains {
		fs.staleChains[n] = true
	}
	for n := range fs.pending.staleSets {
		fs.staleSets[n] = true
	}
	for n := range fs.pending.epMaps {
		fs.epMaps[n] = true
	}
	fs.pending = newPending()
	fs.ready = true
}

// txWriter collects the operations of a transaction in sections that are written in a
// fixed order: objects and rules first, then element deletions before additions, then
// flushes of vanished chains, then deletions of objects emptied by the previous sync.
type txWriter struct {
	setup, objects, elDel, elAdd, flushes, deletes []knftables.Object
	epDel, epAdd                                   []epOp
}

// epOp is one endpoint-map element: slot -> endpoint (kept compact: a cold sync at 10,000
// Services × 10 endpoints writes 100,000 of them).
type epOp struct {
	m    string
	slot uint32
	ep   netip.AddrPort
}

func (o epOp) element() *knftables.Element {
	return &knftables.Element{Map: o.m, Key: []string{strconv.FormatUint(uint64(o.slot), 10)},
		Value: []string{o.ep.Addr().String(), strconv.Itoa(int(o.ep.Port()))}}
}

func (w *txWriter) transaction(nft knftables.Interface) *knftables.Transaction {
	tx := nft.NewTransaction()
	w.addTo(tx)
	return tx
}

// addTo appends the operations of w to tx, in the order of the sections.
func (w *txWriter) addTo(tx *knftables.Transaction) {
	for _, o := range w.setup {
		addOrFlush(tx, o)
	}
	for _, o := range w.objects {
		addOrFlush(tx, o)
	}
	for _, o := range w.epDel {
		tx.Delete(o.element())
	}
	for _, o := range w.elDel {
		tx.Delete(o)
	}
	for _, o := range w.epAdd {
		tx.Add(o.element())
	}
	for _, o := range w.elAdd {
		tx.Add(o)
	}
	for _, o := range w.flushes {
		tx.Flush(o)
	}
	for _, o := range w.deletes {
		tx.Delete(o)
	}
}

// flushMarker wraps an object that must be flushed (rather than added) in setup/objects.
type flushMarker struct{ knftables.Object }

func addOrFlush(tx *knftables.Transaction, o knftables.Object) {
	if f, ok := o.(flushMarker); ok {
		tx.Flush(f.Object)
		return
	}
	tx.Add(o)
}

// writeChain adds (or rewrites) a chain with its rules.
func writeChain(w *txWriter, name, comment string, rules []string, flush bool) {
	w.objects = append(w.objects, &knftables.Chain{Name: name})
	if flush {
		w.objects = append(w.objects, flushMarker{&knftables.Chain{Name: name}})
	}
	for _, r := range rules {
		rule := &knftables.Rule{Chain: name, Rule: r}
		if comment != "" {
			rule.Comment = ptr(comment)
		}
		w.objects = append(w.objects, rule)
	}
}

// applyPort writes what turns old (nil when new) into plan (nil when removed) and updates
// the mirror.
func (fs *familyState) applyPort(w *txWriter, name model.ServicePortName, old *portState, plan *portPlan, full bool) {
	if old == nil {
		old = &portState{}
	}
	removed := plan == nil
	if removed {
		// An empty plan: the endpoint elements and the affinity sets go too.
		plan = &portPlan{}
	}
	next := &portState{chains: make([]chainRef, 0, len(plan.chains))}
	fs.writeAffinitySets(w, old, plan, next)
	fs.writeChains(w, old, plan, next, full)
	fs.writeGroups(w, old, plan)
	next.groups = storeGroups(plan.groups)
	next.elems = plan.elems
	fs.retireChains(w, old, next)
	touched := fs.store.replace(name, old.elems, next.elems)
	fs.store.reconcile(touched, &w.elDel, &w.elAdd)
	fs.portTotals = fs.portTotals.minus(fs.ports[name].counts())
	if removed {
		delete(fs.ports, name)
		return
	}
	fs.ports[name] = next
	fs.portTotals = fs.portTotals.plus(next.counts())
}

func (fs *familyState) writeAffinitySets(w *txWriter, old *portState, plan *portPlan, next *portState) {
	for _, s := range plan.affinity {
		next.affinity = append(next.affinity, s.name)
		delete(fs.staleSets, s.name)
		if slices.Contains(old.affinity, s.name) {
			continue
		}
		w.objects = append(w.objects, &knftables.Set{
			Name: s.name, Type: fs.r.f.addrType, Comment: ptr(s.comment),
			Flags:   []knftables.SetFlag{knftables.DynamicFlag, knftables.TimeoutFlag},
			Timeout: ptr(time.Duration(s.timeoutSec) * time.Second),
		})
	}
	for _, n := range old.affinity {
		if !slices.Contains(next.affinity, n) {
			fs.pending.staleSets[n] = true
		}
	}
}

func (fs *familyState) writeChains(w *txWriter, old *portState, plan *portPlan, next *portState, full bool) {
	for _, c := range plan.chains {
		next.chains = append(next.chains, chainRef{name: c.name, hash: c.hash, rules: len(c.rules)})
		h, existed := old.chain(c.name)
		wasStale := fs.staleChains[c.name]
		delete(fs.staleChains, c.name)
		if existed && h == c.hash && !full {
			continue
		}
		writeChain(w, c.name, plan.comment, c.rules, existed || wasStale || full)
	}
}

// retireChains flushes the chains old had and next has not; they are deleted next time.
func (fs *familyState) retireChains(w *txWriter, old, next *portState) {
	for _, c := range old.chains {
		if _, ok := next.chain(c.name); !ok {
			w.flushes = append(w.flushes, &knftables.Chain{Name: c.name})
			fs.pending.staleChains[c.name] = true
		}
	}
}

// writeGroups writes the endpoint-map elements that changed between old and plan.
func (fs *familyState) writeGroups(w *txWriter, old *portState, plan *portPlan) {
	oldGroups := old.groupPlans()
	fs.countMapUsers(oldGroups, plan.groups)
	for _, og := range oldGroups {
		ng, ok := findGroup(plan.groups, og.chain)
		if !ok || ng.block != og.block {
			fs.groupElements(&w.epDel, og, 0, len(og.eps))
			fs.pending.release = append(fs.pending.release, og.block)
		}
	}
	for i, ng := range plan.groups {
		fs.ensureEndpointMap(w, ng.block)
		og, ok := findGroup(oldGroups, ng.chain)
		if !ok || og.block != ng.block {
			fs.groupElements(&w.epAdd, ng, 0, len(ng.eps))
			continue
		}
		plan.groups[i].eps = keepSlots(og.eps, ng.eps)
		fs.groupDiff(w, og, plan.groups[i])
	}
}

// countMapUsers moves the endpoint-map users of a port from old to next groups; a map
// left without users is deleted by the next transaction (its rules go in this one). A map
// that gets a user again is no longer stale, whether this transaction emptied it (its last
// user left, or a port moved its group within the map) or the previous one did: it stays
// in the kernel, and nothing is left for a follow-up sync.
func (fs *familyState) countMapUsers(old, next []groupPlan) {
	for _, g := range old {
		m := endpointMapName(g.block.proto, g.block.bucket)
		if fs.mapUsers[m]--; fs.mapUsers[m] <= 0 {
			delete(fs.mapUsers, m)
			fs.pending.staleSets[m] = true
		}
	}
	for _, g := range next {
		m := endpointMapName(g.block.proto, g.block.bucket)
		fs.mapUsers[m]++
		delete(fs.pending.staleSets, m)
		delete(fs.staleSets, m)
	}
}

// ensureEndpointMap creates the endpoint map of b in the transaction if the kernel does not
// hold it yet.
func (fs *familyState) ensureEndpointMap(w *txWriter, b block) {
	m := endpointMapName(b.proto, b.bucket)
	if fs.epMaps[m] || fs.pending.epMaps[m] {
		return
	}
	w.setup = append(w.setup, endpointMap(fs.r.f, b.proto, b.bucket))
	fs.pending.epMaps[m] = true
}

// keepSlots reorders next so that the endpoints also in old keep their slot (when it is
// still in range) and the new ones fill the others: a change of one endpoint rewrites one
// slot, wherever the endpoint sorts. The order does not matter to a random pick.
func keepSlots(old, next []netip.AddrPort) []netip.AddrPort {
	want := map[netip.AddrPort]int{} // endpoint -> how many times next has it
	for _, v := range next {
		want[v]++
	}
	out := make([]netip.AddrPort, len(next))
	for i := 0; i < len(old) && i < len(next); i++ {
		if want[old[i]] > 0 {
			want[old[i]]--
			out[i] = old[i]
		}
	}
	j := 0
	for _, v := range next {
		if want[v] == 0 {
			continue
		}
		want[v]--
		for out[j].IsValid() {
			j++
		}
		out[j] = v
	}
	return out
}

// groupDiff writes the changes between two versions of a group in the same block.
func (fs *familyState) groupDiff(w *txWriter, og, ng groupPlan) {
	for i := range max(len(og.eps), len(ng.eps)) {
		switch {
		case i >= len(ng.eps):
			fs.groupElements(&w.epDel, og, i, i+1)
		case i >= len(og.eps):
			fs.groupElements(&w.epAdd, ng, i, i+1)
		case og.eps[i] != ng.eps[i]:
			fs.groupElements(&w.epDel, og, i, i+1)
			fs.groupElements(&w.epAdd, ng, i, i+1)
		}
	}
}

// groupElements appends the map elements of slots from..to-1 of g to out.
func (fs *familyState) groupElements(out *[]epOp, g groupPlan, from, to int) {
	m := endpointMapName(g.block.proto, g.block.bucket)
	for i := from; i < to; i++ {
		*out = append(*out, epOp{m: m, slot: g.block.start + uint32(i), ep: g.eps[i]})
	}
}

// slotFunc returns the block allocator for re-rendering a port that had old.
func (fs *familyState) slotFunc(old *portState) slotFunc {
	return func(chain string, p model.Protocol, n int) block {
		if old != nil {
			if b, ok := old.groupBlock(chain); ok && b.proto == p && b.fits(n) {
				return b
			}
		}
		return fs.slots.alloc(chain, p, n)
	}
}

// deleteStale writes the deletions of objects the previous transaction emptied and that
// are still stale: writing the Service ports first takes out of fs.staleChains and
// fs.staleSets every object a port uses again (a chain or affinity set in writeChains or
// writeAffinitySets, an endpoint map in countMapUsers), so call it after them.
func (fs *familyState) deleteStale(w *txWriter) {
	for _, n := range sortedKeys(fs.staleChains) {
		w.deletes = append(w.deletes, &knftables.Chain{Name: n})
		fs.pending.deleted = append(fs.pending.deleted, n)
	}
	for _, n := range sortedKeys(fs.staleSets) {
		if strings.HasPrefix(n, endpointMapPrefix) {
			w.deletes = append(w.deletes, &knftables.Map{Name: n})
			fs.pending.deleted = append(fs.pending.deleted, n)
			continue
		}
		w.deletes = append(w.deletes, &knftables.Set{Name: n})
		fs.pending.deleted = append(fs.pending.deleted, n)
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// skeletonNames are the fixed chains, sets and maps. Some share a prefix with per-port
// objects ("cluster-ips-check" and "cluster-ips" start like a cluster- chain).
var skeletonNames = func() map[string]bool {
	out := sharedSetNames(newFam(model.IPv4))
	for _, n := range helperChainOrder {
		out[n] = true
	}
	for _, bc := range baseChains() {
		out[bc.name] = true
	}
	return out
}()

// isPortObject reports whether a chain or set name belongs to a Service port.
func isPortObject(name string) bool {
	if skeletonNames[name] {
		return false
	}
	for _, p := range []string{prefixCluster, prefixLocal, prefixService, prefixExternal, prefixAffinity} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// size returns the number of operations in the transaction.
func (w *txWriter) size() int {
	return len(w.setup) + len(w.objects) + len(w.epDel) + len(w.epAdd) + len(w.elDel) + len(w.elAdd) +
		len(w.flushes) + len(w.deletes)
}
