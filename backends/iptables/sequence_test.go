package iptables

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/model"
)

// syncOne syncs one table and returns the iptables-restore inputs it ran.
func syncOne(t *testing.T, b *Backend, k *fakeKernel, tbl *model.Table, d model.Diff) []string {
	t.Helper()
	before := len(k.restores[tbl.Family()])
	if err := b.Sync(context.Background(), tbl, d); err != nil {
		t.Fatalf("sync: %v", err)
	}
	return k.restores[tbl.Family()][before:]
}

// TestPartialTouchesOnlyTheChangedPort checks what a partial restore touches: an endpoint
// change rewrites the port's DNAT chain only; a new Service adds its chain, its leaf and
// its set entries; a removed one deletes its chain and entries and rewrites its leaf.
func TestPartialTouchesOnlyTheChangedPort(t *testing.T) {
	b, k := fakeBackend(t)
	tbl := backendtest.ScaleTable(300, 3)
	syncOne(t, b, k, tbl, model.Diff{Full: true})

	changed := backendtest.ScalePort(7, 3, 1)
	tbl = tbl.Update(tbl.Node(), []*model.ServicePort{changed}, nil)
	syncOne(t, b, k, tbl, model.Diff{Changed: []model.ServicePortName{changed.Name}})
	st := k.rs[model.IPv4].LastStats()
	want := []string{"nat/" + prefixCluster + portID(changed.Name)}
	if !slices.Equal(st.Touched, want) {
		t.Errorf("an endpoint change touched %v, want %v", st.Touched, want)
	}

	added := backendtest.ScalePort(300, 3, 0)
	sets := k.sets.Save()
	tbl = tbl.Update(tbl.Node(), []*model.ServicePort{added}, nil)
	syncOne(t, b, k, tbl, model.Diff{Changed: []model.ServicePortName{added.Name}})
	st = k.rs[model.IPv4].LastStats()
	leaf := addrLeaf(added.Frontends[0].Addr)
	want = []string{"nat/" + leaf, "nat/" + prefixCluster + portID(added.Name)}
	if !slices.Equal(st.Touched, want) {
		t.Errorf("a new Service touched %v, want %v", st.Touched, want)
	}
	if got := setDiff(sets, k.sets.Save()); !slices.Equal(got, []string{"+add PORTICO-4-CLUSTER-IPS 10.96.1.44"}) {
		t.Errorf("a new Service changed the sets by %v, want its cluster IP added", got)
	}

	sets = k.sets.Save()
	tbl = tbl.Update(tbl.Node(), nil, []model.ServicePortName{added.Name})
	syncOne(t, b, k, tbl, model.Diff{Removed: []model.ServicePortName{added.Name}})
	st = k.rs[model.IPv4].LastStats()
	if !slices.Equal(st.Touched, want) || st.ChainsDeleted != 1 {
		t.Errorf("a removed Service touched %v and deleted %d chains, want %v and 1", st.Touched, st.ChainsDeleted, want)
	}
	if got := setDiff(sets, k.sets.Save()); !slices.Equal(got, []string{"-add PORTICO-4-CLUSTER-IPS 10.96.1.44"}) {
		t.Errorf("a removed Service changed the sets by %v, want its cluster IP deleted", got)
	}
}

// setDiff lists the lines of ipset save output that were added (+) or removed (-).
func setDiff(before, after string) []string {
	b, a := strings.Split(before, "\n"), strings.Split(after, "\n")
	var out []string
	for _, l := range a {
		if !slices.Contains(b, l) {
			out = append(out, "+"+l)
		}
	}
	for _, l := range b {
		if !slices.Contains(a, l) {
			out = append(out, "-"+l)
		}
	}
	return out
}

// TestFailedRestoreMakesTheNextSyncFull checks that after a failed restore the backend
// forgets its mirror: the next sync, even when asked for a partial one, lists the kernel
// and rewrites every chain, and the result equals a fresh full sync.
func TestFailedRestoreMakesTheNextSyncFull(t *testing.T) {
	b, k := fakeBackend(t)
	tbl := backendtest.ScaleTable(50, 2)
	syncOne(t, b, k, tbl, model.Diff{Full: true})
	changed := backendtest.ScalePort(3, 2, 1)
	next := tbl.Update(tbl.Node(), []*model.ServicePort{changed}, nil)
	k.failRestore = errInjected
	if err := b.Sync(context.Background(), next, model.Diff{Changed: []model.ServicePortName{changed.Name}}); !errors.Is(err, errInjected) {
		t.Fatalf("sync with a failing restore = %v, want the injected error", err)
	}
	inputs := syncOne(t, b, k, next, model.Diff{Changed: []model.ServicePortName{changed.Name}})
	if len(inputs) == 0 || strings.Count(strings.Join(inputs, ""), "\n:"+prefixCluster) != 50 {
		t.Fatalf("the sync after a failure did not rewrite every per-port chain:\n%s", strings.Join(inputs, ""))
	}
	fresh, fk := fakeBackend(t)
	syncOne(t, fresh, fk, next, model.Diff{Full: true})
	if got, want := k.dump(), fk.dump(); got != want {
		t.Errorf("after the retry the kernel differs from a fresh sync:\n%s", backendtest.FirstDiff(want, got))
	}
}

