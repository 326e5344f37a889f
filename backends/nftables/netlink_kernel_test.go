//go:build e2e

package nftables

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/model"
)

// remoteEndpointPort returns the first port of tbl (by name) with a remote cluster
// endpoint, and that endpoint's index: replacing it by another remote one changes the
// endpoint map only (a local one also has hairpin elements).
func remoteEndpointPort(t *testing.T, tbl *model.Table) (*model.ServicePort, int) {
	t.Helper()
	for _, n := range tbl.Names() {
		sp, _ := tbl.Get(n)
		for i, e := range sp.Cluster {
			if !e.Local {
				return sp, i
			}
		}
	}
	t.Fatalf("no %s port with a remote endpoint in the fixtures", tbl.Family())
	return nil, 0
}

// TestKernelEndpointsOverNetlink: a change of endpoints only (one replaced) goes to the
// kernel over netlink, in both families, and leaves exactly the table that the same
// change written by `nft -f` leaves; a batch the kernel refuses changes nothing, and the
// next sync repairs the table.
func TestKernelEndpointsOverNetlink(t *testing.T) {
	defer enterFreshNetns(t)()
	defer func() { execEndpointOps = runEndpointOps }()
	st := scenario(t, nil, fixtures...)
	newAddr := map[model.Family]string{model.IPv4: "10.244.9.99", model.IPv6: "fd00:10:244:9::99"}
	for _, f := range []model.Family{model.IPv4, model.IPv6} {
		prev := st.Table(f)
		sp, i := remoteEndpointPort(t, prev)
		eps := slices.Clone(sp.Cluster)
		eps[i] = remoteEP(eps[i], newAddr[f])
		next := editPort(t, prev, sp.Name, setCluster(eps...))

		calls := 0
		execEndpointOps = func(ctx context.Context, f fam, del, add []epOp) error {
			if len(del) > 0 { // the cold load's batches only add
				calls++
			}
			return runEndpointOps(ctx, f, del, add)
		}
		got := changeFromScratch(t, st, prev, next)
		if calls != 1 {
			t.Errorf("%s: the endpoint change went to the kernel in %d netlink batches, want 1", f, calls)
		}
		if !strings.Contains(got, newAddr[f]) {
			t.Errorf("%s: the kernel table lacks the new endpoint %s", f, newAddr[f])
		}
		execEndpointOps = nftEndpointOps
		if want := changeFromScratch(t, st, prev, next); got != want {
			t.Errorf("%s: the change over netlink left another table than the same change through nft -f:\n%s", f, backendtest.FirstDiff(want, got))
		}
		execEndpointOps = runEndpointOps
		b := kernelBackend()
		syncAll(t, b, nil, st)
		if err := b.Sync(context.Background(), next, model.Compare(prev, next)); err != nil {
			t.Fatalf("%s: endpoint change: %v", f, err)
		}
		refusedBatch(t, b, next, f)
		if err := b.Cleanup(context.Background()); err != nil {
			t.Fatalf("cleanup: %v", err)
		}
	}
}

// changeFromScratch loads st with a new backend, applies the change prev -> next (one
// family's table), and returns that family's kernel table before removing everything.
func changeFromScratch(t *testing.T, st *model.State, prev, next *model.Table) string {
	t.Helper()
	ctx := context.Background()
	b := kernelBackend()
	syncAll(t, b, nil, st)
	if err := b.Sync(ctx, next, model.Compare(prev, next)); err != nil {
		t.Fatalf("%s: endpoint change: %v", next.Family(), err)
	}
	out := kernelCanonical(t, next.Family())
	if err := b.Cleanup(ctx); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
	return out
}

// nftEndpointOps writes endpoint-map operations as `nft -f` input and runs nft: the
// reference the netlink path must match.
func nftEndpointOps(ctx context.Context, f fam, del, add []epOp) error {
	var b bytes.Buffer
	writeEndpointOps(&b, "delete", f, del)
	writeEndpointOps(&b, "add", f, add)
	return runNFT(ctx, &b)
}

// refusedBatch changes one endpoint of tbl again, with a deletion of a slot that does not
// exist added to the batch: the kernel refuses the batch, the sync fails and the table
// is as before; the next sync (full, the mirror forgotten) writes the change.
func refusedBatch(t *testing.T, b *Backend, tbl *model.Table, f model.Family) {
	t.Helper()
	ctx := context.Background()
	execEndpointOps = func(ctx context.Context, fm fam, del, add []epOp) error {
		bogus := epOp{m: add[0].m, slot: 1<<31 - 1}
		return runEndpointOps(ctx, fm, append(slices.Clone(del), bogus), add)
	}
	defer func() { execEndpointOps = runEndpointOps }()
	sp, i := remoteEndpointPort(t, tbl)
	eps := slices.Clone(sp.Cluster)
	addr := map[model.Family]string{model.IPv4: "10.244.9.98", model.IPv6: "fd00:10:244:9::98"}[f]
	eps[i] = remoteEP(eps[i], addr)
	next := editPort(t, tbl, sp.Name, setCluster(eps...))
	before := kernelCanonical(t, f)
	err := b.Sync(ctx, next, model.Compare(tbl, next))
	if err == nil || !strings.Contains(err.Error(), "nf_tables netlink") {
		t.Fatalf("%s: a refused batch returned %v, want an nf_tables netlink error", f, err)
	}
	if got := kernelCanonical(t, f); got != before {
		t.Errorf("%s: a refused batch changed the kernel table:\n%s", f, backendtest.FirstDiff(before, got))
	}
	execEndpointOps = runEndpointOps
	if err := b.Sync(ctx, next, model.Diff{}); err != nil {
		t.Fatalf("%s: sync after the refused batch: %v", f, err)
	}
	if got := kernelCanonical(t, f); !strings.Contains(got, addr) {
		t.Errorf("%s: the sync after a refused batch did not write the change (%s missing)", f, addr)
	}
}

