//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/portico-dev/portico/e2e/harness/portico"
	"github.com/portico-dev/portico/e2e/harness/traffic"
)

// repairSyncPeriod is the syncPeriod portico runs with in TestRulesRepaired: rules
// removed behind its back must be back within it (the check runs every half of it).
const repairSyncPeriod = 4 * time.Second

// Probing while the rules are being repaired: one new connection from each source every
// repairProbeEvery, each ending within repairProbeTimeout; once the Service answers again,
// repairSteady more rounds that must all be answered.
const (
	repairProbeEvery   = 100 * time.Millisecond
	repairProbeTimeout = 300 * time.Millisecond
	repairSteady       = 10
)

// repairMetric is the counter of repairs, by family.
const repairMetric = "portico_rules_repairs_total"

// TestRulesRepaired removes portico's rules from node-a's kernel the ways an
// administrator or a firewall reload does (`nft flush ruleset`, `nft delete table ip
// portico`, `nft flush table ip portico`) while long-lived connections run through a
// Service and new connections are opened all along. Each time the rules must be back
// within syncPeriod, new connections may fail only until then, the repair is counted per
// family and logged, /healthz is healthy again, the rules are the ones of before (endpoint
// slots aside), and the established connections are answered again.
func TestRulesRepaired(t *testing.T) {
	if mode() != "nftables" {
		t.Fatalf("TestRulesRepaired removes the nftables table of mode nftables; mode %s needs a removal scenario of its own here", mode())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	restoreDefaultConfig(t)
	section := maps.Clone(harnessSection(mode()))
	section["syncPeriod"] = repairSyncPeriod.String()
	restartPortico(ctx, t, map[string]any{mode(): section})

	startEcho(t, a1)
	svcs := apply(ctx, t, Scenario{Name: "Repair", Services: []ServiceSetup{repairService("repair")}})
	conns := openLongLived(ctx, t, svcs, "repair")
	before := slotFree(ruleItems(dumpRules(ctx, t, "before any removal"), false))
	for _, tc := range []struct {
		args     []string
		families []string
	}{
		{[]string{"flush", "ruleset"}, []string{"IPv4", "IPv6"}},
		{[]string{"delete", "table", "ip", "portico"}, []string{"IPv4"}},
		{[]string{"flush", "table", "ip", "portico"}, []string{"IPv4"}},
	} {
		name := "nft " + strings.Join(tc.args, " ")
		t.Run(name, func(t *testing.T) {
			repairs, logged := scrapeRepairs(ctx, t), repairLogs(t)
			removed := nftInNodeA(ctx, t, tc.args...)
			checkRepairWindow(t, name, removed, probeUntilRepaired(ctx, t, svcs, removed))
			checkRepairReported(ctx, t, repairs, logged, tc.families)
			checkLongLived(t, conns, "after the repair of "+name)
			if diff := itemDiff(before, slotFree(ruleItems(dumpRules(ctx, t, "after the repair"), false))); diff != "" {
				t.Errorf("after the repair of %s the rules differ from those before (endpoint-map slots left out):\n%s", name, diff)
			}
		})
	}
}

// repairService is a NodePort Service with port 80 ("http", the pods' traffic servers)
// and port 81 ("echo", their echo servers, for long-lived connections), served by pod-a1.
func repairService(name string) ServiceSetup {
	echo := corev1.ServicePort{Name: "echo", Port: 81, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(echoPort)}
	return ServiceSetup{
		Svc:         service(name, nodePort(), ports(tcp("http", 80), echo)),
		Backends:    ready(a1),
		TargetPorts: map[string]int32{"echo": echoPort},
	}
}

// dumpRules returns portico's tables as node-a's kernel holds them.
func dumpRules(ctx context.Context, t *testing.T, when string) string {
	t.Helper()
	out, err := suite.Portico.Command(ctx, "dump", "--no-conntrack")
	if err != nil {
		t.Fatalf("%s: %v", when, err)
	}
	return out
}

// nftInNodeA runs nft with args inside node-a's namespace (never the machine's own) and
// returns when it did.
func nftInNodeA(ctx context.Context, t *testing.T, args ...string) time.Time {
	t.Helper()
	at := time.Now()
	if out, err := suite.Topo.Exec(ctx, nodeA, append([]string{"nft"}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("nft %s in %s: %v: %s", strings.Join(args, " "), nodeA, err, out)
	}
	return at
}

// repairProbe is one new connection opened while the rules were being repaired.
type repairProbe struct {
	from    string
	start   time.Time
	outcome traffic.Outcome
}

// repairFlows are the new connections of the probing loop: a pod to the ClusterIP, the
// client to the NodePort (both masqueraded or not, the rules decide; only the answer is
// checked here).
func repairFlows() []Flow {
	return []Flow{
		{Name: "pod to ClusterIP", From: a2, To: "repair", Port: 80},
		{Name: "client to NodePort", From: client, To: "repair", Via: viaNodePort},
	}
}

// probeUntilRepaired opens new connections through the Service from removed on, until
// repairSteady rounds in a row were all answered or syncPeriod and a few seconds have
// passed. It returns every probe.
func probeUntilRepaired(ctx context.Context, t *testing.T, svcs map[string]*corev1.Service, removed time.Time) []repairProbe {
	t.Helper()
	flows := repairFlows()
	var out []repairProbe
	deadline := removed.Add(repairSyncPeriod + 3*time.Second)
	steady := 0
	for steady < repairSteady && time.Now().Before(deadline) {
		round := time.Now()
		allOK := true
		for _, f := range flows {
			dst, err := resolve(svcs, f)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			r := traffic.Probe(ctx, suite.Topo, f.From, source(t, f, dst), dst, traffic.TCP, repairProbeTimeout)
			out = append(out, repairProbe{from: f.Name, start: start, outcome: r.Outcome})
			allOK = allOK && r.Outcome == traffic.OK
		}
		if allOK {
			steady++
		} else {
			steady = 0
		}
		time.Sleep(time.Until(round.Add(repairProbeEvery)))
	}
	return out
}

// checkRepairWindow checks the probes: new connections fail only inside the window from
// the removal to the repair, which ends within syncPeriod; the Service answered every
// probe after its last failure, for repairSteady rounds.
func checkRepairWindow(t *testing.T, name string, removed time.Time, probes []repairProbe) {
	t.Helper()
	lastFail := -1
	for i, p := range probes {
		if p.outcome != traffic.OK {
			lastFail = i
		}
	}
	if lastFail == len(probes)-1 {
		t.Fatalf("after %s new connections still fail %v later (syncPeriod %v):\n%s",
			name, time.Since(removed).Round(time.Millisecond), repairSyncPeriod, describeProbes(removed, probes))
	}
	back := probes[lastFail+1].start.Sub(removed)
	failed := 0
	for _, p := range probes[:lastFail+1] {
		if p.outcome != traffic.OK {
			failed++
		}
	}
	t.Logf("%s: new connections answered again %v after the removal (%d of %d probes failed before)",
		name, back.Round(time.Millisecond), failed, lastFail+1)
	if back > repairSyncPeriod {
		t.Errorf("after %s new connections failed for %v, longer than syncPeriod %v:\n%s",
			name, back.Round(time.Millisecond), repairSyncPeriod, describeProbes(removed, probes))
	}
	if len(probes)-lastFail-1 < repairSteady*len(repairFlows()) {
		t.Errorf("after %s the Service did not answer %d rounds in a row:\n%s", name, repairSteady, describeProbes(removed, probes))
	}
}

// describeProbes lists the probes with their start relative to the removal.
func describeProbes(removed time.Time, probes []repairProbe) string {
	var b strings.Builder
	for _, p := range probes {
		fmt.Fprintf(&b, "  +%v %s: %s\n", p.start.Sub(removed).Round(time.Millisecond), p.from, p.outcome)
	}
	return b.String()
}

// scrapeRepairs returns portico's repair counter of each family.
func scrapeRepairs(ctx context.Context, t *testing.T) map[string]float64 {
	t.Helper()
	m, err := suite.Portico.Scrape(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range []string{"IPv4", "IPv6"} {
		out[f] = m[repairMetric+"{ip_family="+f+"}"]
	}
	return out
}

// repairLogLine is what portico logs when it finds rules missing.
const repairLogLine = "The rules are missing from the kernel"

// repairLogs counts the repairs logged in portico's log file (appended to by every start;
// the harness names it portico.log in the suite's directory).
func repairLogs(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(suite.Dir, "portico.log"))
	if err != nil {
		t.Fatalf("reading portico's log: %v", err)
	}
	return strings.Count(string(b), repairLogLine)
}

// checkRepairReported checks that the repair of exactly the families in repaired was
// counted (once each, since before), that it was logged once per family (since logged
// lines), and that /healthz is healthy.
func checkRepairReported(ctx context.Context, t *testing.T, before map[string]float64, logged int, repaired []string) {
	t.Helper()
	after := scrapeRepairs(ctx, t)
	for f, n := range after {
		want := before[f]
		if slices.Contains(repaired, f) {
			want++
		}
		if n != want {
			t.Errorf("%s{ip_family=%s} = %v, want %v (repaired families: %v)", repairMetric, f, n, want, repaired)
		}
	}
	if n := repairLogs(t) - logged; n != len(repaired) {
		t.Errorf("%q logged %d times, want once for each of %v; log tail:\n%s", repairLogLine, n, repaired, suite.Portico.LogTail(30))
	}
	code, body, err := suite.Portico.Get(ctx, portico.HealthzPort, "/healthz")
	if err != nil || code != http.StatusOK {
		t.Errorf("/healthz after the repair: %d %s %v, want 200", code, body, err)
	}
}
