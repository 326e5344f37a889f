package bench

import (
	"fmt"
	"math"
)

// writeHeavy writes the endpoint-heavy scenario's section (nothing when it did not run).
func writeHeavy(m *md, r *Results) {
	h := r.Heavy
	if h == nil {
		return
	}
	m.p("## Endpoint-heavy Services: %d × %s endpoints and a rolling update", h.Services, comma(h.Endpoints))
	m.nl()
	m.p("Before the bulk Services exist, namespace `%s` gets %d ClusterIP Services of %s endpoints each (one EndpointSlice each, written directly, endpoints on node-b at fake addresses of 10.160.0.0/14) "+
		"and one Service, `roll`, selecting %s pods bound to node-b; the embedded cluster's EndpointSlice controller writes that Service's slices from the pods "+
		"(there is no kubelet: the benchmark writes each pod's status, running and ready, with a fake address of 10.164.0.0/16). "+
		"Each proxy, in nftables mode, is started into the empty node-a with these objects alone (and the real Service): "+
		"its cold sync is measured as at the other scales (one run), then %d one-endpoint changes of random heavy Services' slices, spaced as there, "+
		"then a **rolling update** of `roll`: every pod is replaced, %.0f per second, as a Deployment with maxSurge 1 and maxUnavailable 0 does it — "+
		"the new pod is created and made ready, then the old one is deleted at once. "+
		"Each replacement is timed from just before the status write that makes the new pod ready to the first nf_tables notification holding its address in node-a: "+
		"it includes the EndpointSlice controller's work and the proxy's minSyncPeriod (1 s): at %.0f replacements per second both proxies fold the changes of a second into one sync, "+
		"so latencies up to about a second are the configured behaviour. Afterwards (once the controller's slices hold exactly the new pods) node-a's ruleset is read: it must hold every new pod and none of the old ones. "+
		"CPU is the proxy's own and its waited-for children's during the rolling update. The objects are deleted before the bulk Services are created (%.1f s to create them).",
		HeavyNamespace, h.Services, comma(h.Endpoints), comma(h.RollPods), r.Settings.HeavyChangeSamples, h.RollRate, h.RollRate, h.CreatedS)
	m.nl()
	po, kp := h.Proxy(pPortico), h.Proxy(pKP)
	m.table([]string{"", "portico", "kube-proxy", "portico / kube-proxy"}, compareRows(heavyLines(), po, kp))
	for _, e := range h.Errors {
		m.p("- error: %s", e)
	}
	writePhases(m, po, kp)
}

// heavyLines are the rows of the endpoint-heavy table.
func heavyLines() []scaleLine {
	lines := []scaleLine{
		{"**Cold full sync** (launch → kernel holds every rule)", num(coldOf(func(c *Cold) float64 { return c.S() }), fs)},
		{"  commits", txt(coldCommitsText)},
	}
	lines = append(lines, latencyRows("**One-endpoint change** in a 1,000-endpoint slice,", changeOf)...)
	lines = append(lines, scaleLine{"  samples (missed)", txt(func(p *ProxyRun) string { return samplesText(p.Change) })})
	lines = append(lines, latencyRows("**Rolling update**: new pod ready → kernel,", rollingOf)...)
	return append(lines, []scaleLine{
		{"  pods replaced (missed) / commits", txt(rollingCountText)},
		{"  duration (replacements per second)", txt(rollingDurationText)},
		{"  node-a's ruleset afterwards holds", txt(rollingCheckText)},
		{"  CPU during the rolling update (proxy + waited-for children)", num(rollingCPU, fs)},
		{"  CPU per replaced pod", num(func(p *ProxyRun) float64 { return rollingCPU(p) / float64(rollingPods(p)) * 1e3 }, fms)},
		{"**Peak RSS**, proxy process (VmHWM)", num(megabytes(func(p *ProxyRun) int64 { return p.PeakHWM() }), fmbValue)},
		{"  largest nft child (maxrss)", num(megabytes(func(p *ProxyRun) int64 { return p.PeakNFT() }), fmbValue)},
		{"  proxy and children together (sampled every 100 ms)", num(megabytes(func(p *ProxyRun) int64 { return p.PeakWithChildrenKiB }), fmbValue)},
	}...)
}

// samplesText is "samples (missed)" of a latency, a dash without one.
func samplesText(l *Latency) string {
	if l == nil {
		return dash
	}
	return fmt.Sprintf("%d (%d)", l.Samples, l.Missed)
}

// rollingOf reads a number of the rolling update's latencies; NaN without samples.
func rollingOf(f func(l *Latency) float64) func(p *ProxyRun) float64 {
	return func(p *ProxyRun) float64 {
		if p.Rolling == nil || p.Rolling.Ready.Samples == 0 {
			return math.NaN()
		}
		return f(&p.Rolling.Ready)
	}
}

func rollingCountText(p *ProxyRun) string {
	if p.Rolling == nil {
		return dash
	}
	l := p.Rolling.Ready
	return fmt.Sprintf("%s (%d) / %d", comma(l.Samples+l.Missed), l.Missed, l.Commits)
}

func rollingDurationText(p *ProxyRun) string {
	if p.Rolling == nil {
		return dash
	}
	return fmt.Sprintf("%s (%.1f/s)", fs(p.Rolling.Seconds), p.Rolling.Achieved)
}

func rollingCheckText(p *ProxyRun) string {
	if p.Rolling == nil {
		return dash
	}
	return p.Rolling.CheckText()
}

func rollingPods(p *ProxyRun) int {
	if p.Rolling == nil {
		return 0
	}
	return p.Rolling.Pods
}

// rollingCPU is the CPU the proxy (and its waited-for children) used during the rolling
// update: the cumulative CPU at its end minus that at the end of the phase before.
func rollingCPU(p *ProxyRun) float64 {
	for i, ph := range p.Phases {
		if ph.Name == "rolling-update" && i > 0 && ph.Proc.CPU() > 0 {
			return ph.Proc.CPU() - p.Phases[i-1].Proc.CPU()
		}
	}
	return math.NaN()
}
