package nftables

import (
	"context"
	"errors"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/model"
)

var _ backends.Verifier = (*Backend)(nil)

// runFake applies one change to a fake table, as someone else's nft command would.
func runFake(t *testing.T, fake *knftables.Fake, change func(tx *knftables.Transaction)) {
	t.Helper()
	tx := fake.NewTransaction()
	change(tx)
	if err := fake.Run(context.Background(), tx); err != nil {
		t.Fatal(err)
	}
}

// TestVerify removes or alters the fixed objects of a synced fake table in each of the
// ways Verify must notice, and checks that Verify tells the affected family only, and
// that a full sync makes the table whole again.
func TestVerify(t *testing.T) {
	ctx := context.Background()
	b, fakes := fakeBackend(t)
	st := scenario(t, nil, fixtures...)
	for _, tbl := range st.Tables {
		if err := b.Verify(ctx, tbl.Family()); err != nil {
			t.Fatalf("%s before any sync: Verify = %v, want nil", tbl.Family(), err)
		}
	}
	syncAll(t, b, nil, st)
	// A partial sync leaves the fixed chains as they are.
	next := editPort(t, st.Table(model.IPv4), webHTTP, func(sp *model.ServicePort) {
		sp.Cluster = append(sp.Cluster, remoteEP(sp.Cluster[0], "10.244.2.99"))
	})
	if err := b.Sync(ctx, next, model.Compare(st.Table(model.IPv4), next)); err != nil {
		t.Fatal(err)
	}
	tables := map[model.Family]*model.Table{model.IPv4: next, model.IPv6: st.Table(model.IPv6)}
	for _, tc := range []struct {
		name   string
		family model.Family
		change func(tx *knftables.Transaction, fake *knftables.Fake)
	}{
		{"table deleted", model.IPv4, func(tx *knftables.Transaction, _ *knftables.Fake) { tx.Delete(&knftables.Table{}) }},
		{"every chain flushed", model.IPv6, func(tx *knftables.Transaction, fake *knftables.Fake) {
			for name := range fake.Table.Chains {
				tx.Flush(&knftables.Chain{Name: name})
			}
		}},
		{"services flushed", model.IPv4, func(tx *knftables.Transaction, _ *knftables.Fake) {
			tx.Flush(&knftables.Chain{Name: chainServices})
		}},
		{"base chain flushed", model.IPv6, func(tx *knftables.Transaction, _ *knftables.Fake) {
			tx.Flush(&knftables.Chain{Name: "nat-output"})
		}},
		{"rule added", model.IPv4, func(tx *knftables.Transaction, _ *knftables.Fake) {
			tx.Add(&knftables.Rule{Chain: chainMasquerading, Rule: "counter"})
		}},
	} {
		fake := fakes[tc.family]
		runFake(t, fake, func(tx *knftables.Transaction) { tc.change(tx, fake) })
		for f := range tables {
			err := b.Verify(ctx, f)
			if f == tc.family && !errors.Is(err, backends.ErrRulesMissing) {
				t.Errorf("%s: Verify(%s) = %v, want ErrRulesMissing", tc.name, f, err)
			}
			if f != tc.family && err != nil {
				t.Errorf("%s: Verify(%s) = %v, want nil", tc.name, f, err)
			}
		}
		if err := b.Sync(ctx, tables[tc.family], model.Diff{Full: true}); err != nil {
			t.Fatalf("%s: full sync: %v", tc.name, err)
		}
		if err := b.Verify(ctx, tc.family); err != nil {
			t.Errorf("%s: after the full sync Verify(%s) = %v, want nil", tc.name, tc.family, err)
		}
	}
}

// failingList is a knftables interface whose listings fail.
type failingList struct{ knftables.Interface }

func (failingList) List(context.Context, string) ([]string, error) {
	return nil, errors.New("nft: permission denied")
}

func (failingList) ListRules(context.Context, string) ([]*knftables.Rule, error) {
	return nil, errors.New("nft: permission denied")
}

// TestVerifyCannotTell: when the kernel cannot be read, or the skeleton was written
// differently from what Verify expects, Verify says it cannot tell instead of reporting
// the rules missing (which would rewrite the table every few seconds).
func TestVerifyCannotTell(t *testing.T) {
	ctx := context.Background()
	fake := knftables.NewFake(knftables.IPv4Family, tableName)
	var nft knftables.Interface = fake
	b := New(backends.Options{MasqueradeBit: 14, Families: []model.Family{model.IPv4}},
		WithInterfaces(func(model.Family) (knftables.Interface, error) { return nft, nil }, nil))
	syncAll(t, b, nil, scenario(t, nil, "clusterip.yaml"))
	if err := b.Verify(ctx, model.IPv4); err != nil {
		t.Fatalf("Verify = %v, want nil", err)
	}

	b.fams[model.IPv4].nft = failingList{fake}
	err := b.Verify(ctx, model.IPv4)
	if err == nil || errors.Is(err, backends.ErrRulesMissing) || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("unreadable kernel: Verify = %v, want the read error, not ErrRulesMissing", err)
	}

	b.fams[model.IPv4].nft = fake
	b.fams[model.IPv4].skeletonRules++
	err = b.Verify(ctx, model.IPv4)
	if err == nil || errors.Is(err, backends.ErrRulesMissing) || !strings.Contains(err.Error(), "cannot verify") {
		t.Errorf("skeleton count mismatch: Verify = %v, want a cannot-verify error", err)
	}
}

// TestFixedChainsMatchSkeleton: the chains Verify reads are every chain of the skeleton,
// with the rules the full sync wrote into each.
func TestFixedChainsMatchSkeleton(t *testing.T) {
	b, fakes := fakeBackend(t)
	syncAll(t, b, nil, scenario(t, nil, fixtures...))
	for f, fake := range fakes {
		fs := b.fams[f]
		for _, c := range fs.fixedChains(b.opts.MasqueradeMark()) {
			ch := fake.Table.Chains[c.name]
			if ch == nil {
				t.Errorf("%s: fixed chain %s is not in the table", f, c.name)
				continue
			}
			if len(ch.Rules) != c.rules {
				t.Errorf("%s: fixed chain %s has %d rules in the table, fixedChains says %d", f, c.name, len(ch.Rules), c.rules)
			}
		}
	}
}
