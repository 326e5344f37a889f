package nftables

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/model"
)

// Tests of the in-memory mirror (familyState): after every committed transaction it must
// say exactly what the kernel holds — no name of a deleted object left in any of its maps,
// no object in use still marked stale — or a later partial sync writes a transaction the
// kernel rejects, or the backend asks for follow-up syncs for ever.

// ---- helpers ----

// mirrorBackend returns a backend over recorders wrapping two fakes (recordingBackend),
// with its metrics in a registry of its own, and the IPv4 recorder and fake.
func mirrorBackend(t *testing.T) (*Backend, *recordingNFT, *knftables.Fake, *prometheus.Registry) {
	t.Helper()
	b, recs, fakes := recordingBackend(t, nil)
	reg := prometheus.NewRegistry()
	m, err := newBackendMetrics(reg)
	if err != nil {
		t.Fatalf("registering the metrics: %v", err)
	}
	b.metrics = m
	return b, recs[model.IPv4], fakes[model.IPv4], reg
}

// mirrorUsers counts the endpoint groups reading each endpoint map, from the ports of fs.
func mirrorUsers(fs *familyState) map[string]int {
	out := map[string]int{}
	for _, ps := range fs.ports {
		for _, g := range ps.groups {
			out[endpointMapName(g.block.proto, g.block.bucket)]++
		}
	}
	return out
}

