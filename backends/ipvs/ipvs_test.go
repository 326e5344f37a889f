package ipvs

import (
	"context"
	"errors"
	"flag"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/ipvs"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/backends/ipvs/ipvstest"
	"github.com/portico-dev/portico/model"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// TestGoldenEveryKindOfService renders the test kit's every-kind scenario under each node
// variant and compares the virtual servers, real servers and bound addresses with the
// golden files.
func TestGoldenEveryKindOfService(t *testing.T) {
	for _, tc := range backendtest.NodeVariants {
		t.Run(tc.Name, func(t *testing.T) {
			e := newEnv(t, backends.Options{})
			backendtest.SyncAll(t, e.b, nil, backendtest.Compile(t, tc.Tweak, backendtest.ObjectFiles...))
			backendtest.CheckGolden(t, filepath.Join("testdata", tc.Name+".golden"), e.dump(), *update)
		})
	}
}

// TestIncrementalEqualsFresh syncs every state of the packet-flow table one after the
// other as partial syncs; after each, the kernel must hold what a fresh full sync writes
// (real servers that left are drained: once their connections are gone, the next sync
// deletes them). A restart over the result (a new backend, a full sync) changes nothing.
func TestIncrementalEqualsFresh(t *testing.T) {
	e := newEnv(t, backends.Options{})
	prev := map[model.Family]*model.Table{}
	for i, st := range backendtest.FlowStates(t) {
		fresh := newEnv(t, backends.Options{})
		for _, tbl := range st.Tables {
			e.sync(t, tbl, model.Compare(prev[tbl.Family()], tbl))
			e.sync(t, tbl, model.Diff{}) // drain: no connections in the fake
			fresh.sync(t, tbl, model.Diff{Full: true})
			prev[tbl.Family()] = tbl
		}
		if got, want := e.dump(), fresh.dump(); got != want {
			t.Fatalf("after state %d the kernel differs from a fresh sync:\n%s", i, backendtest.FirstDiff(want, got))
		}
	}
	restarted := e.restart(t, backends.Options{})
	before, ops := e.dump(), e.h.Ops
	for _, tbl := range prev {
		restarted.sync(t, tbl, model.Diff{Full: true})
	}
	if got := e.dump(); got != before || e.h.Ops != ops {
		t.Errorf("a restart changed the kernel (%d operations):\n%s", e.h.Ops-ops, backendtest.FirstDiff(before, got))
	}
}

// scaleEnv syncs n Services × m endpoints fully and returns the env and the table.
func scaleEnv(t *testing.T, n, m int) (*testEnv, *model.Table) {
	t.Helper()
	e := newEnv(t, backends.Options{})
	tbl := backendtest.ScaleTable(n, m)
	e.sync(t, tbl, model.Diff{Full: true})
	return e, tbl
}

// TestPartialTouchesOnlyTheChangedPort checks that an endpoint change writes only the
// changed real servers of that port's virtual server.
func TestPartialTouchesOnlyTheChangedPort(t *testing.T) {
	e, tbl := scaleEnv(t, 100, 3)
	changed := backendtest.ScalePort(7, 3, 1) // all three endpoints replaced
	ops := e.h.Ops
	e.sync(t, tbl.Update(tbl.Node(), []*model.ServicePort{changed}, nil), model.Diff{Changed: []model.ServicePortName{changed.Name}})
	if n := e.h.Ops - ops; n != 9 {
		t.Errorf("replacing 3 endpoints took %d IPVS operations, want 9 (3 added, 3 set to weight 0 and, without connections, deleted)", n)
	}
}

// TestGracefulTermination removes an endpoint that has connections: it keeps weight 0
// (new connections go to the others) and stays while connections remain, the backend
// reporting pending work; it goes once they end, or after drainBound. An endpoint that
// comes back while draining gets its weight again.
func TestGracefulTermination(t *testing.T) {
	e, tbl := scaleEnv(t, 3, 3)
	sp, _ := tbl.Get(backendtest.ScalePort(1, 3, 0).Name)
	vs := sp.Frontends[0]
	gone := sp.Cluster[0]
	svcKey, destKey := "6/"+vs.Addr.String()+"/80", gone.AddrPort().String()
	if !e.h.SetConnections(svcKey, destKey, 1, 0) {
		t.Fatalf("no real server %s in %s:\n%s", destKey, svcKey, e.dump())
	}
	less := *sp
	less.Cluster = sp.Cluster[1:]
	next := tbl.Update(tbl.Node(), []*model.ServicePort{less.Seal()}, nil)
	e.sync(t, next, model.Diff{Changed: []model.ServicePortName{sp.Name}})
	if !strings.Contains(e.dump(), destKey+" w0 conns 1/0") || !e.b.PendingWork(model.IPv4) {
		t.Fatalf("a removed endpoint with a connection is not drained at weight 0:\n%s", e.dump())
	}
	e.clock.t = e.clock.t.Add(time.Minute)
	e.sync(t, next, model.Diff{})
	if !strings.Contains(e.dump(), destKey) {
		t.Fatalf("a draining endpoint with a connection was deleted:\n%s", e.dump())
	}
	e.h.SetConnections(svcKey, destKey, 0, 0)
	e.sync(t, next, model.Diff{})
	if strings.Contains(e.dump(), destKey) || e.b.PendingWork(model.IPv4) {
		t.Fatalf("a drained endpoint was kept:\n%s", e.dump())
	}

	// Back while draining: weight 1 again; and the bound.
	e.sync(t, tbl, model.Diff{Changed: []model.ServicePortName{sp.Name}})
	e.h.SetConnections(svcKey, destKey, 0, 5)
	e.sync(t, next, model.Diff{Changed: []model.ServicePortName{sp.Name}})
	e.sync(t, tbl, model.Diff{Changed: []model.ServicePortName{sp.Name}})
	if !strings.Contains(e.dump(), destKey+" w1") || e.b.PendingWork(model.IPv4) {
		t.Fatalf("an endpoint back while draining did not get its weight again:\n%s", e.dump())
	}
	e.sync(t, next, model.Diff{Changed: []model.ServicePortName{sp.Name}})
	e.clock.t = e.clock.t.Add(drainBound)
	e.sync(t, next, model.Diff{})
	if strings.Contains(e.dump(), destKey) {
		t.Fatalf("a real server still draining after %v was kept:\n%s", drainBound, e.dump())
	}
}

// TestFullSyncRepairs damages the kernel (a virtual server deleted, a real server added,
// a scheduler changed, a stale virtual server on a bound address) and checks that a full
// sync restores it, keeping a virtual server that is not portico's and one in
// ipvs.excludeCIDRs.
func TestFullSyncRepairs(t *testing.T) {
	excluded := netip.MustParsePrefix("10.96.200.0/24")
	e := newEnv(t, backends.Options{IPVS: backends.IPVSOptions{ExcludeCIDRs: []netip.Prefix{excluded}}})
	tbl := backendtest.ScaleTable(20, 2)
	e.sync(t, tbl, model.Diff{Full: true})
	want := e.dump()
	svcs, _ := e.h.GetServices()
	_ = e.h.DelService(svcs[0])
	svcs[1].SchedName = "lc"
	_ = e.h.UpdateService(svcs[1])
	foreign := service(vsKey{netip.MustParseAddr("192.0.2.1"), model.TCP, 80}, &virtualServer{scheduler: "rr"})
	stale := service(vsKey{netip.MustParseAddr("10.96.99.99"), model.TCP, 80}, &virtualServer{scheduler: "rr"})
	kept := service(vsKey{netip.MustParseAddr("10.96.200.1"), model.TCP, 80}, &virtualServer{scheduler: "rr"})
	for _, s := range []*ipvs.Service{foreign, stale, kept} {
		if err := e.h.NewService(s); err != nil {
			t.Fatal(err)
		}
	}
	e.links.addrs[netip.MustParseAddr("10.96.99.99")] = true
	e.links.addrs[netip.MustParseAddr("10.96.200.1")] = true
	e.sync(t, tbl, model.Diff{Full: true})
	got := e.dump()
	for _, s := range []string{"192.0.2.1:80", "10.96.200.1:80"} {
		if !strings.Contains(got, s) {
			t.Errorf("the full sync deleted %s, which is not portico's", s)
		}
	}
	got = strings.NewReplacer("TCP 192.0.2.1:80 rr\n", "", "TCP 10.96.200.1:80 rr\n", "").Replace(got)
	if got != want {
		t.Errorf("the full sync did not repair the kernel:\n%s", backendtest.FirstDiff(want, got))
	}
}

// TestFailureHalfWay fails an IPVS operation in the middle of a change: the sync reports
// it, and the next one (full) leaves the kernel as a fresh sync would.
func TestFailureHalfWay(t *testing.T) {
	e, tbl := scaleEnv(t, 30, 3)
	var changed []*model.ServicePort
	var names []model.ServicePortName
	for i := range 10 {
		sp := backendtest.ScalePort(i, 3, 1)
		changed, names = append(changed, sp), append(names, sp.Name)
	}
	next := tbl.Update(tbl.Node(), changed, nil)
	e.h.FailAfter = 7
	if err := e.b.Sync(context.Background(), next, model.Diff{Changed: names}); !errors.Is(err, ipvstest.ErrInjected) {
		t.Fatalf("sync with a failing operation = %v, want the injected error", err)
	}
	e.sync(t, next, model.Diff{Changed: names})
	e.sync(t, next, model.Diff{}) // drain
	fresh := newEnv(t, backends.Options{})
	fresh.sync(t, next, model.Diff{Full: true})
	if got, want := e.dump(), fresh.dump(); got != want {
		t.Errorf("after the retry the kernel differs from a fresh sync:\n%s", backendtest.FirstDiff(want, got))
	}
}

// TestSchedulers checks the default scheduler (rr), the configured one, and that a port
// asking for its own gets it.
func TestSchedulers(t *testing.T) {
	tbl := backendtest.ScaleTable(2, 1)
	for _, tc := range []struct{ conf, want string }{{"", " rr\n"}, {"lc", " lc\n"}} {
		e := newEnv(t, backends.Options{IPVS: backends.IPVSOptions{Scheduler: tc.conf}})
		e.sync(t, tbl, model.Diff{Full: true})
		if !strings.Contains(e.dump(), tc.want) {
			t.Errorf("scheduler %q: want virtual servers with%q:\n%s", tc.conf, tc.want, e.dump())
		}
	}
	e := newEnv(t, backends.Options{})
	sp := backendtest.ScalePort(0, 1, 0)
	sp.Scheduler = "sh"
	next := tbl.Update(tbl.Node(), []*model.ServicePort{sp.Seal()}, nil)
	e.sync(t, next, model.Diff{Full: true})
	if strings.Count(e.dump(), " sh\n") != 1 || strings.Count(e.dump(), " rr\n") != 1 {
		t.Errorf("one port asks for sh, the other has the default rr:\n%s", e.dump())
	}

	// A scheduler the kernel lacks: that port gets the default, the others sync.
	e = newEnv(t, backends.Options{})
	e.h.Schedulers = []string{"rr"}
	e.sync(t, next, model.Diff{Full: true})
	if strings.Count(e.dump(), " rr\n") != 2 {
		t.Errorf("a scheduler the kernel lacks: want the default rr on both ports:\n%s", e.dump())
	}
	// ... and a warning about that port, for an Event on its Service, taken once.
	w := e.b.TakeWarnings()
	if len(w) != 1 || w[0].Name != sp.Name || !strings.Contains(w[0].Err.Error(), `"sh"`) || !strings.Contains(w[0].Err.Error(), `"rr"`) {
		t.Errorf("warnings = %v, want one about %s naming the scheduler sh and the default rr", w, sp.Name)
	}
	if w := e.b.TakeWarnings(); len(w) != 0 {
		t.Errorf("warnings taken twice: %v", w)
	}
}

// TestNoIPVS checks the error of a kernel without IPVS: it says so, suggests nftables,
// and stops portico at start (backends.IsNotInstalled).
func TestNoIPVS(t *testing.T) {
	b, _ := New(backends.Options{})
	b.open = func() (Handle, error) { return nil, errors.New("genetlink family IPVS not found") }
	err := b.Prepare(context.Background())
	if err == nil || !backends.IsNotInstalled(err) || !strings.Contains(err.Error(), "nftables") || !strings.Contains(err.Error(), "ip_vs") {
		t.Fatalf("Prepare without IPVS = %v; want a not-installed error naming ip_vs and suggesting nftables", err)
	}
	if err := b.Cleanup(context.Background()); err != nil {
		t.Errorf("Cleanup without IPVS = %v, want nothing to do", err)
	}
}

// everyKind syncs the test kit's every-kind scenario into e.
func everyKind(t *testing.T, e *testEnv) *model.State {
	t.Helper()
	st := backendtest.Compile(t, nil, backendtest.ObjectFiles...)
	backendtest.SyncAll(t, e.b, nil, st)
	return st
}

// foreignNodePort adds a virtual server on a node address that portico did not write.
func foreignNodePort(t *testing.T, e *testEnv) string {
	t.Helper()
	a := backendtest.NodeAddrs()[0]
	if err := e.h.NewService(service(vsKey{a, model.TCP, 30999}, &virtualServer{scheduler: "rr"})); err != nil {
		t.Fatal(err)
	}
	return netip.AddrPortFrom(a, 30999).String()
}

// TestRestartRemovesWhatItOwned restarts the backend over the every-kind scenario's
// kernel state with no Service left: a full sync deletes every virtual server portico
// wrote (NodePorts on the node's addresses included, known from its nftables table) and
// keeps one on a node address that it did not write.
func TestRestartRemovesWhatItOwned(t *testing.T) {
	e := newEnv(t, backends.Options{})
	st := everyKind(t, e)
	foreign := foreignNodePort(t, e)
	restarted := e.restart(t, backends.Options{})
	for _, tbl := range st.Tables {
		restarted.sync(t, model.NewTable(tbl.Family(), tbl.Node()), model.Diff{Full: true})
	}
	got := e.h.Dump()
	if !strings.Contains(got, foreign) || strings.Count(got, "\n") != 1 || len(e.links.addrs) != 0 {
		t.Errorf("after a restart with no Service, want only the foreign %s and no address, got:\n%s%v", foreign, got, e.links.addrs)
	}
}

// TestCleanup removes everything portico wrote (virtual servers, addresses, tables, the
// interface) and nothing else.
func TestCleanup(t *testing.T) {
	e := newEnv(t, backends.Options{})
	everyKind(t, e)
	foreign := foreignNodePort(t, e)
	if err := e.b.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := e.h.Dump()
	if !strings.Contains(got, foreign) || strings.Count(got, "\n") != 1 {
		t.Errorf("after Cleanup want only the foreign %s, got:\n%s", foreign, got)
	}
	if e.links.exists || len(e.links.addrs) > 0 {
		t.Errorf("the dummy interface or its addresses are left: %v", e.links.addrs)
	}
	for f, n := range e.nft {
		if n.Table != nil && len(n.Tables[n.Table.Family]) > 0 {
			t.Errorf("the %s table is left:\n%s", f, n.Dump())
		}
	}
}

// TestUDPRealServerGoesAtOnce checks that a UDP endpoint that leaves is deleted at once,
// even with connections counted, and never drains.
func TestUDPRealServerGoesAtOnce(t *testing.T) {
	e := newEnv(t, backends.Options{})
	sp := backendtest.ScalePort(0, 2, 0)
	sp.Name.Protocol = model.UDP
	tbl := model.NewTable(model.IPv4, model.Node{Name: "node-a"}).Update(model.Node{Name: "node-a"}, []*model.ServicePort{sp.Seal()}, nil)
	e.sync(t, tbl, model.Diff{Full: true})
	gone := sp.Cluster[0].AddrPort().String()
	e.h.SetConnections("17/"+sp.Frontends[0].Addr.String()+"/80", gone, 0, 3)
	less := *sp
	less.Cluster = sp.Cluster[1:]
	next := tbl.Update(tbl.Node(), []*model.ServicePort{less.Seal()}, nil)
	e.sync(t, next, model.Diff{Changed: []model.ServicePortName{sp.Name}})
	if strings.Contains(e.dump(), gone) || e.b.PendingWork(model.IPv4) {
		t.Errorf("a UDP endpoint that left is still there or draining:\n%s", e.dump())
	}
}

// TestDump checks that the dump holds what portico owns: the virtual servers with their
// real servers, the bound addresses and both families' tables.
func TestDump(t *testing.T) {
	e := newEnv(t, backends.Options{})
	everyKind(t, e)
	var b strings.Builder
	if err := e.b.Dump(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"TCP 10.96.0.10:80 rr\n", "  -> 10.244.1.10:8080 (weight 1, active 0, inactive 0)\n",
		DeviceName + " 10.96.0.10\n", "add table ip " + TableName, "add table ip6 " + TableName} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the dump lacks %q:\n%s", want, b.String())
		}
	}
}
