package iptables

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/model"
)

// piecedBackend is a fake backend whose full syncs write pieces of about n rules.
func piecedBackend(t *testing.T, n int) (*Backend, *fakeKernel) {
	t.Helper()
	b, k := fakeBackend(t)
	if _, err := b.kernel(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, f := range []model.Family{model.IPv4, model.IPv6} {
		b.family(f).pieceRules = n
	}
	return b, k
}

// TestFullSyncInPieces writes the every-kind scenario under each node variant, and every
// state of the packet-flow table, as full syncs of many small pieces: the fake
// iptables-restore refuses a jump to a chain that does not exist yet, so each piece must
// hold or follow the chains its rules jump to, and the kernel must end up as after a full
// sync in one piece. The sets must be created first and filled just before the last
// piece (the one that hooks the chains). Pieces run two at a time (iptables-nft): the fake
// resolves jump targets against the kernel as it was when a restore started, so a piece
// started before one it depends on had committed fails.
func TestFullSyncInPieces(t *testing.T) {
	var states []*model.State
	for _, tc := range backendtest.NodeVariants {
		states = append(states, backendtest.Compile(t, tc.Tweak, backendtest.ObjectFiles...))
	}
	states = append(states, backendtest.FlowStates(t)...)
	for i, st := range states {
		b, k := piecedBackend(t, 3)
		one, ok := piecedBackend(t, 0)
		for _, tbl := range st.Tables {
			k.ops = nil
			inputs := syncOne(t, b, k, tbl, model.Diff{Full: true})
			syncOne(t, one, ok, tbl, model.Diff{Full: true})
			if i < len(backendtest.NodeVariants) && tbl.Family() == model.IPv4 && len(inputs) < 5 {
				t.Errorf("state %d, %s: %d inputs, want many pieces", i, tbl.Family(), len(inputs))
			}
			if i < len(backendtest.NodeVariants) && tbl.Family() == model.IPv4 && k.mostRunning < 2 {
				t.Errorf("state %d, %s: at most %d restores ran at once, want 2", i, tbl.Family(), k.mostRunning)
			}
			if !setsAroundPieces(k.ops) {
				t.Errorf("state %d, %s: ran %v, want the sets created first and filled before the last piece", i, tbl.Family(), k.ops)
			}
		}
		if got, want := k.dump(), ok.dump(); got != want {
			t.Fatalf("state %d: pieces differ from one input:\n%s", i, backendtest.FirstDiff(want, got))
		}
	}
}

// TestFullSyncStopsAtAFailedPiece fails the third piece of a full sync: the sync reports
// it, starts nothing once it knows, and the next sync (full again) ends as a fresh one.
func TestFullSyncStopsAtAFailedPiece(t *testing.T) {
	b, k := piecedBackend(t, 20)
	tbl := backendtest.ScaleTable(100, 2)
	k.failRestore, k.failSkip = errInjected, 2
	if err := b.Sync(context.Background(), tbl, model.Diff{Full: true}); !errors.Is(err, errInjected) {
		t.Fatalf("sync with a failing third piece = %v, want the injected error", err)
	}
	// The piece after the failed one may have started with it (two run at once); none
	// starts once the failure is known.
	if n := len(k.restores[model.IPv4]); n < 2 || n > 3 {
		t.Errorf("%d restores ran, want the 2 before the failure and at most the one started with it", n)
	}
	syncOne(t, b, k, tbl, model.Diff{Changed: []model.ServicePortName{backendtest.ScalePort(1, 2, 0).Name}})
	fresh, fk := piecedBackend(t, 0)
	syncOne(t, fresh, fk, tbl, model.Diff{Full: true})
	if got, want := k.dump(), fk.dump(); got != want {
		t.Errorf("after the retry the kernel differs from a fresh sync:\n%s", backendtest.FirstDiff(want, got))
	}
}

// TestLeafKey checks that a port's key is the smallest leaf any of its frontends uses.
func TestLeafKey(t *testing.T) {
	for _, st := range backendtest.FlowStates(t) {
		for _, tbl := range st.Tables {
			r := newRenderer(newFam(tbl.Family()), tbl.Node(), 1<<14)
			for sp := range tbl.All() {
				key := leafKey(sp)
				for _, l := range r.render(sp).leaves {
					if rk, _ := newFam(tbl.Family()).rankOf(l.chain); rk == rankLeaf && l.chain < key {
						t.Errorf("%s: key %q, but a rule in leaf %q", sp.Name, key, l.chain)
					}
				}
			}
		}
	}
}

// setsAroundPieces reports whether the operations of a full sync are: the sets created
// (unless there is one piece only), the pieces but the last, the sets filled, the last.
func setsAroundPieces(ops []string) bool {
	n := len(ops)
	if n == 2 {
		return ops[0] == "ipset" && ops[1] == "restore"
	}
	return n >= 3 && ops[0] == "ipset" && ops[n-2] == "ipset" && ops[n-1] == "restore" && !slices.Contains(ops[1:n-2], "ipset")
}

// TestFullSyncOfNoPortsIsOneInput: a family without Service ports (the IPv6 family of a
// single-stack cluster) is written by one restore, not split into pieces.
func TestFullSyncOfNoPortsIsOneInput(t *testing.T) {
	b, k := piecedBackend(t, 3)
	for _, fam := range []model.Family{model.IPv4, model.IPv6} {
		empty := model.NewTable(fam, backendtest.ScaleTable(1, 1).Node())
		if inputs := syncOne(t, b, k, empty, model.Diff{Full: true}); len(inputs) != 1 {
			t.Errorf("%s: %d restores for a table without ports, want 1", fam, len(inputs))
		}
	}
}
