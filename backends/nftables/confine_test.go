package nftables

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/model"
)

// rejectingNFT wraps a knftables.Interface and rejects, in Run and Check alike, every
// transaction that reject objects to (as the kernel rejects a transaction holding one bad
// object), applying nothing.
type rejectingNFT struct {
	knftables.Interface
	reject       func(text string) error
	runs, checks int
}

func (r *rejectingNFT) rejects(tx *knftables.Transaction) error {
	if r.reject == nil {
		return nil
	}
	return r.reject(tx.String())
}

func (r *rejectingNFT) Run(ctx context.Context, tx *knftables.Transaction) error {
	r.runs++
	if err := r.rejects(tx); err != nil {
		return err
	}
	return r.Interface.Run(ctx, tx)
}

func (r *rejectingNFT) Check(ctx context.Context, tx *knftables.Transaction) error {
	r.checks++
	if err := r.rejects(tx); err != nil {
		return err
	}
	return r.Interface.Check(ctx, tx)
}

// touching returns a reject function for transactions that add something naming each
// of markers (a chain, a rule of it, an element pointing to it); flushing or deleting
// what names them is accepted, as the kernel would.
func touching(markers ...string) func(string) error {
	return func(text string) error {
		for _, m := range markers {
			adds := false
			for _, line := range strings.Split(text, "\n") {
				if strings.HasPrefix(line, "add ") && strings.Contains(line, m) {
					adds = true
					break
				}
			}
			if !adds {
				return nil
			}
		}
		return fmt.Errorf("injected: the kernel rejects %v", markers)
	}
}

// rejectingBackend returns an IPv4 backend over a rejectingNFT wrapping a fake.
func rejectingBackend(t *testing.T) (*Backend, *rejectingNFT, *knftables.Fake) {
	t.Helper()
	fake := knftables.NewFake(knftables.IPv4Family, tableName)
	rej := &rejectingNFT{Interface: fake}
	b := New(backends.Options{MasqueradeBit: 14, Families: []model.Family{model.IPv4}},
		WithInterfaces(
			func(model.Family) (knftables.Interface, error) { return rej, nil },
			func(context.Context, model.Family) (string, error) { return fake.Dump(), nil },
		))
	return b, rej, fake
}

// freshSummary returns the tableSummary of a fresh full sync of tbl.
func freshSummary(t *testing.T, tbl *model.Table) string {
	t.Helper()
	b, _, fake := rejectingBackend(t)
	if err := b.Sync(context.Background(), tbl, model.Diff{Full: true}); err != nil {
		t.Fatalf("fresh sync: %v", err)
	}
	return tableSummary(fake)
}

// settleAll runs follow-up syncs until the backend has no deferred deletions left.
func settleAll(t *testing.T, b *Backend, tbl *model.Table) {
	t.Helper()
	for i := 0; len(b.fams[tbl.Family()].staleChains)+len(b.fams[tbl.Family()].staleSets) > 0; i++ {
		if i == 3 {
			t.Fatal("deferred deletions left after 3 follow-up syncs")
		}
		if err := b.Sync(context.Background(), tbl, model.Diff{}); err != nil {
			t.Fatalf("follow-up sync: %v", err)
		}
	}
}

// wantSkipped checks that err is a SkippedError naming exactly names.
func wantSkipped(t *testing.T, err error, names ...model.ServicePortName) *backends.SkippedError {
	t.Helper()
	s, ok := backends.AsSkipped(err)
	if !ok {
		t.Fatalf("sync returned %v, want a SkippedError naming %v", err, names)
	}
	var got []model.ServicePortName
	for _, p := range s.Ports {
		got = append(got, p.Name)
		if p.Err == nil || !strings.Contains(p.Error(), p.Name.String()) {
			t.Errorf("skipped port %s: error %q does not say why and which port", p.Name, p.Error())
		}
	}
	if !slices.Equal(got, names) {
		t.Fatalf("skipped %v, want %v (%v)", got, names, err)
	}
	return s
}

