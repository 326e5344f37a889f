package bench

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// This file renders the iptables columns: portico and kube-proxy in iptables mode, with
// iptables-nft and with iptables-legacy, their per-N tables, their dataplane and the
// iptables acceptance targets.

// Targets of the iptables backend (issue #19), checked with iptables-nft at the largest N
// of the iptables runs; the iptables-legacy figures are reported beside them.
const (
	iptTargetColdS         = 5.0
	iptTargetColdFloor     = 1.5
	iptTargetChangeP50Ms   = 150.0
	iptTargetChangeP99Ms   = 400.0
	iptTargetRSSMB         = 200.0
	iptTargetRSSVsKP       = 0.5
	iptTargetFirstPacketPc = 25.0
)

// iptVariants are the iptables variants in report order.
var iptVariants = []ModeSpec{ModeIPTablesNFT, ModeIPTablesLegacy}

// iptNames returns portico's and kube-proxy's run names in mode m.
func iptNames(m ModeSpec) (string, string) { return runName(pPortico, m), runName(pKP, m) }

// proxyNames lists every run name of the results in report order: nftables first, then
// iptables-nft, then iptables-legacy, portico before kube-proxy.
func proxyNames(r *Results) []string {
	names := []string{pPortico, pKP}
	for _, m := range iptVariants {
		po, kp := iptNames(m)
		names = append(names, po, kp)
	}
	var out []string
	for _, n := range names {
		if hasRun(r, n) {
			out = append(out, n)
		}
	}
	return out
}

func hasRun(r *Results, name string) bool {
	for _, p := range allRuns(r) {
		if p.Proxy == name {
			return true
		}
	}
	return false
}

// hasIPTables reports whether the results hold any iptables-mode run.
func hasIPTables(r *Results) bool {
	for _, m := range iptVariants {
		po, kp := iptNames(m)
		if hasRun(r, po) || hasRun(r, kp) {
			return true
		}
	}
	return false
}

// dnfText says that a cold sync did not finish and what the proxy had done by then.
func dnfText(c *Cold) string {
	lim := time.Duration(c.TimeLimitS * float64(time.Second)).Round(time.Second)
	t := fmt.Sprintf("did not finish within %s", lim)
	var run []string
	for _, ch := range c.Running {
		if ch.HWMKiB > 4096 { // the tools, not their ~3 MB wrappers
			run = append(run, fmt.Sprintf("%s (pid %d, %s so far)", ch.Name, ch.PID, fmb(ch.HWMKiB)))
		}
	}
	t += fmt.Sprintf(" (by then %s of %s expected addresses had reached the kernel, %d commits, %d restore runs completed",
		comma(c.Expected-c.Unseen), comma(c.Expected), c.Commits, c.RestoresDone)
	if len(run) > 0 {
		t += "; still running: " + strings.Join(run, ", ")
	}
	return t + ")"
}

// coldText is a run's cold sync: the fastest run, or that it did not finish.
func coldText(p *ProxyRun) string {
	switch {
	case p == nil || p.Cold == nil:
		return dash
	case p.Cold.DNF:
		lim := time.Duration(p.Cold.TimeLimitS * float64(time.Second)).Round(time.Second)
		return "did not finish within " + lim.String()
	}
	return fs(p.Cold.S())
}

// coldValue is a run's cold sync in seconds, NaN when it did not finish.
func coldValue(p *ProxyRun) float64 {
	if p == nil || p.Cold == nil || p.Cold.DNF {
		return math.NaN()
	}
	return p.Cold.S()
}

