package bench

import (
	"fmt"
	"math"
	"strings"
)

// This file renders the per-N section of the report: one table comparing the two
// proxies line by line, and the per-phase details below it.

// cell gives one proxy's entry in a per-N table row: the text shown and the number the
// portico / kube-proxy ratio is computed from (NaN when the row has no number). A nil
// run (a proxy that did not run) shows a dash.
type cell func(p *ProxyRun) (string, float64)

// scaleLine is one row of the per-N table.
type scaleLine struct {
	name string
	get  cell
}

// writeScale writes the section of one N: the comparison table and the phase details.
func writeScale(m *md, r *Results, s *ScaleRun) {
	po, kp := s.Proxy(pPortico), s.Proxy(pKP)
	m.p("## N = %s Services (%s endpoints)", comma(s.N), comma(s.N*r.Settings.Endpoints))
	m.nl()
	if s.From != "" {
		m.p("_Measured in %s, not in this run: nftables mode only, kept from that run's results._", s.From)
		m.nl()
	}
	m.p("%s Services and slices created in %.1f s (load average %s → %s over this N).", comma(s.Created), s.LoadSeconds, s.LoadAvgStart, s.LoadAvgEnd)
	m.nl()
	m.table([]string{"", "portico", "kube-proxy", "portico / kube-proxy"}, compareRows(scaleLines(), po, kp))
	writePhases(m, po, kp)
}

// compareRows evaluates every line for portico (po) and kube-proxy (kp) and adds their
// ratio where both have a non-zero number.
func compareRows(lines []scaleLine, po, kp *ProxyRun) [][]string {
	var rows [][]string
	for _, l := range lines {
		a, av := l.get(po)
		b, bv := l.get(kp)
		rt := dash
		if ok(av) && ok(bv) && bv != 0 && av != 0 {
			rt = fmt.Sprintf("%.2f", av/bv)
		}
		rows = append(rows, []string{l.name, a, b, rt})
	}
	return rows
}

// writePhases writes the collapsed per-phase table: wait for a quiet machine, duration,
// load, memory, CPU, nft runs and commits of every phase of both proxies.
func writePhases(m *md, po, kp *ProxyRun) {
	var prow [][]string
	for _, p := range []*ProxyRun{po, kp} {
		if p == nil {
			continue
		}
		for _, ph := range p.Phases {
			prow = append(prow, []string{p.Proxy, ph.Name, fmt.Sprintf("%.1f s (%.0f%% idle)", ph.SettleS, ph.IdleFrac*100),
				fs(ph.End.Sub(ph.Start).Seconds()), ph.LoadStart + " → " + ph.LoadEnd,
				fmb(ph.Proc.HWMKiB), fmb(ph.Proc.RSSKiB), fs(ph.Proc.CPU()),
				fmt.Sprintf("%d (max %s)", ph.NFT.Count, fmb(ph.NFT.MaxRSSKiB)), fmt.Sprint(ph.Monitor.Gens)})
		}
	}
	m.p("<details><summary>Per phase: wait for a quiet machine, duration, load average, memory and CPU at the end of each phase, nft runs, commits</summary>")
	m.nl()
	m.table([]string{"proxy", "phase", "settle", "duration", "load average (start → end)", "VmHWM", "VmRSS", "CPU (cumulative)", "nft runs (largest)", "commits"}, prow)
	m.p("</details>")
	m.nl()
}

// scaleLines lists the rows of the per-N table, in order.
func scaleLines() []scaleLine {
	var lines []scaleLine
	for _, group := range [][]scaleLine{coldLines(), floorLines(), changeLines(), churnLines(), memoryLines(), nftLines(), cpuLines(), dataplaneLines()} {
		lines = append(lines, group...)
	}
	return lines
}

// num is a cell holding the number f returns, shown with format.
func num(f func(p *ProxyRun) float64, format func(float64) string) cell {
	return func(p *ProxyRun) (string, float64) {
		if p == nil {
			return dash, math.NaN()
		}
		v := f(p)
		return format(v), v
	}
}