// A full sync in which one port's objects are rejected programs every other port and
// reports that one.
func TestConfineFullSync(t *testing.T) {
	tbl := everyKind(t)
	for _, cold := range []bool{true, false} {
		b, rej, fake := rejectingBackend(t)
		if !cold { // a table the kernel holds: the rewrite is one transaction
			if err := b.Sync(context.Background(), tbl, model.Diff{Full: true}); err != nil {
				t.Fatal(err)
			}
		}
		rej.reject = touching(portSuffix(webHTTP))
		s := wantSkipped(t, b.Sync(context.Background(), tbl, model.Diff{Full: true}), webHTTP)
		if !strings.Contains(s.Ports[0].Err.Error(), "injected") {
			t.Errorf("the skipped port's error does not carry the kernel's message: %v", s.Ports[0].Err)
		}
		settleAll(t, b, tbl)
		if got, want := tableSummary(fake), freshSummary(t, removePorts(t, tbl, webHTTP)); got != want {
			t.Fatalf("cold=%t: the table differs from one without the rejected port:\n%s", cold, backendtest.FirstDiff(want, got))
		}
		if checks := rej.checks; checks > 4*len(tbl.Names()) {
			t.Errorf("cold=%t: %d checks to find one port among %d", cold, checks, len(tbl.Names()))
		}
	}
}

// A partial sync whose transaction the kernel rejects because of one changed port
// programs the other changes and reports that port; the backend then leaves it out of
// later transactions (checking it alone when it changes) and programs it once the kernel
// takes it, when its retry is due.
func TestConfinePartialSyncAndRetry(t *testing.T) {
	t0 := everyKind(t)
	b, rej, fake := rejectingBackend(t)
	ctx := context.Background()
	if err := b.Sync(ctx, t0, model.Compare(nil, t0)); err != nil {
		t.Fatal(err)
	}
	fs := b.fams[model.IPv4]
	clock := time.Unix(1_000_000, 0)
	fs.now = func() time.Time { return clock }
	moved := func(addr string) func(*model.ServicePort) {
		return func(sp *model.ServicePort) { sp.Cluster = []model.Endpoint{remoteEP(sp.Cluster[0], addr)} }
	}
	t1 := editPort(t, editPort(t, t0, webHTTP, moved("10.244.2.50")), npHTTP, moved("10.244.2.51"))
	rej.reject = touching(portSuffix(webHTTP))
	wantSkipped(t, b.Sync(ctx, t1, model.Compare(t0, t1)), webHTTP)
	settleAll(t, b, t1)
	without := removePorts(t, t1, webHTTP)
	if got, want := tableSummary(fake), freshSummary(t, without); got != want {
		t.Fatalf("after the rejected partial sync:\n%s", backendtest.FirstDiff(want, got))
	}

	// Changed again and still rejected: checked alone, left out, no failed transaction.
	t2 := editPort(t, t1, webHTTP, moved("10.244.2.52"))
	runs := rej.runs
	wantSkipped(t, b.Sync(ctx, t2, model.Compare(t1, t2)), webHTTP)
	if rej.runs != runs+1 {
		t.Errorf("the sync ran %d transactions, want one (the rejected port checked, not written)", rej.runs-runs)
	}
	if b.PendingWork(model.IPv4) {
		t.Error("pending work before the retry is due")
	}

	// Accepted now; tried again once the retry is due, which the backend reports.
	rej.reject = nil
	if err := b.Sync(ctx, t2, model.Diff{}); err != nil {
		t.Fatalf("sync before the retry is due: %v", err)
	}
	if got, want := tableSummary(fake), freshSummary(t, removePorts(t, t2, webHTTP)); got != want {
		t.Fatalf("the skipped port came back before its retry:\n%s", backendtest.FirstDiff(want, got))
	}
	clock = clock.Add(retryMax)
	if !b.PendingWork(model.IPv4) {
		t.Fatal("no pending work once the retry is due")
	}
	if err := b.Sync(ctx, t2, model.Diff{}); err != nil {
		t.Fatalf("retry: %v", err)
	}
	settleAll(t, b, t2)
	if got, want := tableSummary(fake), freshSummary(t, t2); got != want {
		t.Fatalf("after the retry the table differs from a fresh one:\n%s", backendtest.FirstDiff(want, got))
	}
	if b.PendingWork(model.IPv4) || len(fs.skipped) > 0 {
		t.Errorf("pending work or skipped ports left after a successful retry: %v", fs.skipped)
	}
}

