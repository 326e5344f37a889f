//go:build e2e

package nftables

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/model"
)

// TestKernelPropertyRandomServices: 120 random Services and EndpointSlices that pass the
// API's validation (apigen_test.go), compiled by proxier/compile, go into the kernel in a
// full sync, a few partial syncs of random changes and a full rewrite, both families, for
// two node configurations, without a rejected transaction or a skipped port; after each
// sync the kernel holds what the Fake holds. It takes about 4 s (the unit test
// TestPropertyRandomServices runs many more seeds against the Fake).
func TestKernelPropertyRandomServices(t *testing.T) {
	defer enterFreshNetns(t)()
	const services, rounds = 120, 3
	for seed, variant := range backendtest.NodeVariants[:2] {
		w := newWorld(t, uint64(100+seed), services, variant)
		p := newPair(t)
		state := w.compile(nil)
		syncPair := func(what string, prev, next *model.State, full bool) {
			t.Helper()
			for _, tbl := range next.Tables {
				var before *model.Table
				if prev != nil {
					before = prev.Table(tbl.Family())
				}
				d := model.Compare(before, tbl)
				d.Full = d.Full || full
				start := time.Now()
				p.syncDiff(fmt.Sprintf("%s: %s", variant.Name, what), tbl, d)
				t.Logf("%s %s %s: %d ports, %v", variant.Name, tbl.Family(), what, tbl.Len(), time.Since(start))
			}
		}
		syncPair("full sync", nil, state, false)
		for round := range rounds {
			next := w.compile(w.change())
			syncPair(fmt.Sprintf("change %d", round), state, next, false)
			state = next
		}
		syncPair("full rewrite", state, state, true)
		if err := p.kernel.Cleanup(context.Background()); err != nil {
			t.Fatalf("cleanup: %v", err)
		}
	}
}

// hostile are Service port names holding what no API name may: quotes, backslashes,
// newlines, semicolons and braces, unicode, and lengths past the API's limits; and one at
// the API's limits.
var hostile = []model.ServicePortName{
	spn(longNS, longName, longPort, model.TCP),
	spn(`quo"te`, "x", `"; flush ruleset; "`, model.TCP),
	spn("new\nline", "back\\slash", "", model.UDP),
	spn("ünïcödé", "ポート", "名前", model.SCTP),
	spn(strings.Repeat("n", 300), strings.Repeat("s", 300), strings.Repeat("p", 40), model.TCP),
	spn("a;b{c}#d", "$var @set", "", model.TCP),
}

// hostilePorts returns the every-kind table with a ClusterIP port with session affinity
// (so that sets have comments too) for each of the hostile names.
func hostilePorts(t *testing.T) *model.Table {
	t.Helper()
	base := mustPort(t, everyKind(t), sticky)
	var ports []*model.ServicePort
	for i, n := range hostile {
		cp := *base
		cp.Name = n
		cp.Frontends = []model.Frontend{{Kind: model.ClusterIP, Addr: netip.AddrFrom4([4]byte{10, 96, 9, byte(i + 1)}), Port: 80}}
		cp.External, cp.ExternalFromPods, cp.ExternalFromNode = model.Traffic{}, model.Traffic{}, model.Traffic{}
		cp.SourceRanges, cp.HealthCheckNodePort = nil, 0
		ports = append(ports, cp.Seal())
	}
	tbl := everyKind(t)
	return tbl.Update(tbl.Node(), ports, nil)
}