// txt is a cell holding text only.
func txt(f func(p *ProxyRun) string) cell {
	return func(p *ProxyRun) (string, float64) {
		if p == nil {
			return dash, math.NaN()
		}
		return f(p), math.NaN()
	}
}

// coldOf reads a number of the cold sync; NaN without one.
func coldOf(f func(c *Cold) float64) func(p *ProxyRun) float64 {
	return func(p *ProxyRun) float64 {
		if p.Cold == nil {
			return math.NaN()
		}
		return f(p.Cold)
	}
}

// changeOf reads a number of the one-endpoint changes; NaN without samples.
func changeOf(f func(c *Latency) float64) func(p *ProxyRun) float64 {
	return func(p *ProxyRun) float64 {
		if p.Change == nil || p.Change.Samples == 0 {
			return math.NaN()
		}
		return f(p.Change)
	}
}

// changeMetricOf reads a number of the proxy's own latency metric over the one-endpoint
// changes; NaN when the metric counted none.
func changeMetricOf(f func(c *MetricLatency) float64) func(p *ProxyRun) float64 {
	return func(p *ProxyRun) float64 {
		if p.Change == nil || p.Change.Metric.Count == 0 {
			return math.NaN()
		}
		return f(&p.Change.Metric)
	}
}

// churnOf reads a number of the churn phase; NaN without samples.
func churnOf(f func(c *Churn) float64) func(p *ProxyRun) float64 {
	return func(p *ProxyRun) float64 {
		if p.Churn == nil || p.Churn.Samples == 0 {
			return math.NaN()
		}
		return f(p.Churn)
	}
}

// floorOf reads a number of the floor; NaN without a successful one.
func floorOf(f func(c *Floor) float64) func(p *ProxyRun) float64 {
	return func(p *ProxyRun) float64 {
		if p.Floor == nil || p.Floor.Error != "" {
			return math.NaN()
		}
		return f(p.Floor)
	}
}

// dataplaneOf reads a number of the dataplane phase; NaN without a successful connection.
func dataplaneOf(f func(c *Dataplane) float64) func(p *ProxyRun) float64 {
	return func(p *ProxyRun) float64 {
		if p.Dataplane == nil || p.Dataplane.OK == 0 {
			return math.NaN()
		}
		return f(p.Dataplane)
	}
}

// megabytes turns a KiB figure into MB.
func megabytes(f func(p *ProxyRun) int64) func(p *ProxyRun) float64 {
	return func(p *ProxyRun) float64 { return mb(f(p)) }
}

// fmbValue formats MB; zero and below show a dash.
func fmbValue(v float64) string {
	if !ok(v) || v <= 0 {
		return dash
	}
	return fmt.Sprintf("%.1f MB", v)
}

// fcount formats a count with thousands separators.
func fcount(v float64) string {
	if !ok(v) {
		return dash
	}
	return comma(int(v))
}

// ftimes formats a factor ("1.25×").
func ftimes(v float64) string {
	if !ok(v) {
		return dash
	}
	return fmt.Sprintf("%.2f×", v)
}

// fcps formats connections per second.
func fcps(v float64) string {
	if !ok(v) || v == 0 {
		return dash
	}
	return fmt.Sprintf("%.0f", v)
}

// coldLines are the cold sync rows.
func coldLines() []scaleLine {
	return []scaleLine{
		{"**Cold full sync** (launch → kernel holds every rule; fastest run)", num(coldOf(func(c *Cold) float64 { return c.S() }), fs)},
		{"  every run (the last one stays up for the other phases)", txt(coldRunsText)},
		{"  proxy's metric (last run): last sync timestamp − launch", num(coldOf(func(c *Cold) float64 { return c.MetricS }), fs)},
		{"  proxy's metric: sum of sync durations", txt(syncSumText)},
		{"  of which the largest nft run (wall)", num(coldMaxNFTWall, fs)},
		{"  largest nft input (lines, MB)", txt(coldMaxNFTInputText)},
		{"  commits", txt(coldCommitsText)},
	}
}

