package nftables

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/model"
	"github.com/portico-dev/portico/proxier/metrics"
)

// failingNFT wraps a knftables.Interface; while fail is set, the next Run returns it
// without applying anything (and clears it).
type failingNFT struct {
	knftables.Interface
	fail error
}

func (f *failingNFT) Run(ctx context.Context, tx *knftables.Transaction) error {
	if err := f.fail; err != nil {
		f.fail = nil
		return err
	}
	return f.Interface.Run(ctx, tx)
}

// metricsBackend returns a backend over two knftables.Fake tables, wrapped so that a Run
// can be made to fail, with its metrics in reg.
func metricsBackend(t *testing.T, reg prometheus.Registerer) (*Backend, map[model.Family]*failingNFT, map[model.Family]*knftables.Fake) {
	t.Helper()
	fakes := map[model.Family]*knftables.Fake{
		model.IPv4: knftables.NewFake(knftables.IPv4Family, tableName),
		model.IPv6: knftables.NewFake(knftables.IPv6Family, tableName),
	}
	nfts := map[model.Family]*failingNFT{model.IPv4: {Interface: fakes[model.IPv4]}, model.IPv6: {Interface: fakes[model.IPv6]}}
	b := New(backends.Options{MasqueradeBit: 14, Families: []model.Family{model.IPv4, model.IPv6}, Metrics: reg},
		WithInterfaces(
			func(f model.Family) (knftables.Interface, error) { return nfts[f], nil },
			func(_ context.Context, f model.Family) (string, error) { return fakes[f].Dump(), nil },
		))
	if b.metricsErr != nil {
		t.Fatalf("registering the metrics: %v", b.metricsErr)
	}
	return b, nfts, fakes
}

// fakeCounts counts the chains, sets and maps, and elements the fake's table holds.
func fakeCounts(fake *knftables.Fake) objectCounts {
	var c objectCounts
	if fake.Table == nil {
		return c
	}
	c.chains = len(fake.Table.Chains)
	c.sets = len(fake.Table.Sets) + len(fake.Table.Maps)
	for _, s := range fake.Table.Sets {
		c.elements += len(s.Elements)
	}
	for _, m := range fake.Table.Maps {
		c.elements += len(m.Elements)
	}
	return c
}

// metricValue returns the value of metric name for family f in g, and whether it is there.
func metricValue(t *testing.T, g prometheus.Gatherer, name string, f model.Family) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gathering: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() != labelFamily || l.GetValue() != f.String() {
					continue
				}
				if m.GetCounter() != nil {
					return m.GetCounter().GetValue(), true
				}
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

// checkGauges checks that the gauges of family f count what the fake holds.
func checkGauges(t *testing.T, g prometheus.Gatherer, f model.Family, fake *knftables.Fake, when string) {
	t.Helper()
	want := fakeCounts(fake)
	if want.chains == 0 {
		t.Fatalf("%s: test bug: the %s fake holds no table", when, f)
	}
	for name, n := range map[string]int{MetricChains: want.chains, MetricSets: want.sets, MetricElements: want.elements} {
		got, ok := metricValue(t, g, name, f)
		if !ok || got != float64(n) {
			t.Errorf("%s: %s{ip_family=%q} = %v (present %v), want %d as in the fake", when, name, f, got, ok, n)
		}
	}
}

// checkFailures checks the failure counters of family f (0 means absent or 0).
func checkFailures(t *testing.T, g prometheus.Gatherer, f model.Family, sync, cleanup float64, when string) {
	t.Helper()
	for name, want := range map[string]float64{MetricSyncFailures: sync, MetricCleanupFailures: cleanup} {
		if got, _ := metricValue(t, g, name, f); got != want {
			t.Errorf("%s: %s{ip_family=%q} = %v, want %v", when, name, f, got, want)
		}
	}
}

// without returns tbl without every other of its Service ports, starting at the first
// (from 0) or the second (from 1).
func without(tbl *model.Table, from int) *model.Table {
	var drop []model.ServicePortName
	for i, n := range tbl.Names() {
		if i%2 == from {
			drop = append(drop, n)
		}
	}
	return tbl.Update(tbl.Node(), nil, drop)
}