// writeIPTables writes the iptables section: method notes, then per variant and N the
// comparison table, then the dataplane and the targets.
func writeIPTables(m *md, r *Results) {
	if !hasIPTables(r) {
		return
	}
	m.p("# iptables mode: portico and kube-proxy, iptables-nft and iptables-legacy")
	m.nl()
	m.p("The same run, against the same Services and EndpointSlices: after both proxies in nftables mode at an N (the sections above), both run again in iptables mode, first on iptables-nft, then on iptables-legacy, at N = %s. "+
		"How the iptables runs differ from the nftables ones is listed under \"How it is measured\" above (iptables bullets).", joinInts(r.Settings.IPTablesScales, ", "))
	m.nl()
	if s := iptTargetScale(r); s != nil {
		for _, v := range iptVariants {
			if t := iptSummary(s, v); t != "" {
				m.p("%s", t)
				m.nl()
			}
		}
	}
	for _, v := range iptVariants {
		po, kp := iptNames(v)
		for _, s := range r.Scales {
			if s.Proxy(po) == nil && s.Proxy(kp) == nil {
				continue
			}
			m.p("## N = %s Services, iptables-%s", comma(s.N), v.Variant)
			m.nl()
			m.table([]string{"", "portico", "kube-proxy", "portico / kube-proxy"}, compareRows(iptLines(), s.Proxy(po), s.Proxy(kp)))
			for _, p := range []*ProxyRun{s.Proxy(po), s.Proxy(kp)} {
				if p != nil && p.Cold != nil && p.Cold.DNF {
					m.p("%s %s; its other phases at this N were skipped. Its peak RSS above is what it (and its children) had reached by then.", p.Proxy, dnfText(p.Cold))
					m.nl()
				}
			}
			writePhases(m, s.Proxy(po), s.Proxy(kp))
		}
	}
	writeIPTDataplane(m, r)
	writeIPTTargets(m, r)
}

// iptLines are the rows of an iptables per-N table.
func iptLines() []scaleLine {
	lines := []scaleLine{
		{"**Cold full sync** (launch → kernel holds every rule; fastest run)", func(p *ProxyRun) (string, float64) {
			if p == nil {
				return dash, math.NaN()
			}
			return coldText(p), coldValue(p)
		}},
		{"  every run (the last one stays up for the other phases)", txt(coldRunsText)},
		{"  end seen as", txt(func(p *ProxyRun) string {
			if p.Cold == nil {
				return dash
			}
			return p.Cold.Criterion
		})},
		{"  proxy's metric (last run): last sync timestamp − launch", num(coldOf(func(c *Cold) float64 { return c.MetricS }), fs)},
		{"  proxy's metric: sum of sync durations", txt(syncSumText)},
		{"  of which the largest tool run (wall)", num(coldMaxNFTWall, fs)},
		{"  largest tool input (lines, MB)", txt(coldMaxNFTInputText)},
		{"  commits (iptables-legacy: restore runs)", txt(coldCommitsText)},
		{"**Floor**: `ipset restore` + `iptables-restore` of its own rules, empty namespace", num(floorOf(func(f *Floor) float64 { return f.S() }), fs)},
		{"  rules and sets dumped", txt(rulesetSizeText)},
		{"  the tools' peak RSS loading them (vs the proxy's largest child)", txt(floorRSSText)},
		{"  cold sync / floor", num(coldOverFloor, ftimes)},
		{"**Change floor**: one chain rewritten onto those rules (`iptables-restore --noflush`, median of 5)", num(floorOf(func(f *Floor) float64 { return f.ChangeMedianMs }), fms)},
		{"  the chain rewritten", txt(changeChainText)},
	}
	lines = append(lines, changeLines()[:6]...)
	lines = append(lines, scaleLine{"  confirmed by a connection translated to the new address (iptables-legacy)", txt(verifiedText)})
	lines = append(lines, changeLines()[6:]...)
	lines = append(lines,
		scaleLine{"**Peak RSS**, proxy process (VmHWM)", num(megabytes(func(p *ProxyRun) int64 { return p.PeakHWM() }), fmbValue)},
		scaleLine{"  largest child (iptables-restore, iptables-save, ipset, nft; maxrss)", num(megabytes(func(p *ProxyRun) int64 { return p.PeakNFT() }), fmbValue)},
		scaleLine{"  proxy + largest child", num(megabytes(func(p *ProxyRun) int64 { return p.PeakHWM() + p.PeakNFT() }), fmbValue)},
		scaleLine{"  proxy and children together (sampled every 100 ms)", num(megabytes(func(p *ProxyRun) int64 { return p.PeakWithChildrenKiB }), fmbValue)},
		scaleLine{"  child runs", num(func(p *ProxyRun) float64 { return float64(p.NFTRunsTotal()) }, fcount)},
		scaleLine{"  per change (mean wall, mean input)", txt(nftPerChangeText)},
	)
	lines = append(lines,
		scaleLine{"  tools' wall time per change (sum over the change phase / samples)", num(toolWallPerChange, fms)},
		scaleLine{"**CPU** at the end (user+sys, incl. waited-for children)", num(func(p *ProxyRun) float64 { return p.LastCPU() }, fs)},
		scaleLine{"  of which children (iptables, ipset, nft)", num(childCPU, fs)},
		scaleLine{"  proxy's own CPU per one-endpoint change (+ its children's)", txt(cpuPerChangeText)},
	)
	return append(lines, dataplaneLines()...)
}