// The retry backs off: doubling from retryMin to retryMax while the port is rejected (the
// first skip waits retryMin, the full sync after it twice that).
func TestConfineRetryBackoff(t *testing.T) {
	tbl := everyKind(t)
	b, rej, _ := rejectingBackend(t)
	ctx := context.Background()
	if err := b.Sync(ctx, tbl, model.Compare(nil, tbl)); err != nil {
		t.Fatal(err)
	}
	fs := b.fams[model.IPv4]
	clock := time.Unix(1_000_000, 0)
	fs.now = func() time.Time { return clock }
	rej.reject = touching(portSuffix(webHTTP))
	wantSkipped(t, b.Sync(ctx, tbl, model.Diff{Full: true}), webHTTP)
	// A full sync checks the skipped port before it writes the others: one transaction.
	runs := rej.runs
	wantSkipped(t, b.Sync(ctx, tbl, model.Diff{Full: true}), webHTTP)
	if rej.runs != runs+1 {
		t.Errorf("full sync with a port still rejected ran %d transactions, want 1", rej.runs-runs)
	}
	var waits []time.Duration
	for range 8 {
		waits = append(waits, fs.retryAt.Sub(clock))
		clock = fs.retryAt
		if !b.PendingWork(model.IPv4) {
			t.Fatal("retry due but no pending work")
		}
		wantSkipped(t, b.Sync(ctx, tbl, model.Diff{}), webHTTP)
	}
	want := []time.Duration{2 * retryMin, 4 * retryMin, 8 * retryMin, 16 * retryMin, 32 * retryMin, retryMax, retryMax, retryMax}
	if !slices.Equal(waits, want) {
		t.Errorf("waits %v, want %v", waits, want)
	}
}

// conflicting returns a reject function for transactions after which the fake's
// service-ips map would point to chains named by both markers (as the kernel refuses two
// elements that overlap): an element counts when the transaction adds it, or when the
// fake holds it and the transaction does not flush the map.
func conflicting(fake *knftables.Fake, a, b string) func(string) error {
	after := func(text, marker string) bool {
		for _, line := range strings.Split(text, "\n") {
			if strings.HasPrefix(line, "add element") && strings.Contains(line, mapServiceIPs) && strings.Contains(line, marker) {
				return true
			}
		}
		if strings.Contains(text, "flush map ip portico "+mapServiceIPs) || fake.Table == nil || fake.Table.Maps[mapServiceIPs] == nil {
			return false
		}
		return slices.ContainsFunc(fake.Table.Maps[mapServiceIPs].Elements, func(e *knftables.Element) bool {
			return strings.Contains(strings.Join(e.Value, " "), marker)
		})
	}
	return func(text string) error {
		if after(text, a) && after(text, b) {
			return fmt.Errorf("injected: %s and %s overlap", a, b)
		}
		return nil
	}
}

// Two ports that the kernel takes alone but not together (overlapping elements): the one
// written later is left out, the other programmed; after a partial sync brought the
// conflict, the newcomer is the one left out.
func TestConfineConflict(t *testing.T) {
	tbl := everyKind(t)
	ctx := context.Background()
	a, b := portSuffix(webHTTP), portSuffix(npHTTP)
	be, rej, fake := rejectingBackend(t)
	rej.reject = conflicting(fake, a, b)
	s, ok := backends.AsSkipped(be.Sync(ctx, tbl, model.Diff{Full: true}))
	if !ok || len(s.Ports) != 1 || (s.Ports[0].Name != webHTTP && s.Ports[0].Name != npHTTP) {
		t.Fatalf("sync returned %v, want one of the two conflicting ports skipped", s)
	}
	if !strings.Contains(s.Ports[0].Err.Error(), "together with") {
		t.Errorf("the error does not say the port is rejected with others: %v", s.Ports[0].Err)
	}
	settleAll(t, be, tbl)
	if got, want := tableSummary(fake), freshSummary(t, removePorts(t, tbl, s.Ports[0].Name)); got != want {
		t.Fatalf("the table differs from one without %s:\n%s", s.Ports[0].Name, backendtest.FirstDiff(want, got))
	}

	// The conflict arrives with a partial sync: its transaction fails, no port of it is
	// rejected alone but the table's ports are together, so the same sync goes on as a
	// full one that leaves the newcomer out. The next full sync leaves it out again (a
	// check of it alone passes, its write fails, and it is blamed before the port it
	// conflicts with, which keeps serving): two transactions.
	for _, newcomer := range []model.ServicePortName{webHTTP, npHTTP} {
		be, rej, fake := rejectingBackend(t)
		without := removePorts(t, tbl, newcomer)
		if err := be.Sync(ctx, without, model.Diff{Full: true}); err != nil {
			t.Fatal(err)
		}
		rej.reject = conflicting(fake, a, b)
		wantSkipped(t, be.Sync(ctx, tbl, model.Compare(without, tbl)), newcomer)
		settleAll(t, be, tbl)
		if got, want := tableSummary(fake), freshSummary(t, without); got != want {
			t.Fatalf("after the partial sync of %s: the table differs from one without it:\n%s", newcomer, backendtest.FirstDiff(want, got))
		}
		runs := rej.runs
		wantSkipped(t, be.Sync(ctx, tbl, model.Diff{Full: true}), newcomer)
		if rej.runs != runs+2 {
			t.Errorf("the full sync after it ran %d transactions, want 2", rej.runs-runs)
		}
	}
}