// soleUserMaps returns the endpoint maps that only the Service port n reads.
func soleUserMaps(t *testing.T, fs *familyState, n model.ServicePortName) []string {
	t.Helper()
	users := mirrorUsers(fs)
	var out []string
	for _, g := range fs.ports[n].groups {
		if m := endpointMapName(g.block.proto, g.block.bucket); users[m] == 1 {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		t.Fatalf("test bug: %s shares all its endpoint maps", n)
	}
	return out
}

// settle runs the follow-up syncs the backend asks for, failing if it still asks after
// limit of them, and returns their transactions.
func settle(t *testing.T, b *Backend, rec *recordingNFT, tbl *model.Table, limit int, when string) []txRecord {
	t.Helper()
	fs := b.fams[tbl.Family()]
	var txs []txRecord
	for b.PendingWork(tbl.Family()) {
		if len(txs) == limit {
			t.Fatalf("%s: work still pending after %d follow-up syncs (stale chains %v, sets %v)",
				when, limit, sortedKeys(fs.staleChains), sortedKeys(fs.staleSets))
		}
		txs = append(txs, syncStep(t, b, rec, tbl, model.Diff{}, when+", follow-up"))
	}
	return txs
}

// syncStep syncs tbl with diff d, which must succeed as one partial transaction, and
// returns that transaction.
func syncStep(t *testing.T, b *Backend, rec *recordingNFT, tbl *model.Table, d model.Diff, when string) txRecord {
	t.Helper()
	n := len(rec.txs)
	if err := b.Sync(context.Background(), tbl, d); err != nil {
		t.Fatalf("%s: sync of %d changed and %d removed ports failed (the next sync would be a full rewrite): %v",
			when, len(d.Changed), len(d.Removed), err)
	}
	if len(rec.txs) != n+1 {
		t.Fatalf("%s: sync ran %d transactions, want 1", when, len(rec.txs)-n)
	}
	tx := rec.txs[n]
	if fullTx(parseOps(tx.text)) {
		t.Fatalf("%s: partial sync wrote a full rewrite", when)
	}
	return tx
}

// checkMirror checks that the mirror of fs says what the fake holds, after a committed
// transaction: the endpoint maps it records are those the kernel has, each either read by
// a group or stale; every per-port chain and set is owned by a port or stale, never both;
// stale objects exist (stale chains empty); nothing is left pending.
func checkMirror(t *testing.T, fs *familyState, fake *knftables.Fake, when string) {
	t.Helper()
	users := mirrorUsers(fs)
	if !maps.Equal(users, fs.mapUsers) {
		t.Errorf("%s: mapUsers %v, the ports' groups read %v", when, fs.mapUsers, users)
	}
	kernelMaps := map[string]bool{}
	for name := range fake.Table.Maps {
		if strings.HasPrefix(name, endpointMapPrefix) {
			kernelMaps[name] = true
		}
	}
	if !maps.Equal(kernelMaps, fs.epMaps) {
		t.Errorf("%s: the mirror records endpoint maps %v, the kernel holds %v", when, sortedKeys(fs.epMaps), sortedKeys(kernelMaps))
	}
	owned := ownedNames(maps.Values(fs.ports))
	for name := range users {
		owned[name] = true
	}
	for name := range kernelMaps {
		checkOwnedOrStale(t, name, owned[name], fs.staleSets[name], when)
	}
	for name, c := range fake.Table.Chains {
		if isPortObject(name) {
			checkOwnedOrStale(t, name, owned[name], fs.staleChains[name], when)
		}
		if fs.staleChains[name] && len(c.Rules) > 0 {
			t.Errorf("%s: stale chain %s has %d rules", when, name, len(c.Rules))
		}
	}
	for name := range fake.Table.Sets {
		if isPortObject(name) {
			checkOwnedOrStale(t, name, owned[name], fs.staleSets[name], when)
		}
	}
	for name := range fs.staleChains {
		if fake.Table.Chains[name] == nil {
			t.Errorf("%s: stale chain %s is not in the kernel", when, name)
		}
	}
	for name := range fs.staleSets {
		if fake.Table.Sets[name] == nil && fake.Table.Maps[name] == nil {
			t.Errorf("%s: stale set %s is not in the kernel", when, name)
		}
	}
	if p := fs.pending; len(p.staleChains)+len(p.staleSets)+len(p.epMaps)+len(p.deleted)+len(p.release) > 0 {
		t.Errorf("%s: pending effects left after a commit: %+v", when, p)
	}
}

func checkOwnedOrStale(t *testing.T, name string, owned, stale bool, when string) {
	t.Helper()
	switch {
	case owned && stale:
		t.Errorf("%s: %s is in use and marked stale (it would never be deleted, and the backend would ask for follow-up syncs for ever)", when, name)
	case !owned && !stale:
		t.Errorf("%s: %s is in the kernel, used by no port and not marked stale (it would never be deleted)", when, name)
	}
}

// cloneInMap returns a ClusterIP-only copy of the Service port like, named ns/clone-<i>
// with the first i whose DNAT chain reads the same endpoint map as like's internal one
// (their buckets collide), answering on addr.
func cloneInMap(t *testing.T, like *model.ServicePort, ns, addr string) *model.ServicePort {
	t.Helper()
	set := like.Internal.Endpoints
	want := bucketFor(setChain(set, portSuffix(like.Name)), like.Name.Protocol)
	for i := range 100000 {
		n := model.ServicePortName{Namespace: ns, Name: fmt.Sprintf("clone-%d", i), Port: like.Name.Port, Protocol: like.Name.Protocol}
		if bucketFor(setChain(set, portSuffix(n)), n.Protocol) != want {
			continue
		}
		cp := *like
		cp.Name = n
		cp.Frontends = []model.Frontend{{Kind: model.ClusterIP, Addr: netip.MustParseAddr(addr), Port: like.Frontends[0].Port}}
		cp.Cluster, cp.Local = slices.Clone(like.Cluster), slices.Clone(like.Local)
		cp.External, cp.ExternalFromPods, cp.ExternalFromNode = model.Traffic{}, model.Traffic{}, model.Traffic{}
		cp.Hairpin, cp.SourceRanges, cp.HealthCheckNodePort = slices.Clone(like.Hairpin), nil, 0
		return cp.Seal()
	}
	t.Fatalf("test bug: no clone of %s lands in its bucket", like.Name)
	return nil
}

// ---- endpoint maps ----

// TestMirrorDeletedEndpointMapIsRecreated: once an endpoint map has lost its last user
// and the next transaction deleted it, a partial sync that needs it again creates it
// again. (The mirror used to keep the name of the deleted map, so that transaction failed
// with `no such map` and the backend fell back to a full rewrite.)
func TestMirrorDeletedEndpointMapIsRecreated(t *testing.T) {
	t1 := everyKind(t)
	b, rec, fake, _ := mirrorBackend(t)
	step(t, b, rec, nil, t1)
	fs := b.fams[model.IPv4]
	gone := soleUserMaps(t, fs, lbHTTPS)
	t2 := removePorts(t, t1, lbHTTPS)
	syncStep(t, b, rec, t2, model.Compare(t1, t2), "removal")
	if !b.PendingWork(model.IPv4) {
		t.Fatal("test bug: the removal left nothing to delete")
	}
	tx := syncStep(t, b, rec, t2, model.Diff{}, "deletion")
	for _, m := range gone {
		if !strings.Contains(tx.text, "delete map ip portico "+m+"\n") || fake.Table.Maps[m] != nil {
			t.Fatalf("test bug: the follow-up sync did not delete %s:\n%s", m, tx.text)
		}
	}
	checkMirror(t, fs, fake, "after the deletion")

	tx = syncStep(t, b, rec, t1, model.Compare(t2, t1), "re-addition")
	for _, m := range gone {
		if !strings.Contains(tx.text, "add map ip portico "+m+" ") {
			t.Errorf("re-addition does not create %s again:\n%s", m, tx.text)
		}
	}
	checkMirror(t, fs, fake, "after the re-addition")
	assertSameBehaviour(t, fake, t1)
	if b.PendingWork(model.IPv4) {
		t.Error("work pending after a re-addition that retired nothing")
	}
}

// TestMirrorEndpointMapBackBeforeDeletion: an endpoint map that gets a user again before
// the transaction that would delete it stays, and is no longer stale: the backend stops
// asking for follow-up syncs after at most one. (It used to stay stale for ever: each
// follow-up dropped its deletion because the map was in use, and asked for another.)
func TestMirrorEndpointMapBackBeforeDeletion(t *testing.T) {
	for _, tc := range []struct {
		name string
		// change returns the port whose endpoint maps must stay, then the tables of the
		// syncs after the first one.
		change func(t *testing.T, t1 *model.Table) (model.ServicePortName, []*model.Table)
		// followUps is the number of follow-up syncs the backend may ask for afterwards.
		followUps int
	}{
		{"port back before deletion", func(t *testing.T, t1 *model.Table) (model.ServicePortName, []*model.Table) {
			return lbHTTPS, []*model.Table{removePorts(t, t1, lbHTTPS), t1}
		}, 0},
		{"sole user changes", func(t *testing.T, t1 *model.Table) (model.ServicePortName, []*model.Table) {
			more := editPort(t, t1, npHTTP, func(sp *model.ServicePort) {
				sp.Cluster = append(sp.Cluster, remoteEP(sp.Cluster[0], "10.244.3.1"))
			})
			return npHTTP, []*model.Table{more}
		}, 0},
		{"handed over in one transaction", func(t *testing.T, t1 *model.Table) (model.ServicePortName, []*model.Table) {
			// The removed port's chains are deleted by a follow-up sync, not its map.
			sp, _ := t1.Get(npHTTP)
			clone := cloneInMap(t, sp, "mirror", "10.96.7.1")
			return npHTTP, []*model.Table{t1.Update(t1.Node(), []*model.ServicePort{clone}, []model.ServicePortName{npHTTP})}
		}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t1 := everyKind(t)
			b, rec, fake, _ := mirrorBackend(t)
			step(t, b, rec, nil, t1)
			fs := b.fams[model.IPv4]
			port, tables := tc.change(t, t1)
			kept := soleUserMaps(t, fs, port)
			prev := t1
			var txs []txRecord
			for i, next := range tables {
				txs = append(txs, syncStep(t, b, rec, next, model.Compare(prev, next), fmt.Sprintf("sync %d", i+2)))
				prev = next
			}
			txs = append(txs, settle(t, b, rec, prev, tc.followUps, "after the change")...)
			checkMapsKept(t, fs, fake, kept, txs)
			checkMirror(t, fs, fake, "at the end")
			assertSameBehaviour(t, fake, prev)
		})
	}
}

