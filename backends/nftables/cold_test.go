package nftables

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/model"
)

// withColdChunk sets the cold-load chunk size for one test.
func withColdChunk(t *testing.T, ops int) {
	t.Helper()
	prev := minChunkOps
	minChunkOps = ops
	t.Cleanup(func() { minChunkOps = prev })
}

// TestColdLoadInChunks: into an empty kernel the full sync goes as several bounded
// transactions, each leaving a consistent table, and ends where one transaction would.
func TestColdLoadInChunks(t *testing.T) {
	tbl := everyKind(t)
	want := semantic(freshFake(t, tbl)) // one transaction: the chunk is larger than the table
	withColdChunk(t, 12)
	b, recs, fakes := recordingBackend(t, nil)
	rec, fake := recs[model.IPv4], fakes[model.IPv4]
	rec.after = func() { checkConsistent(t, fake) }
	var sizes []int
	b.opts.TransactionSize = func(n int) { sizes = append(sizes, n) }
	if err := b.Sync(context.Background(), tbl, model.Compare(nil, tbl)); err != nil {
		t.Fatalf("sync: %v", err)
	}
	if len(rec.txs) < 3 {
		t.Fatalf("cold load ran %d transactions, want several with chunks of %d operations", len(rec.txs), minChunkOps)
	}
	if len(sizes) != len(rec.txs) {
		t.Errorf("transaction sizes reported %d times for %d transactions", len(sizes), len(rec.txs))
	}
	for i, tx := range rec.txs {
		if hasTable := strings.Contains(tx.text, "add table"); hasTable != (i == 0) {
			t.Errorf("transaction %d adds the table: %v (only the first should)", i, hasTable)
		}
		// A chunk closes after the port that reached the bound; the first holds the skeleton.
		if i > 0 && tx.ops > 3*minChunkOps {
			t.Errorf("transaction %d has %d operations, bound %d", i, tx.ops, minChunkOps)
		}
	}
	if got := semantic(fake); got != want {
		t.Errorf("chunked cold load differs from one transaction:\n%s", backendtest.FirstDiff(want, got))
	}
	// The mirror is complete: a one-endpoint change is a small partial transaction.
	next := editPort(t, tbl, webHTTP, func(sp *model.ServicePort) { sp.Cluster = sp.Cluster[1:] })
	tx := step(t, b, rec, tbl, next)
	if ops := parseOps(tx.text); fullTx(ops) {
		t.Errorf("sync after the cold load was full:\n%s", tx.text)
	}
	assertSameBehaviour(t, fake, next)
}

// TestColdLoadInterrupted: a transaction that fails, or a context canceled, during a cold
// load stops it with that error and forgets the mirror; the next sync, finding the
// half-written table, rewrites it in one atomic transaction.
func TestColdLoadInterrupted(t *testing.T) {
	injected := errors.New("injected failure")
	for _, tc := range []struct {
		name      string
		interrupt func(rec *recordingNFT, cancel func()) // runs after each transaction
		want      error
		wantTxs   int // transactions run before the load stopped
	}{
		{"failed transaction", func(rec *recordingNFT, _ func()) {
			if len(rec.txs) == 2 {
				rec.failNext = injected
			}
		}, injected, 3},
		{"canceled", func(_ *recordingNFT, cancel func()) { cancel() }, context.Canceled, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl := everyKind(t)
			withColdChunk(t, 12)
			b, recs, fakes := recordingBackend(t, nil)
			rec, fake := recs[model.IPv4], fakes[model.IPv4]
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			rec.after = func() { tc.interrupt(rec, cancel) }
			if err := b.Sync(ctx, tbl, model.Compare(nil, tbl)); !errors.Is(err, tc.want) {
				t.Fatalf("sync returned %v, want %v", err, tc.want)
			}
			if len(rec.txs) != tc.wantTxs {
				t.Fatalf("cold load ran %d transactions, want it to stop after %d", len(rec.txs), tc.wantTxs)
			}
			if b.fams[model.IPv4].ready {
				t.Fatal("mirror kept after an interrupted cold load")
			}
			rec.after = nil
			withColdChunk(t, 1) // would split a cold load into one transaction per port
			tx := stepDiff(t, b, rec, tbl, model.Diff{Full: true})
			if !fullTx(parseOps(tx.text)) {
				t.Errorf("sync after the interruption was not a full rewrite:\n%s", tx.text)
			}
			assertSameBehaviour(t, fake, tbl)
		})
	}
}

// TestChunkOps: a cold load never takes more than maxColdTransactions transactions (plus
// the tail); a streamed rewrite uses small pieces whatever the size.
// TestColdLoadGroupsEndpointMaps: a cold load writes the Service ports grouped by
// endpoint map, so that each map is bound by the rules of one transaction (or two, where
// a chunk ends inside a map's group) instead of by every transaction: the kernel checks a
// map's elements each time a new rule binds it.
func TestColdLoadGroupsEndpointMaps(t *testing.T) {
	tbl := benchTable(2000, 3)
	withColdChunk(t, 600)
	b, recs, fakes := recordingBackend(t, nil)
	rec := recs[model.IPv4]
	if err := b.Sync(context.Background(), tbl, model.Compare(nil, tbl)); err != nil {
		t.Fatalf("sync: %v", err)
	}
	if len(rec.txs) < 8 {
		t.Fatalf("cold load ran %d transactions, want at least 8", len(rec.txs))
	}
	bindings := map[string][]int{} // endpoint map -> transactions adding rules that use it
	for i, tx := range rec.txs {
		seen := map[string]bool{}
		for _, line := range strings.Split(tx.text, "\n") {
			_, m, ok := strings.Cut(line, " map @"+endpointMapPrefix)
			if !ok || !strings.HasPrefix(line, "add rule ") {
				continue
			}
			m, _, _ = strings.Cut(m, " ")
			if !seen[m] {
				seen[m] = true
				bindings[m] = append(bindings[m], i)
			}
		}
	}
	if len(bindings) < bucketsPerProtocol[model.TCP]/2 {
		t.Fatalf("rules use %d endpoint maps, want most of the %d", len(bindings), bucketsPerProtocol[model.TCP])
	}
	for m, txs := range bindings {
		if len(txs) > 2 || (len(txs) == 2 && txs[1] != txs[0]+1) {
			t.Errorf("endpoint map %s%s is bound by rules of transactions %v, want one or two consecutive", endpointMapPrefix, m, txs)
		}
	}
	assertSameBehaviour(t, fakes[model.IPv4], tbl)
}

func TestChunkOps(t *testing.T) {
	small, large := everyKind(t), benchTable(10000, 10)
	if got := chunkOps(small, true); got != minChunkOps {
		t.Errorf("cold chunk of a small table = %d, want %d", got, minChunkOps)
	}
	if got, want := chunkOps(large, true), 10000*(6+10)/maxColdTransactions; got != want {
		t.Errorf("cold chunk at 10,000 Services x 10 = %d, want %d", got, want)
	}
	if got := chunkOps(large, false); got != minChunkOps {
		t.Errorf("rewrite piece at 10,000 Services = %d, want %d", got, minChunkOps)
	}
}
