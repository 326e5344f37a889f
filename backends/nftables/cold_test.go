package nftables

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/backends"
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

// TestChunkOps: a cold load never takes more than maxColdTransactions transactions (plus
// the tail); a streamed rewrite uses small pieces whatever the size.
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

// coldStep is one step of a recorded cold load: an nft transaction's text, or a netlink
// batch, decoded.
type coldStep struct {
	text  string
	batch []batchMsg
}

// recordColdLoad runs a cold load of tbl with nft and netlink both recorded (nothing
// reaches a kernel) and returns the steps in order.
func recordColdLoad(t *testing.T, tbl *model.Table) []coldStep {
	t.Helper()
	var steps []coldStep
	execNFT = func(_ context.Context, text *bytes.Buffer) error {
		steps = append(steps, coldStep{text: text.String()})
		return nil
	}
	execBatch = func(_ context.Context, b *nlBatch) error {
		steps = append(steps, coldStep{batch: decodeBatch(t, b)})
		return nil
	}
	execEndpointOps = func(context.Context, fam, []epOp, []epOp) error {
		t.Error("a cold load sent endpoint operations on their own")
		return nil
	}
	defer func() { execNFT, execBatch, execEndpointOps = runNFT, runBatch, runEndpointOps }()
	withColdChunk(t, 200) // several chunks for a small table
	be := New(backends.Options{MasqueradeBit: 14, Families: []model.Family{model.IPv4}})
	be.newNFT = func(model.Family) (knftables.Interface, error) {
		return knftables.NewFake(knftables.IPv4Family, tableName), nil
	}
	if err := be.Sync(context.Background(), tbl, model.Compare(nil, tbl)); err != nil {
		t.Fatal(err)
	}
	return steps
}

var (
	addChainRe     = regexp.MustCompile(`(?m)^add chain ip portico (\S+)`)
	dispatchRe     = regexp.MustCompile(`goto ([^\s,}]+)`)
	endpointElemRe = regexp.MustCompile(`add element ip portico endpoints-`)
	dispatchCmd    = regexp.MustCompile(`(?m)^add element ip portico service-(ips|nodeports) \{[^\n]*`)
)

// coldOrder follows a recorded cold load: where each chain was created (step, and
// message within a batch) and which chains were dispatched to.
type coldOrder struct {
	t          *testing.T
	createdIn  map[string][2]int
	dispatched map[string]bool
	endpoints  int
	nftChains  int
}

// text checks an nft step: no endpoint elements, dispatch only to chains of earlier steps.
func (o *coldOrder) text(i int, text string) {
	if endpointElemRe.MatchString(text) {
		o.t.Errorf("step %d: nft writes endpoint elements", i)
	}
	for _, m := range addChainRe.FindAllStringSubmatch(text, -1) {
		o.createdIn[m[1]] = [2]int{i, 0}
		if strings.Contains(m[1], "/") {
			o.nftChains++
		}
	}
	for _, cmd := range dispatchCmd.FindAllString(text, -1) {
		for _, m := range dispatchRe.FindAllStringSubmatch(cmd, -1) {
			o.dispatch(m[1], [2]int{i, 0})
		}
	}
}

// batch checks a netlink step: endpoint elements before any dispatch element, dispatch
// only to chains created before.
func (o *coldOrder) batch(i int, msgs []batchMsg) {
	dispatching := false
	for j, m := range msgs {
		switch {
		case m.typ == unix.NFT_MSG_NEWCHAIN:
			o.createdIn[m.chain] = [2]int{i, j}
		case strings.HasPrefix(m.set, endpointMapPrefix):
			o.endpoints += len(m.elemGotos)
			if dispatching {
				o.t.Errorf("step %d: endpoint elements after dispatch elements", i)
			}
		case m.set == mapServiceIPs || m.set == mapServiceNodePorts:
			dispatching = true
			for _, c := range m.elemGotos {
				o.dispatch(c, [2]int{i, j})
			}
		}
	}
}

func (o *coldOrder) dispatch(chain string, at [2]int) {
	c, ok := o.createdIn[chain]
	if !ok || c[0] > at[0] || c[0] == at[0] && c[1] >= at[1] {
		o.t.Fatalf("step %d dispatches to chain %s, created at %v (%v)", at[0], chain, c, ok)
	}
	o.dispatched[chain] = true
}

// TestColdLoadOrder: in a cold load run by nft itself, every chain, rule and endpoint
// element goes over netlink, but the chains of a chunk with a rule nft must write
// (session affinity, in the every-kind scenario); a dispatch element (service-ips)
// follows its chain and, in a batch, every endpoint element of the batch; every chain is
// dispatched to in the end.
func TestColdLoadOrder(t *testing.T) {
	for _, tc := range []struct {
		name      string
		tbl       *model.Table
		endpoints int // 0: not checked
	}{
		{"scale", backendtest.ScaleTable(300, 5), 300 * 5},
		{"every kind", everyKind(t), 0},
	} {
		steps := recordColdLoad(t, tc.tbl)
		o := &coldOrder{t: t, createdIn: map[string][2]int{}, dispatched: map[string]bool{}}
		batches := 0
		for i, s := range steps {
			if s.batch == nil {
				o.text(i, s.text)
				continue
			}
			batches++
			o.batch(i, s.batch)
		}
		if tc.endpoints != 0 && o.endpoints != tc.endpoints {
			t.Errorf("%s: %d endpoint elements over netlink, want %d", tc.name, o.endpoints, tc.endpoints)
		}
		if batches < 2 {
			t.Errorf("%s: %d netlink batches: the test needs several chunks", tc.name, batches)
		}
		if fallback := tc.endpoints == 0; (o.nftChains > 0) != fallback {
			t.Errorf("%s: nft created %d Service chains, want them %s", tc.name, o.nftChains,
				map[bool]string{true: "in the chunks with affinity", false: "all over netlink"}[fallback])
		}
		for c := range o.createdIn {
			if tc.endpoints != 0 && strings.HasPrefix(c, "cluster-") && strings.Contains(c, "/") && !o.dispatched[c] { // a port's chain
				t.Errorf("%s: chain %s never dispatched to", tc.name, c)
			}
		}
	}
}