// TestKernelLargeBatches: a cold load and a partial sync that write thousands of
// elements into one endpoint map go over netlink and leave what the Fake holds (a
// netlink message's element list is one attribute with a 16-bit length: a message of
// more than ~1,300 elements was misread, and the kernel refused the batch).
func TestKernelLargeBatches(t *testing.T) {
	defer enterFreshNetns(t)()
	const services, endpoints = 3, 3000 // each Service's endpoints in one map
	tbl := scaleTable(services, endpoints)
	p := newPair(t)
	p.kernel = New(backends.Options{MasqueradeBit: 14, Families: []model.Family{model.IPv4}})
	var largest int
	execBatch = func(ctx context.Context, b *nlBatch) error {
		n := 0
		for _, m := range decodeBatch(t, b) {
			if strings.HasPrefix(m.set, endpointMapPrefix) {
				n += len(m.elemGotos)
			}
		}
		largest = max(largest, n)
		return runBatch(ctx, b)
	}
	execEndpointOps = func(ctx context.Context, f fam, del, add []epOp) error {
		largest = max(largest, len(del)+len(add))
		return runEndpointOps(ctx, f, del, add)
	}
	defer func() { execEndpointOps, execBatch = runEndpointOps, runBatch }()
	p.sync("cold load", nil, tbl)
	if largest < endpoints {
		t.Fatalf("the largest netlink batch of the cold load held %d elements, want at least %d", largest, endpoints)
	}
	name := spn("scale", "svc-0001", "http", model.TCP)
	sp, _ := tbl.Get(name)
	eps := slices.Clone(sp.Cluster)
	for j := range eps { // every endpoint of one Service
		eps[j] = remoteEP(eps[j], fmt.Sprintf("10.201.%d.%d", j/250, j%250+1))
	}
	next := editPort(t, tbl, name, setCluster(eps...))
	largest = 0
	p.sync("3,000 endpoints of one map replaced", tbl, next)
	if largest != 2*endpoints {
		t.Errorf("the partial sync's netlink batch held %d operations, want %d", largest, 2*endpoints)
	}
	if err := p.kernel.Cleanup(context.Background()); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
}

// TestKernelColdLoadOverNetlink: a cold load, whose chains, rules and elements go over
// netlink wherever they have a netlink form, leaves exactly the table that nft writes
// for the same model (an atomic rewrite over it), in both families and under every node
// setting; a batch the kernel refuses fails the sync, and the next sync writes the table.
func TestKernelColdLoadOverNetlink(t *testing.T) {
	defer enterFreshNetns(t)()
	defer func() { execBatch = runBatch }()
	ctx := context.Background()
	for _, v := range backendtest.NodeVariants {
		st := scenario(t, v.Tweak, fixtures...)
		rules := 0
		execBatch = func(ctx context.Context, b *nlBatch) error {
			for _, m := range decodeBatch(t, b) {
				if m.typ == unix.NFT_MSG_NEWRULE {
					rules++
				}
			}
			return runBatch(ctx, b)
		}
		b := kernelBackend()
		syncAll(t, b, nil, st)
		execBatch = runBatch
		if rules == 0 {
			t.Errorf("%s: no rule went over netlink", v.Name)
		}
		for _, f := range []model.Family{model.IPv4, model.IPv6} {
			cold := kernelCanonical(t, f)
			if err := b.Sync(ctx, st.Table(f), model.Diff{Full: true}); err != nil {
				t.Fatalf("%s %s: rewrite: %v", v.Name, f, err)
			}
			if want := kernelCanonical(t, f); cold != want {
				t.Errorf("%s %s: the cold load over netlink differs from nft's rewrite:\n%s", v.Name, f, backendtest.FirstDiff(want, cold))
			}
		}
		if err := b.Cleanup(ctx); err != nil {
			t.Fatalf("cleanup: %v", err)
		}
	}

	// A refused batch: a rule that jumps to a chain that does not exist.
	tbl := everyKind(t)
	execBatch = func(ctx context.Context, b *nlBatch) error {
		exprs, _ := ruleExprs(newFam(model.IPv4), "jump no-such-chain")
		if err := b.addRule(chainMarkOffCluster, exprs, ""); err != nil {
			return err
		}
		return runBatch(ctx, b)
	}
	b := New(backends.Options{MasqueradeBit: 14, Families: []model.Family{model.IPv4}})
	err := b.Sync(ctx, tbl, model.Compare(nil, tbl))
	execBatch = runBatch
	if err == nil || !strings.Contains(err.Error(), "nf_tables netlink") {
		t.Fatalf("a cold load with a refused batch returned %v, want an nf_tables netlink error", err)
	}
	if err := b.Sync(ctx, tbl, model.Diff{}); err != nil {
		t.Fatalf("sync after the refused batch: %v", err)
	}
	p := newPair(t)
	p.kernel = b
	if err := p.fake.Sync(ctx, tbl, model.Compare(nil, tbl)); err != nil {
		t.Fatal(err)
	}
	p.compare("after a refused cold batch", model.IPv4)
	if err := b.Cleanup(ctx); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
}