func coldRunsText(p *ProxyRun) string {
	if p.Cold == nil || len(p.Cold.RunsS) == 0 {
		return dash
	}
	return strings.Join(roundAll(p.Cold.RunsS), ", ")
}

func syncSumText(p *ProxyRun) string {
	if p.Cold == nil {
		return dash
	}
	return fmt.Sprintf("%s (%d syncs)", fs(p.Cold.SyncDurationS), int(p.Cold.SyncCount))
}

func coldMaxNFTWall(p *ProxyRun) float64 {
	if ph := p.Phase("cold-sync"); ph != nil {
		return ph.NFT.MaxWallS
	}
	return math.NaN()
}

func coldMaxNFTInputText(p *ProxyRun) string {
	if ph := p.Phase("cold-sync"); ph != nil && ph.NFT.MaxInBytes > 0 {
		return fmt.Sprintf("%s lines, %.1f MB", comma(int(ph.NFT.MaxInLines)), float64(ph.NFT.MaxInBytes)/1e6)
	}
	return dash
}

func coldCommitsText(p *ProxyRun) string {
	if p.Cold == nil {
		return dash
	}
	return comma(p.Cold.Commits)
}

// floorLines are the rows of the floor: nft alone loading the proxy's ruleset.
func floorLines() []scaleLine {
	return []scaleLine{
		{"**Floor**: `nft -f` of the same ruleset, empty namespace", num(floorOf(func(f *Floor) float64 { return f.S() }), fs)},
		{"  ruleset size", txt(rulesetSizeText)},
		{"  nft's peak RSS loading it (vs the proxy's largest nft run)", txt(floorRSSText)},
		{"  cold sync / floor", num(coldOverFloor, ftimes)},
	}
}

func rulesetSizeText(p *ProxyRun) string {
	if p.Floor == nil || p.Floor.Error != "" {
		return dash
	}
	return fmt.Sprintf("%s lines, %.1f MB", comma(p.Floor.RulesetLines), float64(p.Floor.RulesetBytes)/1e6)
}

func floorRSSText(p *ProxyRun) string {
	if p.Floor == nil || p.Floor.Error != "" || p.Floor.MaxRSSKiB == 0 {
		return dash
	}
	return fmb(p.Floor.MaxRSSKiB) + " (" + fmb(p.PeakNFT()) + ")"
}

func coldOverFloor(p *ProxyRun) float64 {
	if p.Cold == nil || p.Floor == nil || p.Floor.S() == 0 {
		return math.NaN()
	}
	return p.Cold.S() / p.Floor.S()
}

// latencyRows are the p50, p90, p99 and max rows of a latency that of reads.
func latencyRows(head string, of func(func(*Latency) float64) func(*ProxyRun) float64) []scaleLine {
	return []scaleLine{
		{head + " p50", num(of(func(l *Latency) float64 { return l.P50 }), fms)},
		{"  p90", num(of(func(l *Latency) float64 { return l.P90 }), fms)},
		{"  p99", num(of(func(l *Latency) float64 { return l.P99 }), fms)},
		{"  max", num(of(func(l *Latency) float64 { return l.Max }), fms)},
	}
}

// changeLines are the one-endpoint change rows.
func changeLines() []scaleLine {
	lines := latencyRows("**One-endpoint change**", changeOf)
	return append(lines, []scaleLine{
		{"  samples (missed)", txt(changeSamplesText)},
		{"  first seen in (notification type)", txt(changeMsgTypesText)},
		{"  proxy's metric: bucket of p50 / of p99", txt(changeBucketsText)},
		{"  proxy's metric mean", num(changeMetricOf(func(l *MetricLatency) float64 { return l.Mean }), fms)},
		{"**Change → traffic**, one endpoint, p50", num(trafficOf(oneKind, func(l *Latency) float64 { return l.P50 }), fms)},
		{"  p99", num(trafficOf(oneKind, func(l *Latency) float64 { return l.P99 }), fms)},
		{"  kernel side of the same changes, p50", num(kernelOf(oneKind, func(l *Latency) float64 { return l.P50 }), fms)},
		{"  samples (missed)", txt(trafficSamplesText(oneKind))},
		{"**Change → traffic**, all endpoints, p50", num(trafficOf(allKind, func(l *Latency) float64 { return l.P50 }), fms)},
		{"  p99", num(trafficOf(allKind, func(l *Latency) float64 { return l.P99 }), fms)},
		{"  kernel side of the same changes, p50", num(kernelOf(allKind, func(l *Latency) float64 { return l.P50 }), fms)},
		{"  samples (missed)", txt(trafficSamplesText(allKind))},
	}...)
}