// toolWallPerChange is the wall time of the proxy's tool runs in the change phase per
// change, in ms: how much of a change's latency the tools (and the kernel under them)
// account for.
func toolWallPerChange(p *ProxyRun) float64 {
	ph := p.Phase("changes")
	if ph == nil || p.Change == nil || p.Change.Samples+p.Change.Missed == 0 {
		return math.NaN()
	}
	return ph.NFT.WallS / float64(p.Change.Samples+p.Change.Missed) * 1e3
}

// verifiedText says how many legacy change samples a connection confirmed.
func verifiedText(p *ProxyRun) string {
	if p.Change == nil || p.Change.Method == "" {
		return dash
	}
	mean := 0.0
	if p.Change.Samples > 0 {
		mean = float64(p.Change.Probes) / float64(p.Change.Samples)
	}
	return fmt.Sprintf("%d of %d (%.0f connections each on average)", p.Change.Verified, p.Change.Samples, mean)
}

// writeIPTDataplane writes connect times through the ClusterIP in both variants, with
// one Service and at every N.
func writeIPTDataplane(m *md, r *Results) {
	m.p("## Dataplane in iptables mode: connection setup through the ClusterIP")
	m.nl()
	m.p("As in nftables mode: from pod-a2 to the real Service's ClusterIP, connect p50 / p99; \"baseline\" has only that Service.")
	m.nl()
	var names []string
	head := []string{"Services"}
	for _, v := range iptVariants {
		po, kp := iptNames(v)
		names = append(names, po, kp)
		head = append(head, po, kp)
	}
	var rows [][]string
	add := func(label string, get func(string) *ProxyRun) {
		row := []string{label}
		for _, n := range names {
			p := get(n)
			if p == nil || p.Dataplane == nil || p.Dataplane.OK == 0 {
				row = append(row, dash)
				continue
			}
			row = append(row, fus(p.Dataplane.ConnectP50)+" / "+fus(p.Dataplane.ConnectP99))
		}
		rows = append(rows, row)
	}
	add("baseline", func(n string) *ProxyRun { return baselineOf(r, n) })
	for _, s := range r.Scales {
		if s.Proxy(names[0]) != nil || s.Proxy(names[2]) != nil {
			add(comma(s.N), s.Proxy)
		}
	}
	m.table(head, rows)
}

// iptTargetScale is the N the iptables targets are checked at: the largest with an
// iptables run.
func iptTargetScale(r *Results) *ScaleRun {
	var best *ScaleRun
	for _, s := range r.Scales {
		for _, v := range iptVariants {
			if po, _ := iptNames(v); s.Proxy(po) != nil {
				best = s
			}
		}
	}
	return best
}