// TestKernelHostileNames: whatever a ServicePortName holds, the text the backend writes
// parses (nft --check) and loads, and the names and comments the kernel reads back are
// bounded.
func TestKernelHostileNames(t *testing.T) {
	defer enterFreshNetns(t)()
	tbl := hostilePorts(t)

	// The text of a full sync, checked by nft itself.
	fs := newFamilyState(kernelNFT(t), newFam(model.IPv4))
	fs.batched = true
	var text bytes.Buffer
	if err := fs.renderFull(tbl, 1<<14, existingObjects{}, minChunkOps, func(w *txWriter) error {
		_, err := fs.text(w).WriteTo(&text)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nft", "--check", "-f", "-")
	cmd.Stdin = bytes.NewReader(text.Bytes())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft --check rejects the text: %v\n%s", err, out)
	}

	p := newPair(t)
	p.sync("hostile names", nil, tbl)
	out := nft(t, "list", "table", "ip", tableName)
	comments := commentRe.FindAllStringSubmatch(out, -1)
	for _, m := range comments {
		if len(m[1]) > maxCommentLen {
			t.Errorf("comment of %d bytes in the kernel: %q", len(m[1]), m[1])
		}
	}
	if len(comments) < 3*len(hostile) {
		t.Errorf("%d comments in the kernel, want those of the rules, elements and affinity sets of %d ports", len(comments), len(hostile))
	}
	if !strings.Contains(out, portComment(spn(longNS, longName, longPort, model.TCP))) {
		t.Errorf("the comment of the port at the API's limits is not in the kernel:\n%s", out)
	}
	for _, c := range kernelChains(t, model.IPv4) {
		if err := checkName(c); err != nil {
			t.Errorf("kernel chain: %v", err)
		}
	}
	if err := p.kernel.Cleanup(context.Background()); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
}

// kernelNFT returns the knftables interface of the IPv4 table (real nft).
func kernelNFT(t *testing.T) knftables.Interface {
	t.Helper()
	nft, err := realNFT(model.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	return nft
}

// TestKernelConfineConflict: two LoadBalancer Services that claim the same ingress IP and
// port with overlapping but different source ranges (the kernel refuses the second range:
// "File exists") — the one written later is skipped, every other port is programmed; once
// the other one is gone, the skipped one is programmed when its retry is due.
func TestKernelConfineConflict(t *testing.T) {
	defer enterFreshNetns(t)()
	tbl := everyKind(t)
	lb := mustPort(t, tbl, lbHTTPS)
	twin := *lb
	twin.Name = spn("apps", "lb-twin", "https", model.TCP)
	twin.SourceRanges = []netip.Prefix{netip.MustParsePrefix("10.1.2.0/24")}
	twin.Frontends = nil
	for _, f := range lb.Frontends {
		if f.Kind == model.LoadBalancer {
			twin.Frontends = append(twin.Frontends, f)
		}
	}
	withTwin := tbl.Update(tbl.Node(), []*model.ServicePort{twin.Seal()}, nil)

	b := kernelBackend()
	err := b.Sync(context.Background(), withTwin, model.Diff{Full: true})
	s, ok := backends.AsSkipped(err)
	if !ok || len(s.Ports) != 1 || (s.Ports[0].Name != lbHTTPS && s.Ports[0].Name != twin.Name) {
		t.Fatalf("sync returned %v, want one of %s and %s skipped", err, lbHTTPS, twin.Name)
	}
	t.Logf("skipped: %v", s)
	skipped, kept := s.Ports[0].Name, lbHTTPS
	if skipped == lbHTTPS {
		kept = twin.Name
	}
	p := newPair(t)
	p.kernel = b
	p.syncDiff("the same table, the skipped port left out", removePorts(t, withTwin, skipped), model.Diff{Full: true})
	retryInKernel(t, p, withTwin, kept, skipped)
	if err := b.Cleanup(context.Background()); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
}

// retryInKernel brings skipped back into a backend that left it out (it is rejected
// again), removes the port kept (which the kernel took instead) in a partial sync, then
// lets the retry of skipped come due: the backend reports pending work, and the next sync
// programs skipped (the kernel then holds what a fresh sync of the table holds).
func retryInKernel(t *testing.T, p *pair, withTwin *model.Table, kept, skipped model.ServicePortName) {
	t.Helper()
	ctx := context.Background()
	b, fs := p.kernel, p.kernel.fams[model.IPv4]
	err := b.Sync(ctx, withTwin, model.Compare(removePorts(t, withTwin, skipped), withTwin))
	if s, ok := backends.AsSkipped(err); !ok || len(s.Ports) != 1 || s.Ports[0].Name != skipped {
		t.Fatalf("adding %s back: %v, want it skipped again", skipped, err)
	}
	without := removePorts(t, withTwin, kept)
	if err := b.Sync(ctx, without, model.Compare(withTwin, without)); err != nil {
		t.Fatalf("removing %s: %v", kept, err)
	}
	for i := 0; b.PendingWork(model.IPv4); i++ { // the deletion of what the removal emptied
		if err := b.Sync(ctx, without, model.Diff{}); err != nil || i == 3 {
			t.Fatalf("follow-up sync %d: %v", i, err)
		}
	}
	for i, d := 0, (model.Diff{Full: true}); i == 0 || p.fake.PendingWork(model.IPv4); i, d = i+1, (model.Diff{}) {
		if err := p.fake.Sync(ctx, without, d); err != nil || i == 3 {
			t.Fatalf("fake sync %d: %v", i, err)
		}
	}
	if _, ok := fs.skipped[skipped]; !ok || kernelSummary(t, model.IPv4) == fakeSummary(p.fakes[model.IPv4]) {
		t.Fatalf("%s is no longer skipped, or in the kernel, before its retry is due", skipped)
	}
	later := time.Now().Add(retryMax)
	fs.now = func() time.Time { return later }
	if !b.PendingWork(model.IPv4) {
		t.Fatal("no pending work once the retry of the skipped port is due")
	}
	if err := b.Sync(ctx, without, model.Diff{}); err != nil {
		t.Fatalf("retry of %s: %v", skipped, err)
	}
	p.compare("after the retry of "+skipped.String(), model.IPv4)
}

// injectBadRule makes every nft input (transactions and checks) and every netlink batch
// that creates the chain named bad also add a rule the kernel rejects (a jump to a chain
// that does not exist), as a bug of the renderer could; it returns the function that
// undoes it.
func injectBadRule(t *testing.T, bad string) func() {
	inject := func(b *bytes.Buffer) *bytes.Buffer {
		if !bytes.Contains(b.Bytes(), []byte("add chain ip portico "+bad+"\n")) {
			return b
		}
		out := bytes.NewBuffer(b.Bytes())
		out.WriteString("add rule ip portico " + bad + " jump no-such-chain\n")
		return out
	}
	wrap := func(run func(context.Context, func(func(*bytes.Buffer) error) error) error) func(context.Context, func(func(*bytes.Buffer) error) error) error {
		return func(ctx context.Context, produce func(func(*bytes.Buffer) error) error) error {
			return run(ctx, func(write func(*bytes.Buffer) error) error {
				return produce(func(b *bytes.Buffer) error { return write(inject(b)) })
			})
		}
	}
	streamNFT, checkNFT = wrap(runNFTStream), wrap(runNFTCheck)
	execNFT = func(ctx context.Context, text *bytes.Buffer) error { return runNFT(ctx, inject(text)) }
	execBatch = func(ctx context.Context, b *nlBatch) error {
		if batchCreatesChain(t, b, bad) {
			exprs, _ := ruleExprs(newFam(model.IPv4), "jump no-such-chain")
			if err := b.addRule(bad, exprs, ""); err != nil {
				return err
			}
		}
		return runBatch(ctx, b)
	}
	return func() { streamNFT, checkNFT, execNFT, execBatch = runNFTStream, runNFTCheck, runNFT, runBatch }
}

// batchCreatesChain reports whether b creates the chain called name.
func batchCreatesChain(t *testing.T, b *nlBatch, name string) bool {
	for _, m := range batchMessages(t, b) {
		if uint16(m.Header.Type)&0xff != unix.NFT_MSG_NEWCHAIN {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return false
		}
		for ad.Next() {
			if ad.Type() == unix.NFTA_CHAIN_NAME && ad.String() == name {
				return true
			}
		}
	}
	return false
}

// TestKernelConfineScale: among n Services × 10 endpoints (2,000; PORTICO_CONFINE_SCALE
// sets another n, e.g. 10000), one whose rules the kernel rejects costs the full sync a
// search, not minutes: the others are programmed. The times are logged next to those of
// the same syncs without the fault.
func TestKernelConfineScale(t *testing.T) {
	defer enterFreshNetns(t)()
	n := 2000
	if s := os.Getenv("PORTICO_CONFINE_SCALE"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			t.Fatalf("PORTICO_CONFINE_SCALE=%q: %v", s, err)
		}
	}
	tbl := scaleTable(n, 10)
	ctx := context.Background()
	bad := spn("scale", fmt.Sprintf("svc-%04d", n*2/3), "http", model.TCP)
	timed := func(what string, b *Backend, d model.Diff) (time.Duration, error) {
		start := time.Now()
		err := b.Sync(ctx, tbl, d)
		took := time.Since(start)
		t.Logf("%s of %d Services: %v", what, n, took)
		return took, err
	}
	clean := kernelBackend()
	coldClean, err := timed("cold load", clean, model.Diff{Full: true})
	if err != nil {
		t.Fatal(err)
	}
	rewriteClean, err := timed("full rewrite", clean, model.Diff{Full: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := clean.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}

	defer injectBadRule(t, setChain(model.ClusterEndpoints, portSuffix(bad)))()
	b := kernelBackend()
	for _, tc := range []struct {
		what  string
		clean time.Duration
	}{{"cold load with a rejected port", coldClean}, {"full rewrite with a rejected port", rewriteClean}} {
		took, err := timed(tc.what, b, model.Diff{Full: true})
		s, ok := backends.AsSkipped(err)
		if !ok || len(s.Ports) != 1 || s.Ports[0].Name != bad {
			t.Fatalf("%s: %v, want %s skipped", tc.what, err, bad)
		}
		if limit := 10*tc.clean + 10*time.Second; took > limit {
			t.Errorf("%s took %v, more than %v (the sync without the fault took %v)", tc.what, took, limit, tc.clean)
		}
	}
	if got, want := len(kernelChains(t, model.IPv4)), skeletonChains+n-1; got != want {
		t.Errorf("the kernel holds %d chains, want %d (every Service but the rejected one)", got, want)
	}
	if err := b.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
}