// TestIncrementalEqualsFresh syncs every scenario of the packet-flow table one after the
// other as partial syncs; after each, the kernel must hold what a fresh full sync of that
// state writes. A restart (a new backend over the same kernel) then deletes the chains
// the earlier run no longer needs.
func TestIncrementalEqualsFresh(t *testing.T) {
	b, k := fakeBackend(t)
	prev := map[model.Family]*model.Table{}
	for i, st := range backendtest.FlowStates(t) {
		fresh, fk := fakeBackend(t)
		for _, tbl := range st.Tables {
			syncOne(t, b, k, tbl, model.Compare(prev[tbl.Family()], tbl))
			syncOne(t, fresh, fk, tbl, model.Diff{Full: true})
			prev[tbl.Family()] = tbl
		}
		if got, want := k.dump(), fk.dump(); got != want {
			t.Fatalf("after scenario %d the kernel differs from a fresh sync:\n%s", i, backendtest.FirstDiff(want, got))
		}
	}
	restarted := restartOver(b)
	first := backendtest.FlowStates(t)[0]
	fresh, fk := fakeBackend(t)
	for _, tbl := range first.Tables {
		syncOne(t, restarted, k, tbl, model.Diff{Full: true})
		syncOne(t, fresh, fk, tbl, model.Diff{Full: true})
	}
	if got, want := k.dump(), fk.dump(); got != want {
		t.Errorf("after a restart the kernel differs from a fresh sync:\n%s", backendtest.FirstDiff(want, got))
	}
}

// TestBadPortIsSkipped checks that a port with a value no rule can hold (an endpoint of
// the other family) costs only that port: the sync reports it in a backends.SkippedError
// naming the field and value, every other port is programmed, the bad port's earlier
// rules go, and a fixed port is programmed again.
func TestBadPortIsSkipped(t *testing.T) {
	b, k := fakeBackend(t)
	tbl := backendtest.ScaleTable(20, 2)
	syncOne(t, b, k, tbl, model.Diff{Full: true})
	bad := *backendtest.ScalePort(5, 2, 1)
	bad.Cluster = append([]model.Endpoint{}, bad.Cluster...)
	bad.Cluster[0].Addr = netip.MustParseAddr("fd00::1")
	badSP := bad.Seal()
	next := tbl.Update(tbl.Node(), []*model.ServicePort{badSP}, nil)
	err := b.Sync(context.Background(), next, model.Diff{Changed: []model.ServicePortName{badSP.Name}})
	skipped, ok := backends.AsSkipped(err)
	if !ok || len(skipped.Ports) != 1 || skipped.Ports[0].Name != badSP.Name ||
		!strings.Contains(err.Error(), `cluster[1].addr: "fd00::1" is not an IPv4 address`) {
		t.Fatalf("sync of a bad port = %v, want a SkippedError naming it and the field", err)
	}
	chain := prefixCluster + portID(badSP.Name)
	if _, ok := k.rs[model.IPv4].Chain("nat", chain); ok {
		t.Errorf("the skipped port's chain %s is still in the kernel", chain)
	}
	if err := b.Sync(context.Background(), next, model.Diff{Full: true}); !errors.As(err, new(*backends.SkippedError)) {
		t.Errorf("a full sync with the bad port = %v, want it skipped again", err)
	}
	if _, ok := k.rs[model.IPv4].Chain("nat", prefixCluster+portID(backendtest.ScalePort(6, 2, 0).Name)); !ok {
		t.Error("another port's chain is missing after the full sync")
	}
	fixed := backendtest.ScalePort(5, 2, 2)
	syncOne(t, b, k, next.Update(next.Node(), []*model.ServicePort{fixed}, nil), model.Diff{Changed: []model.ServicePortName{fixed.Name}})
	if _, ok := k.rs[model.IPv4].Chain("nat", chain); !ok {
		t.Errorf("the fixed port's chain %s is not in the kernel", chain)
	}
}

// TestRefusedPortIsConfined makes iptables-restore refuse one Service port's rule: the
// sync leaves that port out and reports it, every other port is programmed; once the
// refusal is gone and the port changes, it is programmed again.
func TestRefusedPortIsConfined(t *testing.T) {
	for _, full := range []bool{true, false} {
		b, k := fakeBackend(t)
		tbl := backendtest.ScaleTable(30, 2)
		if !full {
			syncOne(t, b, k, tbl, model.Diff{Full: true})
		}
		bad := backendtest.ScalePort(9, 2, 5)
		tbl = tbl.Update(tbl.Node(), []*model.ServicePort{bad}, nil)
		k.refuse = bad.Cluster[0].AddrPort().String()
		d := model.Diff{Full: full, Changed: []model.ServicePortName{bad.Name}}
		err := b.Sync(context.Background(), tbl, d)
		skipped, ok := backends.AsSkipped(err)
		if !ok || len(skipped.Ports) != 1 || skipped.Ports[0].Name != bad.Name || !strings.Contains(err.Error(), "refused its rule") {
			t.Fatalf("full=%v: sync with a refused rule = %v, want the port skipped", full, err)
		}
		for i := range 30 {
			name := backendtest.ScalePort(i, 2, 0).Name
			_, in := k.rs[model.IPv4].Chain("nat", prefixCluster+portID(name))
			if in != (name != bad.Name) {
				t.Errorf("full=%v: chain of %s in the kernel: %v", full, name, in)
			}
		}
		k.refuse = ""
		fixed := backendtest.ScalePort(9, 2, 6)
		syncOne(t, b, k, tbl.Update(tbl.Node(), []*model.ServicePort{fixed}, nil), model.Diff{Changed: []model.ServicePortName{fixed.Name}})
		if _, in := k.rs[model.IPv4].Chain("nat", prefixCluster+portID(fixed.Name)); !in {
			t.Errorf("full=%v: the port is not programmed once the refusal is gone", full)
		}
	}
}