// A partial transaction that fails for a reason no check finds in the Service ports (the
// kernel takes the same objects when checked) fails the sync: no port is blamed.
func TestConfinePartialNotThePorts(t *testing.T) {
	tbl := everyKind(t)
	ctx := context.Background()
	be, rej, _ := rejectingBackend(t)
	without := removePorts(t, tbl, webHTTP)
	if err := be.Sync(ctx, without, model.Diff{Full: true}); err != nil {
		t.Fatal(err)
	}
	failRun := &onceFailingNFT{rejectingNFT: rej}
	be.fams[model.IPv4].nft = failRun
	err := be.Sync(ctx, tbl, model.Compare(without, tbl))
	if err == nil || errors.As(err, new(*backends.SkippedError)) || len(be.fams[model.IPv4].skipped) > 0 {
		t.Fatalf("partial sync with a transient failure returned %v (skipped %v), want a failure and no port blamed", err, be.fams[model.IPv4].skipped)
	}
	if err := be.Sync(ctx, tbl, model.Diff{Full: true}); err != nil {
		t.Fatalf("the full sync after it: %v", err)
	}
}

// onceFailingNFT fails its first Run; checks pass through.
type onceFailingNFT struct {
	*rejectingNFT
	failed bool
}

func (o *onceFailingNFT) Run(ctx context.Context, tx *knftables.Transaction) error {
	if !o.failed {
		o.failed = true
		return errors.New("injected: a transient failure")
	}
	return o.rejectingNFT.Run(ctx, tx)
}

// Ports whose fields cannot be written as nft text are left out with an error naming the
// field, and no transaction fails.
func TestConfineRenderErrors(t *testing.T) {
	tbl := everyKind(t)
	zoned := editPort(t, tbl, webHTTP, func(sp *model.ServicePort) {
		sp.Cluster = []model.Endpoint{remoteEP(sp.Cluster[0], "fe80::1%eth0")}
	})
	badProto := editPort(t, tbl, npHTTP, func(sp *model.ServicePort) { sp.Name.Protocol = model.Protocol(9) })
	for _, tc := range []struct {
		tbl  *model.Table
		port model.ServicePortName
		want string
	}{
		{zoned, webHTTP, `cluster[0].addr: "fe80::1%eth0" is not an IPv4 address`},
		{badProto, spn("apps", "np", "http", model.Protocol(9)), `protocol "Protocol(9)" is not TCP, UDP or SCTP`},
	} {
		for _, full := range []bool{true, false} {
			b, rej, fake := rejectingBackend(t)
			ctx := context.Background()
			d := model.Diff{Full: true}
			if !full {
				if err := b.Sync(ctx, tbl, d); err != nil {
					t.Fatal(err)
				}
				d = model.Compare(tbl, tc.tbl)
			}
			s := wantSkipped(t, b.Sync(ctx, tc.tbl, d), tc.port)
			if !strings.Contains(s.Ports[0].Err.Error(), tc.want) {
				t.Errorf("%s: error %q, want it to say %q", tc.port, s.Ports[0].Err, tc.want)
			}
			if rej.runs != 1+btoi(!full) {
				t.Errorf("%s: %d transactions, want each sync to run one", tc.port, rej.runs)
			}
			settleAll(t, b, tc.tbl)
			if got, want := tableSummary(fake), freshSummary(t, removePorts(t, tc.tbl, tc.port)); got != want {
				t.Fatalf("%s (full=%t): the table differs from one without it:\n%s", tc.port, full, backendtest.FirstDiff(want, got))
			}
		}
	}
}