// checkMapsKept checks that the endpoint maps kept are in the kernel, not stale, and that
// none of the transactions txs deleted them.
func checkMapsKept(t *testing.T, fs *familyState, fake *knftables.Fake, kept []string, txs []txRecord) {
	t.Helper()
	for _, m := range kept {
		if fake.Table.Maps[m] == nil {
			t.Errorf("endpoint map %s in use is not in the kernel", m)
		}
		if fs.staleSets[m] || fs.pending.staleSets[m] {
			t.Errorf("endpoint map %s in use is still marked stale", m)
		}
		for _, tx := range txs {
			if strings.Contains(tx.text, "delete map ip portico "+m+"\n") {
				t.Errorf("endpoint map %s in use deleted by:\n%s", m, tx.text)
			}
		}
	}
}

// ---- random sequences ----

// universe is every Service port a random sequence may hold: the every-kind scenario's
// and clones that share an endpoint map with one of them, in their original version.
type universe struct {
	names []model.ServicePortName
	orig  map[model.ServicePortName]*model.ServicePort
}

func newUniverse(t *testing.T, base *model.Table) universe {
	t.Helper()
	u := universe{orig: map[model.ServicePortName]*model.ServicePort{}}
	for sp := range base.All() {
		u.orig[sp.Name] = sp
	}
	for i, like := range []model.ServicePortName{npHTTP, lbHTTPS, webHTTP, webDNS} {
		sp, ok := base.Get(like)
		if !ok {
			t.Fatalf("fixture changed: no port %s", like)
		}
		c := cloneInMap(t, sp, "mirror", fmt.Sprintf("10.96.7.%d", i+1))
		u.orig[c.Name] = c
	}
	u.names = slices.SortedFunc(maps.Keys(u.orig), model.ServicePortName.Compare)
	return u
}

