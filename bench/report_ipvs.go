package bench

import (
	"fmt"
	"math"
	"strings"
)

// ipvsLine is one row of the IPVS table: a proxy's value as text and as a number (NaN
// when there is none; the ratio column divides the numbers).
type ipvsLine struct {
	name string
	get  func(p *IPVSProxyRun) (string, float64)
}

// writeIPVS writes the IPVS section: how it is measured, then per N the comparison.
func writeIPVS(m *md, r *Results) {
	if len(r.IPVS) == 0 {
		return
	}
	m.p("# IPVS mode: portico and kube-proxy, in a VM")
	m.nl()
	m.p("This machine's kernel has no IPVS, so ipvs mode is measured inside a VM: Debian's cloud kernel under qemu's software emulation (TCG; KVM does not work here), booted by `e2e/vm/run.sh` after the other modes at the same N, against the same objects in the same API server. " +
		"qemu runs inside node-a and gives the VM its user-mode network, through which the VM reaches the API server as node-a does. " +
		"In the VM both proxies run in ipvs mode one after the other, each from a KubeProxyConfiguration like kubeadm's (`ipvs.minSyncPeriod` and `syncPeriod` as in the other modes), with the tool wrapper first in their PATH (kube-proxy's `iptables` is iptables-nft).")
	m.nl()
	m.p("- **cold sync**: from the proxy's launch to the later of two moments: the first read of `/proc/net/ip_vs` (every %d ms) showing every bulk Service's virtual server with all its real servers, and the proxy's own `kubeproxy_sync_proxy_rules_last_timestamp_seconds` of its first sync (portico's nftables table and kube-proxy's ipsets and iptables rules are part of that sync).", vmColdPoll.Milliseconds())
	m.p("- **one-endpoint change**: one endpoint of a random Service replaced by a never-used address, timed from the API write until the Service's virtual server lists that address as a real server with a weight (IPVS netlink, polled every millisecond). The payload writes and times both on the VM's clock. Up to %d changes per proxy, %.1f s apart, each waited for at most 2 minutes, all within %.0f minutes per proxy; they start once the proxy has been quiet (under 5%% of a CPU) for half a second after its cold sync.",
		r.Settings.IPVSChangeSamples, r.Settings.ChangeSpacingS, r.Settings.IPVSChangeBudgetS/60)
	m.p("- **memory**: the proxy's VmHWM; the proxy and its children sampled together every 100 ms; the exact peak of every tool run from the wrapper.")
	m.p("- Emulation makes every figure slower than on hardware, for both proxies alike; the ratios are the point. The VM's two vCPUs are two host threads, which share the host's two cores with the API server.")
	m.nl()
	if t := largestNText(r); t != "" {
		m.p("%s", t)
		m.nl()
	}
	for _, run := range r.IPVS {
		writeIPVSRun(m, r, run)
	}
}

// largestNText says why the largest N of the VM is that one, from kube-proxy's figures
// there: its cold sync against the time a proxy gets, and the processes it ran.
func largestNText(r *Results) string {
	var last *IPVSRun
	for _, run := range r.IPVS {
		if last == nil || run.N > last.N {
			last = run
		}
	}
	kp := last.Proxy(pKP)
	if kp == nil || kp.Cold == nil || r.Settings.IPVSColdLimitS == 0 {
		return ""
	}
	limit := fmt.Sprintf("%.0f minutes", r.Settings.IPVSColdLimitS/60)
	if !kp.Cold.DNF && 5*kp.Cold.S < r.Settings.IPVSColdLimitS {
		return fmt.Sprintf("N = %s is the largest N of this run (`-ipvs-scales`); kube-proxy's cold sync took %s there, within the %s a proxy gets.",
			comma(last.N), fs(kp.Cold.S), limit)
	}
	cold := "did not finish its cold sync within " + limit
	if !kp.Cold.DNF {
		cold = "took " + fs(kp.Cold.S) + " for its cold sync"
	}
	return fmt.Sprintf("N = %s is the largest N the emulated VM allows: at it, kube-proxy %s, having started %s processes (its ipvs mode runs one `ipset add` per Service address, among others, and a process start costs tens of milliseconds under emulation); five times the Services would take it past the %s a proxy gets.",
		comma(last.N), cold, comma(kp.NFT.Count), limit)
}

