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

	"github.com/portico-dev/portico/e2e/harness/env"
	"github.com/portico-dev/portico/e2e/harness/portico"
	"github.com/portico-dev/portico/e2e/harness/rulesdump"
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
// administrator or a firewall reload does (rulesRemovals: nft commands in nftables mode,
// iptables and ip6tables commands of the variant in use in iptables mode) while
// long-lived connections run through a Service and new connections are opened all
// along. Each time the rules must be back within syncPeriod, new connections may fail
// only until then, the repair is counted per family (within syncPeriod) and logged,
// /healthz is healthy again, the rules are the ones of before (endpoint slots aside),
// and the established connections are answered again.
func TestRulesRepaired(t *testing.T) {
	removals := rulesRemovals(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	restoreDefaultConfig(t)
	section := maps.Clone(harnessSection(mode()))
	section["syncPeriod"] = repairSyncPeriod.String()
	restartPortico(ctx, t, map[string]any{mode(): section})

	startEcho(t, a1)
	svcs := apply(ctx, t, Scenario{Name: "Repair", Services: []ServiceSetup{repairService("repair")}})
	conns := openLongLived(ctx, t, svcs, "repair")
	before := slotFree(ruleItems(dumpRules(ctx, t, "before any removal"), nil))
	for _, r := range removals {
		t.Run(r.name, func(t *testing.T) {
			repairs, logged := scrapeRepairs(ctx, t), repairLogs(t)
			removed := r.remove(ctx, t)
			if r.after != nil {
				t.Cleanup(func() { r.after(ctx, t) })
			}
			watch := watchRepairs(ctx, removed, repairs, r.families)
			checkRepairWindow(t, r.name, removed, probeUntilRepaired(ctx, t, svcs, removed))
			watch.check(t, r.name, r.families)
			checkRepairReported(ctx, t, repairs, logged, r.families)
			checkLongLived(t, conns, "after the repair of "+r.name)
			if diff := itemDiff(before, slotFree(ruleItems(dumpRules(ctx, t, "after the repair"), nil))); diff != "" {
				t.Errorf("after the repair of %s the rules differ from those before (endpoint-map slots left out):\n%s", r.name, diff)
			}
		})
	}
}

// rulesRemoval is one way of removing portico's rules behind its back.
type rulesRemoval struct {
	name string
	// remove removes the rules inside node-a and returns when it started.
	remove func(ctx context.Context, t *testing.T) time.Time
	// families are the IP families whose rules it removes: each must be repaired once.
	families []string
	// after, if set, restores what the removal took from others (kubelet's chains) when
	// the subtest ends.
	after func(ctx context.Context, t *testing.T)
}

// rulesRemovals returns the removals of the mode under test.
func rulesRemovals(t *testing.T) []rulesRemoval {
	t.Helper()
	switch mode() {
	case "nftables":
		return nftRemovals()
	case "iptables":
		return iptablesRemovals(t)
	}
	t.Fatalf("TestRulesRepaired has no removal scenario for mode %s", mode())
	return nil
}

// nftRemovals: the whole ruleset, portico's IPv4 table, the IPv4 table's content.
func nftRemovals() []rulesRemoval {
	var out []rulesRemoval
	for _, tc := range []struct {
		args     []string
		families []string
	}{
		{[]string{"flush", "ruleset"}, []string{"IPv4", "IPv6"}},
		{[]string{"delete", "table", "ip", "portico"}, []string{"IPv4"}},
		{[]string{"flush", "table", "ip", "portico"}, []string{"IPv4"}},
	} {
		out = append(out, rulesRemoval{
			name:     "nft " + strings.Join(tc.args, " "),
			remove:   func(ctx context.Context, t *testing.T) time.Time { return inNodeA(ctx, t, "nft", tc.args...) },
			families: tc.families,
		})
	}
	return out
}

// iptablesRemovals, with the commands of the iptables variant portico uses: a flush of
// each table portico writes to in IPv4, of the nat table in IPv6, and a firewall reload
// that empties every table of both families.
func iptablesRemovals(t *testing.T) []rulesRemoval {
	t.Helper()
	v := suite.Portico.IPTablesVariant()
	if v == "" {
		t.Fatalf("portico's log does not say which iptables variant it uses: no iptables commands to remove its rules with")
	}
	cmds := env.IPTablesCommands(v)
	var out []rulesRemoval
	for _, tc := range []struct {
		cmd, table, family string
	}{
		{cmds[0], "nat", "IPv4"},
		{cmds[0], "filter", "IPv4"},
		{cmds[0], "mangle", "IPv4"},
		{cmds[1], "nat", "IPv6"},
	} {
		out = append(out, rulesRemoval{
			name: tc.cmd + " -t " + tc.table + " -F",
			remove: func(ctx context.Context, t *testing.T) time.Time {
				return inNodeA(ctx, t, tc.cmd, "-w", "-t", tc.table, "-F")
			},
			families: []string{tc.family},
		})
	}
	return append(out, rulesRemoval{
		name:     "firewall reload (iptables-" + v + "-restore of empty tables, both families)",
		remove:   func(ctx context.Context, t *testing.T) time.Time { return firewallReload(ctx, t, cmds) },
		families: []string{"IPv4", "IPv6"},
		after: func(ctx context.Context, t *testing.T) {
			// The reload took kubelet's hint chain too; kubelet puts it back.
			if err := suite.CreateKubeletHint(ctx); err != nil {
				t.Fatal(err)
			}
		},
	})
}

// firewallReload empties every table of both families, as a firewall reload to an
// empty configuration does: for each family, one <cmd>-restore of every table that
// <cmd>-save shows, with its built-in chains and their policies and nothing else, which
// flushes every chain and deletes the chains that are not built in (-F, then -X, of each
// table, one commit per table, so that portico never sees a table flushed but not yet
// emptied of its chains). It returns when the first restore started.
func firewallReload(ctx context.Context, t *testing.T, cmds [2]string) time.Time {
	t.Helper()
	inputs := make([]string, len(cmds))
	for i, cmd := range cmds {
		save, err := suite.Topo.Exec(ctx, nodeA, cmd+"-save").Output()
		if err != nil {
			t.Fatalf("%s-save in %s: %v", cmd, nodeA, err)
		}
		inputs[i] = rulesdump.EmptyTables(string(save))
	}
	var at time.Time
	for i, cmd := range cmds {
		c := suite.Topo.Exec(ctx, nodeA, cmd+"-restore", "-w", "5")
		c.Stdin = strings.NewReader(inputs[i])
		if i == 0 {
			at = time.Now()
		}
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("%s-restore in %s: %v: %s\ninput:\n%s", cmd, nodeA, err, out, inputs[i])
		}
	}
	return at
}