// writeIPTTargets checks portico in iptables mode against the acceptance, with
// iptables-nft, and reports the same checks with iptables-legacy beside them.
func writeIPTTargets(m *md, r *Results) {
	s := iptTargetScale(r)
	if s == nil {
		return
	}
	m.p("## iptables targets")
	m.nl()
	m.p("The acceptance of the iptables backend is checked with iptables-nft at N = %s, in the same run as kube-proxy; the same checks with iptables-legacy are reported beside them (legacy rewrites a whole table on every change, so its figures are shown, not held to the same limits). "+
		"Peak RSS counts the proxy process and its largest child (the two exist at the same time while a sync runs).", comma(s.N))
	m.nl()
	if r.Quick {
		m.p("_Quick run: iptables only at N = 1,000, so the 10,000-Service targets are checked at 1,000._")
		m.nl()
	}
	var rows [][]string
	met, total := 0, 0
	for _, v := range iptVariants {
		for _, t := range iptScaleTargets(r, s, v) {
			res := "met"
			switch {
			case !t.known:
				res = "n/a"
			case !t.met:
				res = "**missed**: " + t.miss
			}
			if v == ModeIPTablesNFT && t.known {
				total++
				if t.met {
					met++
				}
			}
			rows = append(rows, []string{"iptables-" + v.Variant, t.what, t.n, t.measured, t.limit, res})
		}
	}
	m.table([]string{"variant", "target", "N", "portico", "limit", "result"}, rows)
	m.p("iptables-nft: %d of %d checks met.", met, total)
	m.nl()
}

// iptScaleTargets are the iptables checks of portico in mode v at scale s.
func iptScaleTargets(r *Results, s *ScaleRun, v ModeSpec) []target {
	poName, kpName := iptNames(v)
	po, kp := s.Proxy(poName), s.Proxy(kpName)
	if po == nil {
		return nil
	}
	n := comma(s.N)
	var ts []target
	if po.Cold != nil && !po.Cold.DNF {
		c := po.Cold.S()
		ts = append(ts, upper("cold sync", n, c, iptTargetColdS, "≤ 5 s", fs, sMiss))
		if f := po.Floor; f != nil && f.Error == "" && f.S() > 0 {
			ts = append(ts, upperRatio("cold sync vs `ipset restore` + `iptables-restore` of its own rules", n, c, f.S(), iptTargetColdFloor,
				"≤ 1.5 × floor ("+fs(iptTargetColdFloor*f.S())+")"))
		}
	} else if po.Cold != nil {
		ts = append(ts, target{what: "cold sync", n: n, measured: coldText(po), limit: "≤ 5 s", known: true, miss: "did not finish"})
	}
	if l := po.Change; l != nil && l.Samples > 0 {
		ts = append(ts, upper("one-endpoint change p50", n, l.P50, iptTargetChangeP50Ms, "≤ 150 ms", fms, msMiss))
		ts = append(ts, upper("one-endpoint change p99", n, l.P99, iptTargetChangeP99Ms, "≤ 400 ms", fms, msMiss))
	}
	ts = append(ts, iptRSSTargets(n, po, kp)...)
	if t, ok := iptFirstPacket(r, s, poName); ok {
		ts = append(ts, t)
	}
	return ts
}

// iptRSSTargets checks portico's peak RSS with children against the limit and against
// kube-proxy's (until its time limit, when it did not finish).
func iptRSSTargets(n string, po, kp *ProxyRun) []target {
	if po.PeakHWM() <= 0 {
		return nil
	}
	a := mb(po.PeakHWM() + po.PeakNFT())
	mbf := func(v float64) string { return fmt.Sprintf("%.1f MB", v) }
	over := func(v, lim float64) string { return fmt.Sprintf("%.1f MB over (%.2f× the limit)", v-lim, v/lim) }
	ts := []target{upper("peak RSS, portico + its largest child", n, a, iptTargetRSSMB, "≤ 200 MB", mbf, over)}
	if kp != nil && kp.PeakHWM() > 0 {
		b := mb(kp.PeakHWM() + kp.PeakNFT())
		lim := fmt.Sprintf("≤ ½ × kube-proxy's (%.1f MB)", b/2)
		if kp.Cold != nil && kp.Cold.DNF {
			lim = fmt.Sprintf("≤ ½ × kube-proxy's until its time limit (%.1f MB)", b/2)
		}
		ts = append(ts, upperRatio("peak RSS with children vs kube-proxy's", n, a, b, iptTargetRSSVsKP, lim))
	}
	return ts
}