// The kinds of traffic changes.
func oneKind(t *TrafficChanges) *TrafficLatency { return t.One }
func allKind(t *TrafficChanges) *TrafficLatency { return t.All }

// trafficOf reads a number of one kind of traffic change, until traffic; NaN without
// samples.
func trafficOf(kind func(*TrafficChanges) *TrafficLatency, f func(l *Latency) float64) func(p *ProxyRun) float64 {
	return func(p *ProxyRun) float64 {
		if p.Traffic == nil || kind(p.Traffic).Traffic.Samples == 0 {
			return math.NaN()
		}
		return f(&kind(p.Traffic).Traffic)
	}
}

// kernelOf reads a number of one kind of traffic change, kernel side; NaN without samples.
func kernelOf(kind func(*TrafficChanges) *TrafficLatency, f func(l *Latency) float64) func(p *ProxyRun) float64 {
	return func(p *ProxyRun) float64 {
		if p.Traffic == nil || kind(p.Traffic).Kernel.Samples == 0 {
			return math.NaN()
		}
		return f(&kind(p.Traffic).Kernel)
	}
}

func trafficSamplesText(kind func(*TrafficChanges) *TrafficLatency) func(p *ProxyRun) string {
	return func(p *ProxyRun) string {
		if p.Traffic == nil {
			return dash
		}
		l := kind(p.Traffic)
		return fmt.Sprintf("%d (%d)", l.Traffic.Samples, l.Traffic.Missed)
	}
}

func changeSamplesText(p *ProxyRun) string {
	if p.Change == nil {
		return dash
	}
	return fmt.Sprintf("%d (%d)", p.Change.Samples, p.Change.Missed)
}

func changeMsgTypesText(p *ProxyRun) string {
	if p.Change == nil {
		return dash
	}
	return msgTypes(p.Change.MsgTypes)
}

func changeBucketsText(p *ProxyRun) string {
	if p.Change == nil || p.Change.Metric.Count == 0 {
		return dash
	}
	return bucketText(p.Change.Metric.Hist, 0.5) + " / " + bucketText(p.Change.Metric.Hist, 0.99)
}

// churnLines are the rows of the churn phase.
func churnLines() []scaleLine {
	return []scaleLine{
		{"**Churn** p50", num(churnOf(func(c *Churn) float64 { return c.P50 }), fms)},
		{"  p99", num(churnOf(func(c *Churn) float64 { return c.P99 }), fms)},
		{"  max", num(churnOf(func(c *Churn) float64 { return c.Max }), fms)},
		{"  changes (missed) / commits", txt(churnCountsText)},
	}
}

func churnCountsText(p *ProxyRun) string {
	if p.Churn == nil {
		return dash
	}
	return fmt.Sprintf("%d (%d) / %d", p.Churn.Samples, p.Churn.Missed, p.Churn.Commits)
}

// memoryLines are the rows of peak memory and the Go runtime's figures.
func memoryLines() []scaleLine {
	return []scaleLine{
		{"**Peak RSS**, proxy process (VmHWM)", num(megabytes(func(p *ProxyRun) int64 { return p.PeakHWM() }), fmbValue)},
		{"  largest nft child (maxrss)", num(megabytes(func(p *ProxyRun) int64 { return p.PeakNFT() }), fmbValue)},
		{"  proxy + largest nft child", num(megabytes(func(p *ProxyRun) int64 { return p.PeakHWM() + p.PeakNFT() }), fmbValue)},
		{"  proxy and children together (sampled every 100 ms)", num(megabytes(func(p *ProxyRun) int64 { return p.PeakWithChildrenKiB }), fmbValue)},
		{"  Go heap in use / runtime total (go_memstats) at the end", txt(goMemText)},
		{"  Go allocations per one-endpoint change (GCs per change)", txt(allocsPerChangeText)},
	}
}