// TestMetricsFailuresAndGauges drives a backend through failing and successful syncs,
// full and partial, and checks its counters, and that its gauges count what the kernel
// (here the fake) holds after each of them, stale objects awaiting deletion included.
func TestMetricsFailuresAndGauges(t *testing.T) {
	reg := prometheus.NewRegistry()
	b, nfts, fakes := metricsBackend(t, reg)
	ctx := context.Background()
	state := scenario(t, nil, fixtures...)
	syncAll(t, b, nil, state)
	for _, f := range []model.Family{model.IPv4, model.IPv6} {
		checkGauges(t, reg, f, fakes[f], "first sync")
		checkFailures(t, reg, f, 0, 0, "first sync")
	}

	v4, fake := state.Table(model.IPv4), fakes[model.IPv4]
	sync := func(when string, tbl *model.Table, d model.Diff, fail bool) {
		t.Helper()
		injected := errors.New("injected failure")
		if fail {
			nfts[model.IPv4].fail = injected
		}
		err := b.Sync(ctx, tbl, d)
		if fail && !errors.Is(err, injected) {
			t.Fatalf("%s: sync = %v, want the injected failure", when, err)
		}
		if !fail && err != nil {
			t.Fatalf("%s: sync: %v", when, err)
		}
		// After a failure the kernel, and so the gauges, keep the last successful state.
		checkGauges(t, reg, model.IPv4, fake, when)
	}

	half := without(v4, 0)
	sync("partial removal, failing", half, model.Compare(v4, half), true)
	checkFailures(t, reg, model.IPv4, 1, 0, "failing partial sync")
	full := model.Compare(v4, half)
	full.Full = true
	sync("full rewrite after the failure", half, full, false)
	if !b.PendingWork(model.IPv4) {
		t.Fatal("test bug: the full rewrite left nothing stale")
	}
	sync("partial re-addition", v4, model.Compare(half, v4), false)
	other := without(v4, 1)
	sync("partial removal", other, model.Compare(v4, other), false)
	if !b.PendingWork(model.IPv4) {
		t.Fatal("test bug: the partial removal left nothing stale")
	}
	sync("deletion of the stale objects, failing", other, model.Diff{}, true)
	checkFailures(t, reg, model.IPv4, 1, 1, "failing deletion-only transaction")
	sync("full rewrite after the cleanup failure", other, model.Diff{Full: true}, false)
	sync("deletion of the stale objects", other, model.Diff{}, false)
	if b.PendingWork(model.IPv4) {
		t.Error("stale objects left after their deletion")
	}
	sync("an empty transaction, failing", other, model.Diff{}, true)
	checkFailures(t, reg, model.IPv4, 2, 1, "failing empty transaction")
	// IPv6 was not touched again.
	checkGauges(t, reg, model.IPv6, fakes[model.IPv6], "the end")
	checkFailures(t, reg, model.IPv6, 0, 0, "the end")

	if err := b.Cleanup(ctx); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
	for _, f := range []model.Family{model.IPv4, model.IPv6} {
		for _, name := range []string{MetricChains, MetricSets, MetricElements} {
			if got, _ := metricValue(t, reg, name, f); got != 0 {
				t.Errorf("after Cleanup %s{ip_family=%q} = %v, want 0", name, f, got)
			}
		}
	}
}

// TestMetricsWithoutRegistry checks that a backend without a registry syncs, fails and
// cleans up without recording anything (and without panicking).
func TestMetricsWithoutRegistry(t *testing.T) {
	b, nfts, _ := metricsBackend(t, nil)
	if b.metrics != nil {
		t.Fatal("metrics created without a registry")
	}
	tbl := scenario(t, nil, fixtures...).Table(model.IPv4)
	nfts[model.IPv4].fail = errors.New("injected failure")
	if err := b.Sync(context.Background(), tbl, model.Compare(nil, tbl)); err == nil {
		t.Fatal("sync with an injected failure succeeded")
	}
	if err := b.Sync(context.Background(), tbl, model.Compare(nil, tbl)); err != nil {
		t.Fatalf("sync: %v", err)
	}
	if err := b.Cleanup(context.Background()); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
}