// change returns cur with one to three ports of u removed, re-added or edited.
func (u universe) change(rng *rand.Rand, cur *model.Table) *model.Table {
	var set []*model.ServicePort
	var remove []model.ServicePortName
	for _, i := range rng.Perm(len(u.names))[:1+rng.IntN(3)] {
		n := u.names[i]
		sp, present := cur.Get(n)
		switch {
		case !present && rng.IntN(2) == 0:
			set = append(set, u.orig[n])
		case !present:
			set = append(set, u.edit(rng, u.orig[n]))
		case rng.IntN(4) == 0:
			remove = append(remove, n)
		default:
			set = append(set, u.edit(rng, sp))
		}
	}
	return cur.Update(cur.Node(), set, remove)
}

// edit returns a sealed copy of sp with new cluster endpoints, local endpoints or session
// affinity (one or more of them), drawn from pools built on the port's original version.
func (u universe) edit(rng *rand.Rand, sp *model.ServicePort) *model.ServicePort {
	orig := u.orig[sp.Name]
	cp := *sp
	tmpl := model.Endpoint{Port: 8080, Ready: true, Serving: true}
	if eps := slices.Concat(orig.Cluster, orig.Local); len(eps) > 0 {
		tmpl = eps[0]
	}
	what := 1 + rng.IntN(7) // a bit mask: cluster, local, affinity
	if what&1 != 0 {
		pool := slices.Clone(orig.Cluster)
		for _, a := range []string{"10.244.3.1", "10.244.3.2", "10.244.3.3"} {
			pool = append(pool, remoteEP(tmpl, a))
		}
		cp.Cluster = pick(rng, pool)
	}
	if what&2 != 0 {
		local := tmpl
		local.Addr, local.Local = netip.MustParseAddr("10.244.1.77"), true
		cp.Local = pick(rng, append(slices.Clone(orig.Local), local))
	}
	if what&4 != 0 {
		cp.Affinity.Timeout = []time.Duration{0, time.Minute, 3 * time.Hour}[rng.IntN(3)]
	}
	cp.Frontends, cp.Hairpin, cp.SourceRanges = slices.Clone(sp.Frontends), slices.Clone(sp.Hairpin), slices.Clone(sp.SourceRanges)
	return cp.Seal()
}

// pick returns a random subset of pool (possibly empty).
func pick(rng *rand.Rand, pool []model.Endpoint) []model.Endpoint {
	var out []model.Endpoint
	for _, i := range rng.Perm(len(pool))[:rng.IntN(len(pool)+1)] {
		out = append(out, pool[i])
	}
	return out
}