func goMemText(p *ProxyRun) string {
	if len(p.Phases) == 0 {
		return dash
	}
	g := p.Phases[len(p.Phases)-1].GoMem
	if g.Sys == 0 {
		return dash
	}
	return fmt.Sprintf("%.1f / %.1f MB", g.HeapInuse/1e6, g.Sys/1e6)
}

func allocsPerChangeText(p *ProxyRun) string {
	ch, prev := p.Phase("changes"), p.Phase("dataplane")
	if ch == nil || prev == nil || p.Change == nil || ch.GoMem.AllocTotal == 0 || prev.GoMem.AllocTotal == 0 {
		return dash
	}
	n := float64(p.Change.Samples + p.Change.Missed)
	if n == 0 {
		return dash
	}
	return fmt.Sprintf("%.1f MB (%.2f)", (ch.GoMem.AllocTotal-prev.GoMem.AllocTotal)/n/1e6, (ch.GoMem.GCs-prev.GoMem.GCs)/n)
}

// nftLines are the rows of the proxy's nft runs.
func nftLines() []scaleLine {
	return []scaleLine{
		{"  nft runs", num(func(p *ProxyRun) float64 { return float64(p.NFTRunsTotal()) }, fcount)},
		{"  nft per change (mean wall, mean input)", txt(nftPerChangeText)},
	}
}

func nftPerChangeText(p *ProxyRun) string {
	ph := p.Phase("changes")
	if ph == nil || ph.NFT.Count == 0 {
		return dash
	}
	return fmt.Sprintf("%s, %.1f kB", fms(ph.NFT.WallS/float64(ph.NFT.Count)*1e3), float64(ph.NFT.InBytes)/float64(ph.NFT.Count)/1e3)
}

// cpuLines are the CPU rows.
func cpuLines() []scaleLine {
	return []scaleLine{
		{"**CPU** at the end (user+sys, incl. waited-for children)", num(func(p *ProxyRun) float64 { return p.LastCPU() }, fs)},
		{"  of which nft children", num(childCPU, fs)},
		{"  proxy's own CPU per one-endpoint change (+ nft's)", txt(cpuPerChangeText)},
	}
}

func childCPU(p *ProxyRun) float64 {
	if len(p.Phases) == 0 {
		return math.NaN()
	}
	ps := p.Phases[len(p.Phases)-1].Proc
	return ps.ChildUser + ps.ChildSys
}

func cpuPerChangeText(p *ProxyRun) string {
	ch, prev := p.Phase("changes"), p.Phase("dataplane")
	if ch == nil || prev == nil || p.Change == nil || ch.Proc.At.IsZero() || prev.Proc.At.IsZero() {
		return dash
	}
	n := float64(p.Change.Samples + p.Change.Missed)
	if n == 0 {
		return dash
	}
	own := (ch.Proc.UserS + ch.Proc.SysS - prev.Proc.UserS - prev.Proc.SysS) / n
	kids := (ch.Proc.ChildUser + ch.Proc.ChildSys - prev.Proc.ChildUser - prev.Proc.ChildSys) / n
	return fmt.Sprintf("%s (+ %s)", fms(own*1e3), fms(kids*1e3))
}

// dataplaneLines are the rows of connection setup through the ClusterIP.
func dataplaneLines() []scaleLine {
	return []scaleLine{
		{"**Dataplane** connect p50", num(dataplaneOf(func(d *Dataplane) float64 { return d.ConnectP50 }), fus)},
		{"  connect p99", num(dataplaneOf(func(d *Dataplane) float64 { return d.ConnectP99 }), fus)},
		{"  connections per second", num(dataplaneOf(func(d *Dataplane) float64 { return d.ConnsPerSec }), fcps)},
	}
}