// iptFirstPacket checks portico's connect p50 at s against its one-Service baseline in
// the same mode.
func iptFirstPacket(r *Results, s *ScaleRun, name string) (target, bool) {
	po, base := s.Proxy(name), baselineOf(r, name)
	if po == nil || base == nil || po.Dataplane == nil || base.Dataplane == nil || po.Dataplane.OK <= 0 || base.Dataplane.OK <= 0 {
		return target{}, false
	}
	a, b := po.Dataplane.ConnectP50, base.Dataplane.ConnectP50
	lim := b * (1 + iptTargetFirstPacketPc/100)
	t := target{what: "first-packet connect time (p50) vs 1 Service", n: comma(s.N),
		measured: fmt.Sprintf("%s vs %s (%+.1f%%; p99 %s vs %s)", fus(a), fus(b), (a/b-1)*100,
			fus(po.Dataplane.ConnectP99), fus(base.Dataplane.ConnectP99)),
		limit: "within 25% (" + fus(lim) + ")", known: true, met: a <= lim}
	if !t.met {
		t.miss = fmt.Sprintf("%.0f µs over (%+.1f%% instead of ≤ +25%%)", a-lim, (a/b-1)*100)
	}
	return t, true
}

// writeIPTMethod adds the iptables bullets to "How it is measured".
func writeIPTMethod(m *md, r *Results) {
	st := r.Settings
	lim := time.Duration(st.ColdLimitS * float64(time.Second)).Round(time.Second)
	m.p("- **iptables mode** (at N = %s). Each proxy runs again with mode `iptables`, first on iptables-nft, then on iptables-legacy, each run alone in node-a and removed with its own cleanup as above. "+
		"Before every cold sync node-a is brought to the same state: no nftables table (iptables-nft's included), every iptables-legacy table flushed and its chains deleted, no ipset; "+
		"for iptables-legacy, kubelet's hint chain (`iptables-legacy -t mangle -N KUBE-IPTABLES-HINT`, and ip6tables-legacy) is then created, as kubelet does on such a host. "+
		"portico detects the variant itself (the hint chain wins; with no hint and no rules it takes nft). kube-proxy runs plain `iptables`, `iptables-save` and `iptables-restore`: the wrapper stands for those names too and runs the variant's programs, as a host's alternatives would. "+
		"The wrapper (`bench/nftwrap`) also stands for every iptables, ip6tables and ipset command in iptables mode, so that their peak RSS counts as the proxy's children (\"largest child\").", joinInts(st.IPTablesScales, ", "))
	m.p("- **iptables-nft kernel side.** iptables-nft commits are nf_tables transactions (tables `ip nat`, `ip filter`, `ip mangle` and their ip6 twins), so the same observer times them: every rule message holds its addresses (a cluster IP in the destination match, an endpoint in the DNAT target's data). Cold sync and change latency are measured exactly as in nftables mode.")
	m.p("- **iptables-legacy kernel side.** iptables-legacy sends no notification: it replaces a whole table with one setsockopt that returns once the kernel holds the new table, and the restore program exits right after. " +
		"So a cold sync ends at the exit (logged by the wrapper, in nanoseconds) of the proxy's last successful restore run (`iptables-legacy-restore`, `ip6tables-legacy-restore`, `ipset restore`) before its metric said both families were synced, and node-a's `iptables-legacy-save` and `ipset save` are then checked for every expected address. " +
		"A one-endpoint change runs from just before the API write to the exit of the proxy's last restore run of the sync that followed (the proxy then ran no tool for 500 ms); after each sample, untimed, node-a opens TCP connections to that Service's ClusterIP (one per millisecond, up to 500) until a conntrack NEW event shows one translated to the new address, which confirms what the kernel holds as a user's next connection sees it.")
	m.p("- **Time limit and budget in iptables mode.** A proxy gets %s to report its first sync; one that has not by then did not finish: its progress is recorded (addresses that reached the kernel, commits, restore runs completed, the tools still running with their peak RSS so far), its tools and then it are stopped, and its other phases at that N are skipped. Its peak RSS until then counts for the memory ratio. "+
		"Each iptables change phase ends after %s even if fewer than %d samples were taken (the samples column says how many). Churn is measured in nftables mode only.", lim, time.Duration(st.ChangeBudgetS*float64(time.Second)).Round(time.Second), st.ChangeSamples)
	m.p("- **iptables floor.** After the cold sync, the proxy's own chains, their rules and the rules that jump to them (`iptables-save` of the variant, per family, keeping its `PORTICO-`/`KUBE-` chains as `portico dump` does) and its ipsets (`ipset save`) are loaded into a fresh, empty namespace by `ipset restore`, then the variant's `iptables-restore` and `ip6tables-restore` without `--noflush`, timed together (fastest of as many loads as cold syncs, as above). " +
		"kube-proxy's `-m nfacct` counter matches are left out of its dump: their accounting object exists only where kube-proxy created it.")
	m.p("- **iptables change floor.** Then, in the namespace of the first of those loads (before it is deleted), the first nat chain of the IPv4 dump that picks an endpoint at random (portico's `PORTICO-C-…`, kube-proxy's `KUBE-SVC-…`) is redeclared and its rules written again by the variant's `iptables-restore --noflush`, five times, through the same wrapper as the proxy's runs; the median counts. " +
		"It is the least any change costs over that table: iptables-nft's kernel validates every chain reachable from the base chains on each commit that adds a rule (once per base chain that reaches them), iptables-legacy copies the whole table out of the kernel and back.")
}