// A panic while rendering a port is an error of that port.
func TestRenderPortRecovers(t *testing.T) {
	tbl := everyKind(t)
	fs := newFamilyState(knftables.NewFake(knftables.IPv4Family, tableName), newFam(model.IPv4))
	fs.slots = nil // the endpoint-map allocator panics
	sp, _ := tbl.Get(webHTTP)
	plan, err := fs.renderPort(sp, nil)
	if err == nil || plan != nil || !strings.Contains(err.Error(), "rendering its rules failed") {
		t.Fatalf("renderPort = %v, %v; want no plan and the panic as an error", plan, err)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// When the kernel rejects even the table without Service ports, or more than maxSkipped
// ports, no port is blamed: the sync fails as a whole, as before.
func TestConfineNotThePorts(t *testing.T) {
	ctx := context.Background()
	b, rej, _ := rejectingBackend(t)
	tbl := everyKind(t)
	rej.reject = touching("add table")
	if err := b.Sync(ctx, tbl, model.Diff{Full: true}); err == nil || errors.As(err, new(*backends.SkippedError)) {
		t.Fatalf("sync with the fixed part rejected returned %v, want a failure", err)
	}
	if len(b.fams[model.IPv4].skipped) > 0 {
		t.Errorf("ports blamed for the fixed part: %v", b.fams[model.IPv4].skipped)
	}

	many := benchTable(3*maxSkipped, 2)
	b, rej, _ = rejectingBackend(t)
	rej.reject = touching("bench/svc-")
	err := b.Sync(ctx, many, model.Diff{Full: true})
	if err == nil || !strings.Contains(err.Error(), errTooMany.Error()) {
		t.Fatalf("sync with every port rejected returned %v, want a failure saying %q", err, errTooMany)
	}
	// The search stops at maxSkipped ports rather than checking every one.
	if rej.checks > 3*maxSkipped {
		t.Errorf("%d checks before giving up, want at most %d", rej.checks, 3*maxSkipped)
	}
	t.Logf("%d checks", rej.checks)
}

// The search costs O(k log n) checks for k rejected ports among n, not one per port.
func TestConfineCheckCount(t *testing.T) {
	const n = 1024
	tbl := benchTable(n, 2)
	b, rej, _ := rejectingBackend(t)
	bad := model.ServicePortName{Namespace: "bench", Name: "svc-00700", Protocol: model.TCP}
	rej.reject = touching(portSuffix(bad) + " ")
	wantSkipped(t, b.Sync(context.Background(), tbl, model.Diff{Full: true}), bad)
	if rej.checks > 2*11+4 {
		t.Errorf("%d checks to find 1 port among %d, want about 2 log2(n)", rej.checks, n)
	}
	t.Logf("%d checks, %d transactions", rej.checks, rej.runs)
}

// The ServicePortName text of a skipped port reaches the proxier unchanged, whatever it
// holds (the error is for logs, the name for the proxier).
func TestSkippedErrorText(t *testing.T) {
	e := &backends.SkippedError{Family: model.IPv6, Ports: []backends.SkippedPort{
		{Name: spn("ns", "a", "http", model.TCP), Err: errors.New("boom")},
		{Name: spn("ns", "b", "", model.UDP), Err: errors.New("bang")},
	}}
	want := "IPv6: 2 Service port(s) not programmed, the others are: Service port ns/a:http/TCP: boom; Service port ns/b/UDP: bang"
	if e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
	if !errors.Is(e, e.Ports[1].Err) {
		t.Error("the port errors are not in the chain")
	}
	if _, ok := backends.AsSkipped(fmt.Errorf("wrapped: %w", e)); !ok {
		t.Error("AsSkipped does not find a wrapped SkippedError")
	}
}