// writeIPVSRun writes one N's table and what went wrong there.
func writeIPVSRun(m *md, r *Results, run *IPVSRun) {
	m.p("## N = %s Services (%s endpoints), ipvs, in the VM", comma(run.N), comma(run.N*r.Settings.Endpoints))
	m.nl()
	m.p("_Kernel %s; %s; the VM's whole run %s._", orDash(run.Kernel), orDash(run.VM), fs(run.WallS))
	m.nl()
	if run.From != "" {
		m.p("_Measured in %s, not in the run the rest of this page comes from; the same machine, objects of the same shape._", run.From)
		m.nl()
	}
	po, kp := run.Proxy(pPortico), run.Proxy(pKP)
	var rows [][]string
	for _, l := range ipvsLines() {
		a, av := ipvsCell(l, po)
		b, bv := ipvsCell(l, kp)
		rt := dash
		if ok(av) && ok(bv) && av != 0 && bv != 0 {
			rt = fmt.Sprintf("%.2f", av/bv)
		}
		rows = append(rows, []string{l.name, a, b, rt})
	}
	m.table([]string{"", "portico", "kube-proxy", "portico / kube-proxy"}, rows)
	var notes []string
	for _, p := range []*IPVSProxyRun{po, kp} {
		if p == nil {
			continue
		}
		if p.Cold != nil && p.Cold.DNF {
			notes = append(notes, fmt.Sprintf("%s did not finish its first sync within %s (%d of %d Services complete in IPVS); its changes were skipped.",
				p.Proxy, fs(p.Cold.LimitS), p.Cold.Complete, p.Cold.Expected))
		}
		for _, e := range p.Errors {
			notes = append(notes, fmt.Sprintf("%s: %s", p.Proxy, oneLine(e, 300)))
		}
		if p.Leftovers != "" {
			notes = append(notes, fmt.Sprintf("%s's own cleanup (`%s`) left %s in IPVS.", p.Proxy, cleanupCmd(p.Proxy), p.Leftovers))
		}
		if p.CleanupError != "" {
			notes = append(notes, fmt.Sprintf("%s's own cleanup (`%s`) failed: %s", p.Proxy, cleanupCmd(p.Proxy), oneLine(p.CleanupError, 300)))
		}
	}
	for _, e := range run.Errors {
		notes = append(notes, "The VM: "+oneLine(e, 400))
	}
	for _, n := range notes {
		m.p("- %s", n)
	}
	if len(notes) > 0 {
		m.nl()
	}
}

func ipvsCell(l ipvsLine, p *IPVSProxyRun) (string, float64) {
	if p == nil {
		return dash, math.NaN()
	}
	return l.get(p)
}