// iptSummary is one sentence on both proxies in mode v at s.
func iptSummary(s *ScaleRun, v ModeSpec) string {
	poName, kpName := iptNames(v)
	po, kp := s.Proxy(poName), s.Proxy(kpName)
	if po == nil || po.Cold == nil {
		return ""
	}
	t := fmt.Sprintf("With iptables-%s at N = %s, portico's cold sync: %s", v.Variant, comma(s.N), coldText(po))
	if po.Floor != nil && po.Floor.Error == "" && po.Floor.S() > 0 {
		t += fmt.Sprintf(" (the tools alone load its rules in %s)", fs(po.Floor.S()))
	}
	if kp != nil && kp.Cold != nil {
		t += "; kube-proxy's: " + coldText(kp)
	}
	if l := po.Change; l != nil && l.Samples > 0 {
		t += fmt.Sprintf("; a one-endpoint change took %s at the median and %s at p99 with portico", fms(l.P50), fms(l.P99))
		if kp != nil && kp.Change != nil && kp.Change.Samples > 0 {
			t += fmt.Sprintf(", %s and %s with kube-proxy", fms(kp.Change.P50), fms(kp.Change.P99))
		}
	}
	t += fmt.Sprintf("; peak RSS with its largest child: portico %s", fmb(po.PeakHWM()+po.PeakNFT()))
	if kp != nil && kp.PeakHWM() > 0 {
		t += fmt.Sprintf(", kube-proxy %s", fmb(kp.PeakHWM()+kp.PeakNFT()))
		if kp.Cold != nil && kp.Cold.DNF {
			t += " until its time limit"
		}
	}
	return t + "."
}

// changeChainText names the change floor's chain and its rule count, or its error.
func changeChainText(p *ProxyRun) string {
	switch f := p.Floor; {
	case f == nil || f.Error != "":
		return dash
	case f.ChangeError != "":
		return "failed: " + f.ChangeError
	case f.ChangeChain == "":
		return dash
	default:
		return fmt.Sprintf("%s (%d rules)", f.ChangeChain, f.ChangeRules)
	}
}