// TestMetricsOptionsRegistration checks how Factory registers the metrics: two backends
// on one registry share them, and a registry holding one of the names as another kind of
// metric makes Factory fail.
func TestMetricsOptionsRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	for i := range 2 {
		if _, err := Factory(backends.Options{Metrics: reg}); err != nil {
			t.Fatalf("backend %d: %v", i+1, err)
		}
	}
	a, b := New(backends.Options{Metrics: reg}), New(backends.Options{Metrics: reg})
	a.metrics.failed(model.IPv4, false)
	b.metrics.failed(model.IPv4, false)
	if got, _ := metricValue(t, reg, MetricSyncFailures, model.IPv4); got != 2 {
		t.Errorf("two backends on one registry counted %v failures, want 2", got)
	}

	taken := prometheus.NewRegistry()
	taken.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricSyncFailures, Help: "Something else."}))
	_, err := Factory(backends.Options{Metrics: taken})
	if err == nil || !strings.Contains(err.Error(), MetricSyncFailures) {
		t.Errorf("Factory on a registry holding %s as a gauge = %v, want an error naming it", MetricSyncFailures, err)
	}
}

// oldFailureScrape is what /metrics served for the nftables failure counters when
// proxier/metrics still counted them itself (commit 72a5229), after IncSyncError("nftables",
// IPv4) once, IncSyncError("nftables", IPv6) twice and IncCleanupFailure(IPv4) once.
const oldFailureScrape = `# HELP kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total Failed removals of stale nftables objects.
# TYPE kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total counter
kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total{ip_family="IPv4"} 1
# HELP kubeproxy_sync_proxy_rules_nftables_sync_failures_total nftables transactions that the kernel rejected.
# TYPE kubeproxy_sync_proxy_rules_nftables_sync_failures_total counter
kubeproxy_sync_proxy_rules_nftables_sync_failures_total{ip_family="IPv4"} 1
kubeproxy_sync_proxy_rules_nftables_sync_failures_total{ip_family="IPv6"} 2
`

// TestMetricsScrapeUnchanged checks that the failure counters, now registered by the
// backend in the proxier's registry, scrape exactly as they did when proxier/metrics owned
// them: same names, types, help and labels.
func TestMetricsScrapeUnchanged(t *testing.T) {
	m := metrics.New()
	b, nfts, _ := metricsBackend(t, m.Registerer())
	state := scenario(t, nil, fixtures...)
	v4, v6 := state.Table(model.IPv4), state.Table(model.IPv6)
	ctx := context.Background()
	fail := func(tbl *model.Table, d model.Diff) {
		t.Helper()
		nfts[tbl.Family()].fail = errors.New("injected failure")
		if err := b.Sync(ctx, tbl, d); err == nil {
			t.Fatal("sync with an injected failure succeeded")
		}
	}
	fail(v4, model.Compare(nil, v4))
	fail(v6, model.Compare(nil, v6))
	fail(v6, model.Compare(nil, v6))
	syncAll(t, b, nil, state)
	half := without(v4, 0)
	if err := b.Sync(ctx, half, model.Compare(v4, half)); err != nil {
		t.Fatal(err)
	}
	fail(half, model.Diff{}) // the deletion of what the last sync emptied

	srv := httptest.NewServer(m.Handler(Mode, nil))
	defer srv.Close()
	res, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	for line := range strings.Lines(string(body)) {
		if strings.Contains(line, "kubeproxy_sync_proxy_rules_nftables_") {
			got.WriteString(line)
		}
	}
	if got.String() != oldFailureScrape {
		t.Errorf("nftables failure counters scrape as\n%s\nwant, as before the backend owned them,\n%s", got.String(), oldFailureScrape)
	}
	for _, name := range []string{MetricChains, MetricSets, MetricElements} {
		if !strings.Contains(string(body), "\n"+name+`{ip_family="IPv4"} `) {
			t.Errorf("/metrics lacks %s for IPv4", name)
		}
	}
}