// TestMirrorRandomSequence drives a backend through a seeded random sequence of partial
// syncs over the every-kind scenario and clones sharing its endpoint maps: ports removed,
// re-added and edited (endpoints, which make chains and endpoint maps vanish and come
// back, and session affinity, which does the same to affinity sets). A step is one to
// three syncs, each arriving before the follow-up sync of the one before (so that
// objects come back while stale; now and then one undoes the change before it), then the follow-up syncs while the backend asks for
// them (at most one). No transaction may fail or be a full rewrite; after each the table
// must be consistent and the gauges must count what the fake holds; after each step,
// nothing pending, the mirror must say what the fake holds and the fake must behave like
// a fresh backend's full sync of the same table. It ends with a full sync, which must
// write what a fresh backend writes.
func TestMirrorRandomSequence(t *testing.T) {
	const steps = 200
	rng := rand.New(rand.NewPCG(20240611, 7))
	base := everyKind(t)
	u := newUniverse(t, base)
	r := newSequenceRun(t, base)
	for i := range steps {
		var undo *model.Table
		for j := range 1 + rng.IntN(3) {
			next := u.change(rng, r.cur)
			if undo != nil && rng.IntN(3) == 0 {
				next = undo // a flap: the last change undone before the follow-up sync
			}
			undo = r.cur
			r.sync(next, fmt.Sprintf("step %d, sync %d", i, j))
		}
		when := fmt.Sprintf("step %d", i)
		if len(settle(t, r.b, r.rec, r.cur, 1, when)) > 0 {
			r.checkAfterTx(when + ", follow-up")
		}
		checkMirror(t, r.fs, r.fake, when)
		if got, want := semantic(r.fake), semantic(freshFake(t, r.cur)); got != want {
			t.Fatalf("%s: state differs from a fresh sync of the same table:\n%s", when, backendtest.FirstDiff(want, got))
		}
	}
	r.cov.check(t)
	stepDiff(t, r.b, r.rec, r.cur, model.Diff{Full: true})
	settle(t, r.b, r.rec, r.cur, 1, "full sync")
	if got, want := r.fake.Dump(), freshFake(t, r.cur).Dump(); got != want {
		t.Errorf("full sync after the sequence differs from a fresh backend's:\n%s", backendtest.FirstDiff(want, got))
	}
}

// sequenceRun is a backend going through a sequence of syncs of IPv4 tables.
type sequenceRun struct {
	t    *testing.T
	b    *Backend
	rec  *recordingNFT
	fake *knftables.Fake
	reg  *prometheus.Registry
	fs   *familyState
	cur  *model.Table // the table of the last sync
	cov  sequenceCoverage
}

// newSequenceRun returns a run whose backend has fully synced base.
func newSequenceRun(t *testing.T, base *model.Table) *sequenceRun {
	t.Helper()
	r := &sequenceRun{t: t, cur: base, cov: sequenceCoverage{reclaimed: map[string]int{}, deletedMaps: map[string]bool{}}}
	r.b, r.rec, r.fake, r.reg = mirrorBackend(t)
	step(t, r.b, r.rec, nil, base)
	r.fs = r.b.fams[model.IPv4]
	return r
}

// sync syncs next as a partial sync, checks the result and records what it exercised.
func (r *sequenceRun) sync(next *model.Table, when string) {
	r.t.Helper()
	stale := slices.Concat(sortedKeys(r.fs.staleChains), sortedKeys(r.fs.staleSets))
	tx := syncStep(r.t, r.b, r.rec, next, model.Compare(r.cur, next), when)
	r.cur = next
	r.cov.observe(r.fs, stale, tx)
	r.checkAfterTx(when)
}

// checkAfterTx checks what must hold after every transaction: a consistent table, and
// gauges that count what the fake holds.
func (r *sequenceRun) checkAfterTx(when string) {
	r.t.Helper()
	checkConsistent(r.t, r.fake)
	checkGauges(r.t, r.reg, model.IPv4, r.fake, when)
	checkRuleGauge(r.t, r.reg, model.IPv4, r.fake, when)
	if r.t.Failed() {
		r.t.FailNow()
	}
}

// sequenceCoverage counts the cases a random sequence exercised, so that the test knows
// when it no longer reaches the ones it is about.
type sequenceCoverage struct {
	reclaimed   map[string]int  // stale objects claimed again before their deletion, by kind
	deletedMaps map[string]bool // endpoint maps deleted and not created again yet
	recreated   int             // endpoint maps created again after their deletion
}

// observe records what transaction tx did to the objects stale before it.
func (c *sequenceCoverage) observe(fs *familyState, stale []string, tx txRecord) {
	owned := ownedNames(maps.Values(fs.ports))
	for _, n := range stale {
		switch {
		case fs.mapUsers[n] > 0:
			c.reclaimed["endpoint map"]++
		case owned[n] && strings.HasPrefix(n, prefixAffinity):
			c.reclaimed["affinity set"]++
		case owned[n]:
			c.reclaimed["chain"]++
		}
	}
	for _, o := range parseOps(tx.text) {
		switch {
		case o.kind != "map" || !strings.HasPrefix(o.obj, endpointMapPrefix):
		case o.verb == "delete":
			c.deletedMaps[o.obj] = true
		case o.verb == "add" && c.deletedMaps[o.obj]:
			c.recreated++
			delete(c.deletedMaps, o.obj)
		}
	}
}

