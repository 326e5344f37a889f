//go:build e2e

package nftables

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/model"
)

// The kernel tests program real nftables with the nft binary, each in a network namespace
// it creates and deletes (backendtest.EnterFreshNetns: each test does everything from its
// own goroutine, locked to the thread that is in the namespace; no t.Run subtests, no
// other goroutines).

// enterFreshNetns enters a fresh network namespace (see backendtest.EnterFreshNetns) and
// checks that nftables is empty there; it returns the function that moves back.
func enterFreshNetns(t *testing.T) func() {
	t.Helper()
	restore := backendtest.EnterFreshNetns(t, "nft")
	if out := nft(t, "list", "tables"); strings.TrimSpace(out) != "" {
		restore()
		t.Fatalf("the new network namespace already has nftables tables (is nft running elsewhere?):\n%s", out)
	}
	return restore
}

// nft runs the nft command (from the locked thread, so in the test's namespace).
func nft(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("nft", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("nft %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func kernelBackend() *Backend {
	return New(backends.Options{MasqueradeBit: 14, Families: []model.Family{model.IPv4, model.IPv6}})
}

// pair runs the same syncs on a kernel backend and on a knftables.Fake backend, and
// checks after each that the kernel holds what the Fake holds.
type pair struct {
	t      *testing.T
	kernel *Backend
	fake   *Backend
	fakes  map[model.Family]*knftables.Fake
}

func newPair(t *testing.T) *pair {
	fb, fakes := fakeBackend(t)
	return &pair{t: t, kernel: kernelBackend(), fake: fb, fakes: fakes}
}

// sync applies next (diffed against prev) to both and compares them.
func (p *pair) sync(what string, prev, next *model.Table) {
	p.t.Helper()
	p.syncDiff(what, next, model.Compare(prev, next))
}

func (p *pair) syncDiff(what string, next *model.Table, d model.Diff) {
	p.t.Helper()
	ctx := context.Background()
	if err := p.fake.Sync(ctx, next, d); err != nil {
		p.t.Fatalf("%s: fake sync: %v", what, err)
	}
	if err := p.kernel.Sync(ctx, next, d); err != nil {
		p.t.Fatalf("%s: the kernel rejects the transaction: %v", what, err)
	}
	p.compare(what, next.Family())
}

// compare checks that the kernel table has the Fake's chains, sets and maps with as many
// rules and elements.
func (p *pair) compare(what string, f model.Family) {
	p.t.Helper()
	got, want := kernelSummary(p.t, f), fakeSummary(p.fakes[f])
	if got != want {
		p.t.Fatalf("%s: %s kernel table differs from the fake's (objects: rules or elements):\n%s", what, f, backendtest.FirstDiff(want, got))
	}
}

// fakeSummary lists "chain NAME RULES", "set NAME ELEMENTS" and "map NAME ELEMENTS".
func fakeSummary(fake *knftables.Fake) string {
	var lines []string
	for n, c := range fake.Table.Chains {
		lines = append(lines, fmt.Sprintf("chain %s %d", n, len(c.Rules)))
	}
	for n, s := range fake.Table.Sets {
		lines = append(lines, fmt.Sprintf("set %s %d", n, len(s.Elements)))
	}
	for n, m := range fake.Table.Maps {
		lines = append(lines, fmt.Sprintf("map %s %d", n, len(m.Elements)))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// kernelObjects returns the objects of `nft -j list table` (without metainfo), each as
// its type and body.
func kernelObjects(t *testing.T, f model.Family) [][2]any {
	t.Helper()
	out := nft(t, "-j", "list", "table", string(knftFamily(f)), tableName)
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("parsing nft -j output: %v", err)
	}
	var objs [][2]any
	for _, o := range doc.Nftables {
		for typ, raw := range o {
			if typ == "metainfo" {
				continue
			}
			var body map[string]any
			if err := json.Unmarshal(raw, &body); err != nil {
				t.Fatalf("parsing %s: %v", typ, err)
			}
			objs = append(objs, [2]any{typ, body})
		}
	}
	return objs
}

func kernelSummary(t *testing.T, f model.Family) string {
	t.Helper()
	rules := map[string]int{}
	var lines []string
	for _, o := range kernelObjects(t, f) {
		typ, body := o[0].(string), o[1].(map[string]any)
		switch typ {
		case "rule":
			rules[body["chain"].(string)]++
		case "chain":
			rules[body["name"].(string)] += 0
		case "set", "map":
			elems, _ := body["elem"].([]any)
			lines = append(lines, fmt.Sprintf("%s %s %d", typ, body["name"], len(elems)))
		}
	}
	for c, n := range rules {
		lines = append(lines, fmt.Sprintf("chain %s %d", c, n))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// kernelCanonical returns the kernel table as sorted JSON lines, without handles, with set
// elements sorted and each rule numbered within its chain: equal for equal contents
// whatever order and handles the kernel gave them.
func kernelCanonical(t *testing.T, f model.Family) string {
	t.Helper()
	idx := map[string]int{}
	var lines []string
	for _, o := range kernelObjects(t, f) {
		typ, body := o[0].(string), o[1].(map[string]any)
		delete(body, "handle")
		key := typ
		switch typ {
		case "rule":
			c := body["chain"].(string)
			key = fmt.Sprintf("rule %s #%d", c, idx[c])
			idx[c]++
		case "set", "map":
			if elems, ok := body["elem"].([]any); ok {
				var s []string
				for _, e := range elems {
					b, _ := json.Marshal(e)
					s = append(s, string(b))
				}
				sort.Strings(s)
				body["elem"] = s
			}
		}
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, key+" "+string(b))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// kernelChains returns the chain names of `nft list table` (the text output).
func kernelChains(t *testing.T, f model.Family) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(nft(t, "list", "table", string(knftFamily(f)), tableName), "\n") {
		l = strings.TrimSpace(l)
		if name, ok := strings.CutPrefix(l, "chain "); ok {
			out = append(out, strings.TrimSuffix(name, " {"))
		}
	}
	slices.Sort(out)
	return out
}

func TestKernelEveryKindOfService(t *testing.T) {
	defer enterFreshNetns(t)()
	ctx := context.Background()
	for _, tc := range backendtest.NodeVariants {
		st := scenario(t, tc.Tweak, fixtures...)
		p := newPair(t)
		for _, tbl := range st.Tables {
			start := time.Now()
			p.sync(tc.Name+" full sync", nil, tbl)
			t.Logf("%s %s: full sync of %d ports in %v", tc.Name, tbl.Family(), tbl.Len(), time.Since(start))
			var want []string
			for c := range p.fakes[tbl.Family()].Table.Chains {
				want = append(want, c)
			}
			slices.Sort(want)
			if got := kernelChains(t, tbl.Family()); !slices.Equal(got, want) {
				t.Errorf("%s: nft list table %s %s has chains\n%v\nwant\n%v", tc.Name, knftFamily(tbl.Family()), tableName, got, want)
			}
			for _, c := range []string{"nat-prerouting", "services", "cluster-default/ds/tcp/http"} {
				if !slices.Contains(want, c) {
					t.Errorf("expected chain %s missing from the model's table", c)
				}
			}
		}
		if err := p.kernel.Cleanup(ctx); err != nil {
			t.Fatalf("cleanup: %v", err)
		}
	}
}

func TestKernelSequence(t *testing.T) {
	defer enterFreshNetns(t)()
	st := scenario(t, nil, fixtures...)
	p := newPair(t)
	for _, tbl := range st.Tables {
		p.sync("full sync", nil, tbl)
	}
	t1 := st.Table(model.IPv4)

	// One endpoint replaced, then endpoint counts across a size class.
	sp, _ := t1.Get(webHTTP)
	t2 := editPort(t, t1, webHTTP, setCluster(sp.Cluster[0], sp.Cluster[1], remoteEP(sp.Cluster[2], "10.244.2.99")))
	p.sync("one endpoint replaced", t1, t2)
	prev := t2
	np, _ := prev.Get(npHTTP)
	eps := slices.Clone(np.Cluster)
	for _, a := range []string{"10.244.3.1", "10.244.3.2", "10.244.3.3"} {
		eps = append(eps, remoteEP(eps[0], a))
		next := editPort(t, prev, npHTTP, setCluster(slices.Clone(eps)...))
		p.sync(fmt.Sprintf("np grows to %d endpoints", len(eps)), prev, next)
		prev = next
	}
	// Services deleted: chains flushed now and deleted by the next transaction.
	next := removePorts(t, prev, extSvc, sticky, etpRemote, webDNS)
	p.sync("services deleted", prev, next)
	prev = next
	next = editPort(t, prev, webHTTP, func(sp *model.ServicePort) { sp.Cluster = sp.Cluster[:1] })
	p.sync("deferred deletes", prev, next)
	if chains := kernelChains(t, model.IPv4); slices.Contains(chains, prefixCluster+portSuffix(sticky)) {
		t.Errorf("deleted chain still in the kernel: %v", chains)
	}
	prev = next
	// A Service deleted and re-created before the deferred delete.
	next = removePorts(t, prev, lbHTTPS)
	p.sync("lb deleted", prev, next)
	p.sync("lb re-created", next, prev)
	p.syncDiff("after re-creation", prev, model.Diff{})
	if chains := kernelChains(t, model.IPv4); !slices.Contains(chains, prefixExternal+portSuffix(lbHTTPS)) {
		t.Errorf("re-created chain missing from the kernel: %v", chains)
	}
	// Session affinity: sticky comes back, loses an endpoint, changes its timeout.
	withSticky := prev.Update(prev.Node(), []*model.ServicePort{mustPort(t, t1, sticky)}, nil)
	p.sync("sticky back", prev, withSticky)
	prev = withSticky
	s1, _ := prev.Get(sticky)
	next = editPort(t, prev, sticky, setCluster(s1.Cluster[1:]...))
	p.sync("sticky loses an endpoint", prev, next)
	prev = next
	next = editPort(t, prev, sticky, func(sp *model.ServicePort) { sp.Affinity.Timeout = time.Hour })
	p.sync("sticky timeout changes", prev, next)
	prev = next
	p.syncDiff("deferred set deletes", prev, model.Diff{})
	// A periodic full sync over the result, then a partial one again.
	p.syncDiff("periodic full sync", prev, model.Diff{Full: true})
	next = editPort(t, prev, npHTTP, setCluster(eps[:2]...))
	p.sync("np shrinks", prev, next)
	prev = next
	// IPv6 too.
	t6 := st.Table(model.IPv6)
	t6b := removePorts(t, t6, t6.Names()[0])
	p.sync("ipv6 port deleted", t6, t6b)
	p.syncDiff("ipv6 deferred deletes", t6b, model.Diff{})

	// Restart over this state: converges to what a fresh load gives.
	restarted := kernelBackend()
	if err := restarted.Sync(context.Background(), prev, model.Compare(nil, prev)); err != nil {
		t.Fatalf("restart full sync: %v", err)
	}
	if err := restarted.Sync(context.Background(), prev, model.Diff{}); err != nil {
		t.Fatalf("sync after restart: %v", err)
	}
	got := kernelCanonical(t, model.IPv4)
	if err := restarted.Cleanup(context.Background()); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
	fresh := kernelBackend()
	if err := fresh.Sync(context.Background(), prev, model.Compare(nil, prev)); err != nil {
		t.Fatalf("fresh full sync: %v", err)
	}
	if want := kernelCanonical(t, model.IPv4); got != want {
		t.Errorf("restarted table differs from a fresh load:\n%s", backendtest.FirstDiff(want, got))
	}
	if err := fresh.Cleanup(context.Background()); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
}

func mustPort(t *testing.T, tbl *model.Table, n model.ServicePortName) *model.ServicePort {
	t.Helper()
	sp, ok := tbl.Get(n)
	if !ok {
		t.Fatalf("no port %s", n)
	}
	return sp
}

func TestKernelRestart(t *testing.T) {
	defer enterFreshNetns(t)()
	ctx := context.Background()
	all := scenario(t, nil, fixtures...)
	few := scenario(t, nil, "clusterip.yaml", "nodeport.yaml")

	// Fresh loads, for reference.
	fresh := func(st *model.State) map[model.Family]string {
		b := kernelBackend()
		for _, tbl := range st.Tables {
			if err := b.Sync(ctx, tbl, model.Compare(nil, tbl)); err != nil {
				t.Fatalf("fresh sync: %v", err)
			}
		}
		out := map[model.Family]string{}
		for _, tbl := range st.Tables {
			out[tbl.Family()] = kernelCanonical(t, tbl.Family())
		}
		if err := b.Cleanup(ctx); err != nil {
			t.Fatalf("cleanup: %v", err)
		}
		return out
	}
	wantAll, wantFew := fresh(all), fresh(few)

	first := kernelBackend()
	for _, tbl := range all.Tables {
		if err := first.Sync(ctx, tbl, model.Compare(nil, tbl)); err != nil {
			t.Fatalf("first run: %v", err)
		}
	}
	// Same model after a restart.
	second := kernelBackend()
	for _, tbl := range all.Tables {
		if err := second.Sync(ctx, tbl, model.Compare(nil, tbl)); err != nil {
			t.Fatalf("restart, same model: %v", err)
		}
		if got := kernelCanonical(t, tbl.Family()); got != wantAll[tbl.Family()] {
			t.Errorf("%s after a restart differs from a fresh load:\n%s", tbl.Family(), backendtest.FirstDiff(wantAll[tbl.Family()], got))
		}
	}
	// Fewer Services after another restart: the stale ones are flushed, then deleted.
	third := kernelBackend()
	for _, tbl := range few.Tables {
		if err := third.Sync(ctx, tbl, model.Compare(nil, tbl)); err != nil {
			t.Fatalf("restart, fewer services: %v", err)
		}
		if chains := kernelChains(t, tbl.Family()); tbl.Family() == model.IPv4 && !slices.Contains(chains, prefixCluster+portSuffix(sticky)) {
			t.Errorf("stale chain deleted in the transaction that empties it")
		}
		if err := third.Sync(ctx, tbl, model.Diff{}); err != nil {
			t.Fatalf("sync after the restart: %v", err)
		}
		if got := kernelCanonical(t, tbl.Family()); got != wantFew[tbl.Family()] {
			t.Errorf("%s does not converge after a restart with fewer Services:\n%s", tbl.Family(), backendtest.FirstDiff(wantFew[tbl.Family()], got))
		}
	}
	if err := third.Cleanup(ctx); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
}

func TestKernelCleanup(t *testing.T) {
	defer enterFreshNetns(t)()
	ctx := context.Background()
	b := kernelBackend()
	if err := b.Cleanup(ctx); err != nil {
		t.Fatalf("cleanup with nothing to remove: %v", err)
	}
	for _, tbl := range scenario(t, nil, fixtures...).Tables {
		if err := b.Sync(ctx, tbl, model.Compare(nil, tbl)); err != nil {
			t.Fatalf("sync: %v", err)
		}
	}
	out := nft(t, "list", "tables")
	for _, want := range []string{"table ip portico", "table ip6 portico"} {
		if !strings.Contains(out, want) {
			t.Fatalf("%q missing after sync: %s", want, out)
		}
	}
	if err := b.Cleanup(ctx); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
	if out := nft(t, "list", "tables"); strings.TrimSpace(out) != "" {
		t.Errorf("tables left after cleanup:\n%s", out)
	}
	if err := b.Cleanup(ctx); err != nil {
		t.Errorf("second cleanup: %v", err)
	}
	// A new sync after the cleanup starts over.
	tbl := scenario(t, nil, fixtures...).Table(model.IPv4)
	if err := b.Sync(ctx, tbl, model.Compare(tbl, tbl)); err != nil {
		t.Fatalf("sync after cleanup: %v", err)
	}
	if !strings.Contains(nft(t, "list", "tables"), "table ip portico") {
		t.Error("sync after cleanup did not recreate the table")
	}
	if err := b.Cleanup(ctx); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
}

// scaleTable returns n ClusterIP Services of eps endpoints each.
func scaleTable(n, eps int) *model.Table {
	node := model.Node{Name: "node-a", LocalTraffic: model.LocalTraffic{CIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}}}
	ports := make([]*model.ServicePort, 0, n)
	for i := range n {
		sp := &model.ServicePort{
			Name:      spn("scale", fmt.Sprintf("svc-%04d", i), "http", model.TCP),
			Frontends: []model.Frontend{{Kind: model.ClusterIP, Addr: netip.AddrFrom4([4]byte{10, 100, byte(i >> 8), byte(i)}), Port: 80}},
			Internal:  model.Traffic{Endpoints: model.ClusterEndpoints, Masquerade: model.MasqueradeOffCluster, Empty: model.Reject},
		}
		for j := range eps {
			k := i*eps + j // unique per endpoint
			sp.Cluster = append(sp.Cluster, model.Endpoint{
				Addr: netip.AddrFrom4([4]byte{10, 200, byte(k >> 8), byte(k)}),
				Port: 8080, Ready: true, Serving: true,
			})
		}
		ports = append(ports, sp.Seal())
	}
	return model.NewTable(model.IPv4, node).Update(node, ports, nil)
}

func TestKernelScaleSmoke(t *testing.T) {
	defer enterFreshNetns(t)()
	const services, endpoints, changes = 2000, 10, 20
	tbl := scaleTable(services, endpoints)
	var ops []int
	p := newPair(t)
	p.kernel = New(backends.Options{MasqueradeBit: 14, Families: []model.Family{model.IPv4},
		TransactionSize: func(n int) { ops = append(ops, n) }})

	start := time.Now()
	p.sync("scale full sync", nil, tbl)
	cold := 0
	for _, n := range ops {
		cold += n
	}
	t.Logf("full sync of %d Services x %d endpoints: %d operations in %d transactions, %v", services, endpoints, cold, len(ops), time.Since(start))
	// Into an empty kernel the full sync goes in bounded chunks (cold.go).
	chunk := chunkOps(tbl, true)
	if want := cold / (chunk + 100); len(ops) < max(2, want) || len(ops) > maxColdTransactions+2 {
		t.Errorf("cold load of %d operations ran %d transactions, want at least %d (chunks of %d) and at most %d", cold, len(ops), max(2, want), chunk, maxColdTransactions+2)
	}
	if got := len(p.fakes[model.IPv4].Table.Chains); got < services {
		t.Fatalf("%d chains for %d Services", got, services)
	}

	prev := tbl
	var total time.Duration
	for i := range changes {
		name := spn("scale", fmt.Sprintf("svc-%04d", i*97%services), "http", model.TCP)
		next := editPort(t, prev, name, func(sp *model.ServicePort) {
			sp.Cluster[i%endpoints] = remoteEP(sp.Cluster[i%endpoints], fmt.Sprintf("10.201.0.%d", i+1))
		})
		start := time.Now()
		if err := p.kernel.Sync(context.Background(), next, model.Compare(prev, next)); err != nil {
			t.Fatalf("change %d: %v", i, err)
		}
		d := time.Since(start)
		total += d
		if err := p.fake.Sync(context.Background(), next, model.Compare(prev, next)); err != nil {
			t.Fatal(err)
		}
		t.Logf("change %2d (%s): %d operations in %v", i, name, ops[len(ops)-1], d)
		prev = next
	}
	t.Logf("%d single-endpoint changes: %v in total, %v on average", changes, total, total/changes)
	p.compare("after the changes", model.IPv4)

	// A full rewrite over the existing table is one transaction, streamed in pieces.
	n := len(ops)
	start = time.Now()
	p.syncDiff("full rewrite", prev, model.Diff{Full: true})
	if len(ops) != n+1 || ops[n] <= minChunkOps {
		t.Errorf("full rewrite ran %d transactions (sizes %v), want one of more than %d operations (several pieces)", len(ops)-n, ops[n:], minChunkOps)
	}
	t.Logf("full rewrite of %d operations in %v", ops[len(ops)-1], time.Since(start))
	// Every changed endpoint is in the kernel.
	out := nft(t, "list", "table", "ip", tableName)
	for i := range changes {
		if a := fmt.Sprintf("10.201.0.%d", i+1); !strings.Contains(out, a+" . ") {
			t.Errorf("endpoint %s missing from the kernel", a)
		}
	}
	if err := p.kernel.Cleanup(context.Background()); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
}

// TestKernelStreamAtomic: a streamed transaction commits only when its producer finishes;
// if the producer fails, nft is stopped before the end of its input and nothing changes.
func TestKernelStreamAtomic(t *testing.T) {
	defer enterFreshNetns(t)()
	ctx := context.Background()
	piece := func(s string) *bytes.Buffer { return bytes.NewBufferString(s) }
	injected := errors.New("injected failure")
	err := streamNFT(ctx, func(write func(*bytes.Buffer) error) error {
		if err := write(piece("add table ip stream-a\n")); err != nil {
			return err
		}
		return injected
	})
	if !errors.Is(err, injected) {
		t.Fatalf("stream returned %v, want the producer's error", err)
	}
	if out := nft(t, "list", "tables"); strings.Contains(out, "stream-a") {
		t.Fatalf("a failed stream committed its first piece:\n%s", out)
	}
	err = streamNFT(ctx, func(write func(*bytes.Buffer) error) error {
		for _, s := range []string{"add table ip stream-b\n", "add chain ip stream-b c\n"} {
			if err := write(piece(s)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	if out := nft(t, "list", "table", "ip", "stream-b"); !strings.Contains(out, "chain c") {
		t.Fatalf("streamed pieces missing:\n%s", out)
	}
	err = streamNFT(ctx, func(write func(*bytes.Buffer) error) error {
		return write(piece("add chain ip no-such-table c\n"))
	})
	if err == nil || !strings.Contains(err.Error(), "No such file or directory") {
		t.Fatalf("stream of a bad transaction returned %v, want nft's error", err)
	}
}

// TestKernelColdLoadInterrupted: a cold load stopped after two of its transactions leaves
// a partial table in the kernel; the next sync rewrites it atomically into exactly what a
// fresh load holds.
func TestKernelColdLoadInterrupted(t *testing.T) {
	defer enterFreshNetns(t)()
	tbl := everyKind(t)
	fresh := kernelBackend()
	if err := fresh.Sync(context.Background(), tbl, model.Compare(nil, tbl)); err != nil {
		t.Fatalf("fresh load: %v", err)
	}
	want := kernelCanonical(t, model.IPv4)
	if err := fresh.Cleanup(context.Background()); err != nil {
		t.Fatalf("cleanup: %v", err)
	}

	prev := minChunkOps
	minChunkOps = 12
	defer func() { minChunkOps = prev }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runs := 0 // nft transactions and netlink batches
	step := func(ctx context.Context, run func() error) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := run()
		if runs++; runs == 2 {
			cancel()
		}
		return err
	}
	execNFT = func(ctx context.Context, text *bytes.Buffer) error {
		return step(ctx, func() error { return runNFT(ctx, text) })
	}
	execBatch = func(ctx context.Context, b *nlBatch) error {
		return step(ctx, func() error { return runBatch(ctx, b) })
	}
	defer func() { execNFT, execBatch = runNFT, runBatch }()
	b := kernelBackend()
	if err := b.Sync(ctx, tbl, model.Compare(nil, tbl)); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted cold load returned %v, want context.Canceled", err)
	}
	if runs != 2 {
		t.Fatalf("cold load ran %d steps (nft or netlink) after the cancel, want it to stop after 2", runs)
	}
	if got := kernelCanonical(t, model.IPv4); got == want {
		t.Fatal("the interrupted cold load left the whole table; the test needs a partial one")
	}
	if err := b.Sync(context.Background(), tbl, model.Diff{Full: true}); err != nil {
		t.Fatalf("rewrite over the partial table: %v", err)
	}
	if got := kernelCanonical(t, model.IPv4); got != want {
		t.Errorf("rewrite over a partial table differs from a fresh load:\n%s", backendtest.FirstDiff(want, got))
	}
	if err := b.Cleanup(context.Background()); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
}