// repairService is a dual-stack NodePort Service with port 80 ("http", the pods' traffic
// servers) and port 81 ("echo", their echo servers, for long-lived connections), served
// by pod-a1.
func repairService(name string) ServiceSetup {
	echo := corev1.ServicePort{Name: "echo", Port: 81, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(echoPort)}
	return ServiceSetup{
		Svc:         service(name, nodePort(), dualStack(), ports(tcp("http", 80), echo)),
		Backends:    ready(a1),
		TargetPorts: map[string]int32{"echo": echoPort},
	}
}

// inNodeA runs a command inside node-a's namespace (never the machine's own) and returns
// when it started.
func inNodeA(ctx context.Context, t *testing.T, cmd string, args ...string) time.Time {
	t.Helper()
	at := time.Now()
	if out, err := suite.Topo.Exec(ctx, nodeA, append([]string{cmd}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s in %s: %v: %s", cmd, strings.Join(args, " "), nodeA, err, out)
	}
	return at
}

// repairProbe is one new connection opened while the rules were being repaired.
type repairProbe struct {
	from    string
	start   time.Time
	outcome traffic.Outcome
	// ok: the outcome is what the rules make it (wantOutcome).
	ok bool
}

// repairFlows are the new connections of the probing loop: a pod to the ClusterIP of
// each family, the client to the NodePort (masqueraded or not, the rules decide; only
// the answer is checked here), and a pod to a port the ClusterIP does not serve, which
// only portico's rules refuse.
func repairFlows() []Flow {
	return []Flow{
		{Name: "pod to ClusterIP", From: a2, To: "repair", Port: 80},
		{Name: "pod to IPv6 ClusterIP", From: a2, To: "repair", Port: 80, Family: "IPv6"},
		{Name: "client to NodePort", From: client, To: "repair", Via: viaNodePort},
		{Name: "pod to an unserved port", From: a2, To: "repair", Port: 82, Expect: refused},
	}
}

// wantOutcome is what a probe of a repair flow must see while the rules are there.
func wantOutcome(f Flow) traffic.Outcome {
	if f.Expect.Outcome == refused.Outcome {
		return traffic.Refused
	}
	return traffic.OK
}

// probeUntilRepaired opens new connections through the Service from removed on, until
// repairSteady rounds in a row all saw what the rules make them see, or syncPeriod and a
// few seconds have passed. It returns every probe.
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
			ok := r.Outcome == wantOutcome(f)
			out = append(out, repairProbe{from: f.Name, start: start, outcome: r.Outcome, ok: ok})
			allOK = allOK && ok
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

// checkRepairWindow checks the probes: new connections fail (are not answered, or not
// refused on the unserved port) only inside the window from the removal to the repair,
// which ends within syncPeriod; every probe after the last failure, repairSteady rounds
// of them, saw what the rules make it see.
func checkRepairWindow(t *testing.T, name string, removed time.Time, probes []repairProbe) {
	t.Helper()
	lastFail := -1
	for i, p := range probes {
		if !p.ok {
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
		if !p.ok {
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
		wrong := ""
		if !p.ok {
			wrong = " (wrong)"
		}
		fmt.Fprintf(&b, "  +%v %s: %s%s\n", p.start.Sub(removed).Round(time.Millisecond), p.from, p.outcome, wrong)
	}
	return b.String()
}

// repairWatch follows the repair counter from a removal on, in the background, while
// the probes run: it records when the counter of every repaired family has grown.
type repairWatch struct {
	done chan struct{}
	// Set when done is closed: how long after the removal the counters were seen grown
	// (0 if never, until syncPeriod and a few seconds had passed), the last counters
	// read and the last error.
	took    time.Duration
	last    map[string]float64
	lastErr error
}

// watchRepairs starts a repairWatch: the counters of families must grow from before.
func watchRepairs(ctx context.Context, removed time.Time, before map[string]float64, families []string) *repairWatch {
	w := &repairWatch{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		deadline := removed.Add(repairSyncPeriod + 3*time.Second)
		for time.Now().Before(deadline) && ctx.Err() == nil {
			m, err := suite.Portico.Scrape(ctx)
			at := time.Since(removed)
			if err != nil {
				w.lastErr = err
			} else {
				w.last = map[string]float64{}
				grown := true
				for _, f := range []string{"IPv4", "IPv6"} {
					w.last[f] = m[repairMetric+"{ip_family="+f+"}"]
				}
				for _, f := range families {
					grown = grown && w.last[f] > before[f]
				}
				if grown {
					w.took = at
					return
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return w
}

// check waits for the watch to end and fails unless the repair was counted within
// syncPeriod of the removal. Some removals (the mangle or filter table, the other
// family's) leave the probed connections working: the counter is what times their repair.
func (w *repairWatch) check(t *testing.T, name string, families []string) {
	t.Helper()
	<-w.done
	if w.took == 0 {
		t.Fatalf("after %s no repair of %v counted within %v (counters: %v, last error: %v); log tail:\n%s",
			name, families, repairSyncPeriod+3*time.Second, w.last, w.lastErr, suite.Portico.LogTail(30))
	}
	t.Logf("%s: repair of %v counted %v after the removal", name, families, w.took.Round(time.Millisecond))
	if w.took > repairSyncPeriod {
		t.Errorf("after %s the repair of %v was counted %v later, longer than syncPeriod %v", name, families, w.took.Round(time.Millisecond), repairSyncPeriod)
	}
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