// check fails the test when the sequence missed one of the cases.
func (c *sequenceCoverage) check(t *testing.T) {
	t.Helper()
	t.Logf("stale objects claimed again: %v; endpoint maps created again after their deletion: %d", c.reclaimed, c.recreated)
	for _, kind := range []string{"chain", "affinity set", "endpoint map"} {
		if c.reclaimed[kind] == 0 {
			t.Errorf("test bug: the sequence never claimed a stale %s again", kind)
		}
	}
	if c.recreated == 0 {
		t.Error("test bug: the sequence never needed a deleted endpoint map again")
	}
}

// ---- rule gauge ----

// fakeRules counts the rules of the fake's table.
func fakeRules(fake *knftables.Fake) int {
	n := 0
	if fake.Table == nil {
		return n
	}
	for _, c := range fake.Table.Chains {
		n += len(c.Rules)
	}
	return n
}

// checkRuleGauge checks that the rule gauge of family f counts the rules the fake holds.
func checkRuleGauge(t *testing.T, g prometheus.Gatherer, f model.Family, fake *knftables.Fake, when string) {
	t.Helper()
	want := fakeRules(fake)
	if want == 0 {
		t.Fatalf("%s: test bug: the %s fake holds no rules", when, f)
	}
	if got, ok := metricValue(t, g, MetricRules, f); !ok || got != float64(want) {
		t.Errorf("%s: %s{ip_family=%q} = %v (present %v), want %d as in the fake", when, MetricRules, f, got, ok, want)
	}
}

// TestMetricsRules checks that the rule gauge counts the rules the kernel (here the fake)
// holds, under every node variant (the fixed chains depend on the node settings): after
// full syncs, partial syncs that retire, delete, re-create and rewrite chains, and
// failures (which keep the last successful sync's value); and that Cleanup zeroes it.
func TestMetricsRules(t *testing.T) {
	for _, tc := range backendtest.NodeVariants {
		t.Run(tc.Name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			b, nfts, fakes := metricsBackend(t, reg)
			state := scenario(t, tc.Tweak, fixtures...)
			syncAll(t, b, nil, state)
			for _, f := range []model.Family{model.IPv4, model.IPv6} {
				checkRuleGauge(t, reg, f, fakes[f], "first sync")
			}
			v4, fake := state.Table(model.IPv4), fakes[model.IPv4]
			sync := func(when string, tbl *model.Table, d model.Diff, fail bool) {
				t.Helper()
				if fail {
					nfts[model.IPv4].fail = errors.New("injected failure")
				}
				if err := b.Sync(context.Background(), tbl, d); (err != nil) != fail {
					t.Fatalf("%s: sync = %v, want failure %v", when, err, fail)
				}
				checkRuleGauge(t, reg, model.IPv4, fake, when)
			}
			half := without(v4, 0)
			sync("partial removal", half, model.Compare(v4, half), false)
			sync("deletion of the emptied chains", half, model.Diff{}, false)
			sync("partial re-addition", v4, model.Compare(half, v4), false)
			more := editPort(t, v4, sticky, func(sp *model.ServicePort) {
				sp.Cluster = append(sp.Cluster, remoteEP(sp.Cluster[0], "10.244.3.1"))
			})
			sync("a chain rewritten with more rules, failing", more, model.Compare(v4, more), true)
			sync("full rewrite after the failure", more, model.Diff{Full: true}, false)
			sync("a chain rewritten with fewer rules", v4, model.Compare(more, v4), false)
			checkRuleGauge(t, reg, model.IPv6, fakes[model.IPv6], "the end")
			if err := b.Cleanup(context.Background()); err != nil {
				t.Fatalf("cleanup: %v", err)
			}
			for _, f := range []model.Family{model.IPv4, model.IPv6} {
				if got, ok := metricValue(t, reg, MetricRules, f); !ok || got != 0 {
					t.Errorf("after Cleanup %s{ip_family=%q} = %v (present %v), want 0", MetricRules, f, got, ok)
				}
			}
		})
	}
}
