package bench

import (
	"bytes"
	"image/png"
	"strings"
	"testing"
)

// sampleResults is a small run: nftables at 10,000 Services for both proxies, with
// traffic changes and memory with children, and the endpoint-heavy scenario.
func sampleResults() *Results {
	lat := func(p50, p99 float64) Latency { return Latency{Samples: 10, P50: p50, P99: p99, Max: p99} }
	traffic := func(p50, p99 float64) *TrafficChanges {
		return &TrafficChanges{One: &TrafficLatency{Traffic: lat(p50, p99)}, All: &TrafficLatency{Traffic: lat(p50/2, p99/2)}}
	}
	po := &ProxyRun{Proxy: pPortico, N: 10000, Mode: ModeNFTables, Cold: &Cold{KernelS: 3.9, FastestS: 3.9},
		Change: &Latency{Samples: 10, P50: 14, P99: 30}, Traffic: traffic(22, 160), PeakWithChildrenKiB: 136 * 1000}
	kp := &ProxyRun{Proxy: pKP, N: 10000, Mode: ModeNFTables, Cold: &Cold{KernelS: 11.6, FastestS: 11.6},
		Change: &Latency{Samples: 10, P50: 300, P99: 380}, Traffic: traffic(400, 600), PeakWithChildrenKiB: 800 * 1000}
	heavy := &HeavyRun{Services: 100, Endpoints: 1000, RollPods: 1000, RollRate: 5, Proxies: []*ProxyRun{
		{Proxy: pPortico, Cold: &Cold{KernelS: 1.9}, Rolling: &Rolling{Pods: 1000, Rate: 5, Seconds: 200, Achieved: 5,
			Ready: lat(540, 1040), NewInRules: 1000, OldInRules: 0},
			Phases: []*Phase{{Name: "changes", Proc: ProcSample{UserS: 1}}, {Name: "rolling-update", Proc: ProcSample{UserS: 5}}}},
	}}
	return &Results{Settings: Settings{Endpoints: 10, MinSyncPeriod: "1s", HeavyChangeSamples: 30},
		Scales: []*ScaleRun{{N: 10000, Proxies: []*ProxyRun{po, kp}}}, Heavy: heavy}
}

// TestUserTargets: the 10,000-Service checks of what a user sees, met and missed.
func TestUserTargets(t *testing.T) {
	ts := userTargets(10000, sampleResults().Scales[0].Proxy(pPortico))
	got := map[string]bool{}
	for _, tg := range ts {
		got[tg.what] = tg.met
	}
	want := map[string]bool{
		"cold sync (nftables)":                           true,
		"change → traffic p50, one endpoint (nftables)":  true,
		"change → traffic p99, one endpoint (nftables)":  false, // 160 > 150
		"change → traffic p50, all endpoints (nftables)": true,
		"change → traffic p99, all endpoints (nftables)": true,
		"peak RSS with children (nftables)":              false, // 136 MB > 100
	}
	for what, met := range want {
		if m, ok := got[what]; !ok || m != met {
			t.Errorf("%s: met=%v (present %v), want met=%v", what, m, ok, met)
		}
	}
	if len(userTargets(5000, sampleResults().Scales[0].Proxy(pPortico))) != 0 {
		t.Error("checks at N = 5,000, which has no user-side targets")
	}

	// The same run in iptables mode has the targets of its own issue (p99 ≤ 400 ms,
	// ≤ 200 MB with children).
	ipt := *sampleResults().Scales[0].Proxy(pPortico)
	ipt.Mode = ModeIPTablesNFT
	got = map[string]bool{}
	for _, tg := range userTargets(10000, &ipt) {
		got[tg.what] = tg.met
	}
	for _, what := range []string{"change → traffic p99, one endpoint (iptables-nft)", "peak RSS with children (iptables-nft)"} {
		if met, ok := got[what]; !ok || !met {
			t.Errorf("%s: met=%v (present %v), want met under the iptables targets", what, met, ok)
		}
	}
}

// TestReportSections: the page holds the endpoint-heavy section with its rolling update,
// the user-side targets and both plots, and the plots draw.
func TestReportSections(t *testing.T) {
	r := sampleResults()
	page := Report(r, "p.png", "m.png")
	for _, s := range []string{
		"## Endpoint-heavy Services: 100 × 1,000 endpoints",
		"| **Rolling update**: new pod ready → kernel, p50 | 540 ms |",
		"1000 of 1000 new pods, 0 of 1000 old ones",
		"|   CPU during the rolling update (proxy + waited-for children) | 4.00 s |",
		"## Targets as a user sees them",
		"![peak memory, portico and kube-proxy, with and without their children](m.png)",
	} {
		if !strings.Contains(page, s) {
			t.Errorf("the page lacks %q", s)
		}
	}
	for name, plot := range map[string]func(*Results, *bytes.Buffer) error{
		"latency": func(r *Results, b *bytes.Buffer) error { return Plot(r, b) },
		"memory":  func(r *Results, b *bytes.Buffer) error { return PlotMemory(r, b) },
	} {
		var b bytes.Buffer
		if err := plot(r, &b); err != nil {
			t.Fatalf("%s plot: %v", name, err)
		}
		if _, err := png.Decode(&b); err != nil {
			t.Errorf("%s plot is not a PNG: %v", name, err)
		}
	}
}