// ipvsLines are the rows of an IPVS table.
func ipvsLines() []ipvsLine {
	cold := func(f func(c *IPVSCold) float64) func(p *IPVSProxyRun) (string, float64) {
		return func(p *IPVSProxyRun) (string, float64) {
			if p.Cold == nil || p.Cold.Error != "" {
				return dash, math.NaN()
			}
			v := f(p.Cold)
			if p.Cold.DNF {
				return "did not finish in " + fs(p.Cold.LimitS), math.NaN()
			}
			return fs(v), v
		}
	}
	change := func(f func(l *Latency) float64) func(p *IPVSProxyRun) (string, float64) {
		return func(p *IPVSProxyRun) (string, float64) {
			if p.Change == nil || p.Change.Samples == 0 {
				return dash, math.NaN()
			}
			v := f(p.Change)
			return fms(v), v
		}
	}
	mem := func(f func(p *IPVSProxyRun) int64) func(p *IPVSProxyRun) (string, float64) {
		return func(p *IPVSProxyRun) (string, float64) { v := f(p); return fmb(v), mb(v) }
	}
	return []ipvsLine{
		{"**cold sync**", cold(func(c *IPVSCold) float64 { return c.S })},
		{"  IPVS complete (polled)", cold(func(c *IPVSCold) float64 { return c.IPVSS })},
		{"  the proxy's own last-sync timestamp", cold(func(c *IPVSCold) float64 { return c.MetricS })},
		{"  first bulk virtual server seen", cold(func(c *IPVSCold) float64 { return c.FirstVSS })},
		{"virtual / real servers in IPVS after the cold sync", func(p *IPVSProxyRun) (string, float64) {
			if p.Cold == nil {
				return dash, math.NaN()
			}
			return fmt.Sprintf("%s / %s", comma(p.Cold.VirtualServers), comma(p.Cold.RealServers)), math.NaN()
		}},
		{"wait for a quiet proxy before the changes", func(p *IPVSProxyRun) (string, float64) {
			if p.Change == nil {
				return dash, math.NaN()
			}
			return fs(p.SettleS), math.NaN()
		}},
		{"first change after the cold sync (not a sample)", func(p *IPVSProxyRun) (string, float64) {
			if p.Change == nil || p.Change.FirstMS == 0 {
				return dash, math.NaN()
			}
			return fms(p.Change.FirstMS), p.Change.FirstMS
		}},
		{"**one-endpoint change p50**", change(func(l *Latency) float64 { return l.P50 })},
		{"one-endpoint change p90", change(func(l *Latency) float64 { return l.P90 })},
		{"one-endpoint change p99 (max)", change(func(l *Latency) float64 { return l.P99 })},
		{"changes: samples / missed / errors", func(p *IPVSProxyRun) (string, float64) {
			if p.Change == nil {
				return dash, math.NaN()
			}
			cut := ""
			if p.Change.CutShort {
				cut = " (cut short by the time budget)"
			}
			return fmt.Sprintf("%d / %d / %d%s", p.Change.Samples, p.Change.Missed, p.Change.Errors, cut), math.NaN()
		}},
		{"API write acknowledged, p50", change(func(l *Latency) float64 { return l.AckP50 })},
		{"peak RSS (VmHWM)", mem(func(p *IPVSProxyRun) int64 { return p.Proc.HWMKiB })},
		{"peak RSS with children (sampled)", mem(func(p *IPVSProxyRun) int64 { return p.PeakWithChildrenKiB })},
		{"largest tool run (wrapper)", mem(func(p *IPVSProxyRun) int64 { return p.NFT.MaxRSSKiB })},
		{"tool runs", func(p *IPVSProxyRun) (string, float64) { return toolKinds(p.NFT), float64(p.NFT.Count) }},
		{"CPU, proxy and its children", func(p *IPVSProxyRun) (string, float64) { v := p.Proc.CPU(); return fs(v), v }},
	}
}

// toolKinds is "12 (ipset ×1, nft ×11)": the tool runs by program (nft's kinds are its
// arguments).
func toolKinds(n NFTRuns) string {
	if n.Count == 0 {
		return "0"
	}
	byTool := map[string]int{}
	for kind, c := range n.Kinds {
		tool := "nft"
		if f := strings.Fields(kind); len(f) > 0 && strings.HasPrefix(f[0], "ip") {
			tool = f[0]
		}
		byTool[tool] += c
	}
	return fmt.Sprintf("%d (%s)", n.Count, msgTypes(byTool))
}

func cleanupCmd(proxy string) string {
	if proxy == pKP {
		return "kube-proxy --cleanup"
	}
	return "portico cleanup"
}
