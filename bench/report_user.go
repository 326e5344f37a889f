package bench

import (
	"fmt"
	"strings"
)

// writeUserTargets writes the checks of what a user sees at 10,000 and 50,000 Services:
// change → traffic, cold sync and memory with children, for portico in every mode
// measured at that N.
func writeUserTargets(m *md, r *Results) {
	var ts []target
	for _, s := range r.Scales {
		for _, name := range proxyNames(r) {
			if !strings.HasPrefix(name, pPortico) {
				continue
			}
			if p := s.Proxy(name); p != nil {
				ts = append(ts, userTargets(s.N, p)...)
			}
		}
	}
	if len(ts) == 0 {
		return
	}
	m.p("## Targets as a user sees them (10,000 and 50,000 Services)")
	m.nl()
	m.p("At 10,000 Services × 10 endpoints, in every mode measured there: change → traffic p50 ≤ %.0f ms and p99 ≤ %.0f ms (both kinds of change), cold sync ≤ %.0f s, "+
		"peak RSS of the proxy and its children together ≤ %.0f MB. At 50,000: cold sync ≤ %.0f s, change → traffic p50 ≤ %.0f ms, peak RSS with children ≤ %.0f MB. "+
		"iptables mode has the targets of its own issue: change → traffic p50 ≤ %.0f ms and p99 ≤ %.0f ms, peak RSS with children ≤ %.0f MB, with iptables-nft; iptables-legacy's figures are reported beside them, not held to them (that issue's acceptance: legacy rewrites a whole table on every change). "+
		"A missed iptables change row gives the variant's change floor at that N: one chain rewritten by `iptables-restore --noflush` onto the proxy's own rules in an empty namespace (see the iptables section). "+
		"ipvs mode is measured in the VM only, up to N = 1,000 (see its section), so it has no row here.",
		targetTrafficP50Ms10k, targetTrafficP99Ms10k, targetCold10kS, targetRSSWithChildren10kMB,
		targetCold50kS, targetTrafficP50Ms50k, targetRSSWithChildren50kMB,
		iptTargetChangeP50Ms, iptTargetChangeP99Ms, iptTargetRSSMB)
	m.nl()
	writeTargetTable(m, r, ts)
}

// userTargets checks one portico run at N = 10,000 or 50,000 (nothing at other N).
func userTargets(n int, p *ProxyRun) []target {
	var cold, p50, p99, rss float64
	switch n {
	case 10000:
		cold, p50, p99, rss = targetCold10kS, targetTrafficP50Ms10k, targetTrafficP99Ms10k, targetRSSWithChildren10kMB
	case 50000:
		cold, p50, rss = targetCold50kS, targetTrafficP50Ms50k, targetRSSWithChildren50kMB
	default:
		return nil
	}
	if p.Mode.Mode == "iptables" {
		// iptables mode has the targets of its own issue: one-endpoint change p50 / p99
		// and peak RSS with children (its cold sync target is the same).
		p50, p99, rss = iptTargetChangeP50Ms, iptTargetChangeP99Ms, iptTargetRSSMB
	}
	label := comma(n)
	mode := " (nftables)"
	if p.Mode.Mode != "" {
		mode = fmt.Sprintf(" (%s)", p.Mode)
	}
	var ts []target
	if p.Cold != nil && !p.Cold.DNF {
		ts = append(ts, upper("cold sync"+mode, label, p.Cold.S(), cold, fmt.Sprintf("≤ %.0f s", cold), fs, sMiss))
	}
	if t := p.Traffic; t != nil {
		for _, k := range []struct {
			what string
			l    *TrafficLatency
		}{{"one endpoint", t.One}, {"all endpoints", t.All}} {
			if k.l == nil || k.l.Traffic.Samples == 0 {
				continue
			}
			ts = append(ts, upper("change → traffic p50, "+k.what+mode, label, k.l.Traffic.P50, p50, fmt.Sprintf("≤ %.0f ms", p50), fms, msMiss))
			if p99 > 0 {
				ts = append(ts, upper("change → traffic p99, "+k.what+mode, label, k.l.Traffic.P99, p99, fmt.Sprintf("≤ %.0f ms", p99), fms, msMiss))
			}
		}
	}
	if p.PeakWithChildrenKiB > 0 {
		mbf := func(v float64) string { return fmt.Sprintf("%.1f MB", v) }
		over := func(v, lim float64) string { return fmt.Sprintf("%.1f MB over (%.2f× the limit)", v-lim, v/lim) }
		ts = append(ts, upper("peak RSS with children"+mode, label, mb(p.PeakWithChildrenKiB), rss, fmt.Sprintf("≤ %.0f MB", rss), mbf, over))
	}
	for i := range ts {
		ts[i].reported = p.Mode.Legacy()
	}
	return withChangeFloor(ts, p)
}

// withChangeFloor adds to each missed change row of an iptables run the variant's change
// floor measured at that N (Floor.ChangeMedianMs), the least a change can take there.
func withChangeFloor(ts []target, p *ProxyRun) []target {
	if p.Floor == nil || p.Floor.ChangeMedianMs <= 0 {
		return ts
	}
	for i, t := range ts {
		if strings.Contains(t.what, "change") && t.known && !t.met {
			ts[i].miss += fmt.Sprintf("; change floor %.0f ms", p.Floor.ChangeMedianMs)
		}
	}
	return ts
}
