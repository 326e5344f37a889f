package iptables

import (
	"context"
	"testing"
	"time"

	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/model"
)

// restartOver returns a new backend over k (a restart), whose kernel is k.
func restartOver(b *Backend) *Backend {
	r := New(b.opts)
	r.detect = b.detect
	return r
}

// TestPrepareListsForTheFirstSync restarts over the rules of an earlier run that had
// more Services: Prepare lists each family once, and the first full sync uses that
// listing instead of listing again, so it still deletes the chains the earlier run no
// longer needs (the kernel then equals a fresh sync).
func TestPrepareListsForTheFirstSync(t *testing.T) {
	ctx := context.Background()
	b, k := fakeBackend(t)
	syncOne(t, b, k, backendtest.ScaleTable(40, 2), model.Diff{Full: true})
	r := restartOver(b)
	saves := k.saves
	if err := r.Prepare(ctx); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if got := k.saves - saves; got != len(r.families()) {
		t.Fatalf("Prepare listed %d times, want once per family (%d)", got, len(r.families()))
	}
	saves = k.saves
	tbl := backendtest.ScaleTable(30, 2)
	syncOne(t, r, k, tbl, model.Diff{Full: true})
	if k.saves != saves {
		t.Errorf("the first full sync after Prepare listed the kernel again (%d saves)", k.saves-saves)
	}
	fresh, fk := fakeBackend(t)
	syncOne(t, fresh, fk, tbl, model.Diff{Full: true})
	if got, want := k.dump(), fk.dump(); got != want {
		t.Errorf("after a prepared restart the kernel differs from a fresh sync:\n%s", backendtest.FirstDiff(want, got))
	}
}

// TestPreparedListingIsUsedOnce checks that a listing Prepare made is not used when it
// is older than preparedMaxAge (the first sync lists again), nor after a failed sync.
func TestPreparedListingIsUsedOnce(t *testing.T) {
	ctx := context.Background()
	b, k := fakeBackend(t)
	syncOne(t, b, k, backendtest.ScaleTable(20, 2), model.Diff{Full: true})

	r := restartOver(b)
	if err := r.Prepare(ctx); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	r.family(model.IPv4).prepared.at = time.Now().Add(-preparedMaxAge)
	saves := k.saves
	syncOne(t, r, k, backendtest.ScaleTable(10, 2), model.Diff{Full: true})
	if k.saves != saves+1 {
		t.Errorf("with a listing %s old the first sync listed %d times, want once", preparedMaxAge, k.saves-saves)
	}

	r = restartOver(b)
	if err := r.Prepare(ctx); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	k.failRestore = errInjected
	if err := r.Sync(ctx, backendtest.ScaleTable(10, 2), model.Diff{Full: true}); err == nil {
		t.Fatal("a sync with a failing restore succeeded")
	}
	if r.family(model.IPv4).prepared != nil {
		t.Error("a failed sync kept Prepare's listing for the next one")
	}
	saves = k.saves
	syncOne(t, r, k, backendtest.ScaleTable(10, 2), model.Diff{Full: true})
	if k.saves != saves+1 {
		t.Errorf("the sync after a failure listed %d times, want once", k.saves-saves)
	}
}
