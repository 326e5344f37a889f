package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	vnetns "github.com/vishvananda/netns"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

// Metric names both proxies export.
const (
	metricLastSync    = "kubeproxy_sync_proxy_rules_last_timestamp_seconds"
	metricSyncDur     = "kubeproxy_sync_proxy_rules_duration_seconds"
	metricNetProgram  = "kubeproxy_network_programming_duration_seconds"
	coldTimeout       = 5 * time.Minute
	coldKernelTimeout = 30 * time.Second
)

// phaseTracker measures one phase of a proxy's run.
type phaseTracker struct {
	ph        *Phase
	mon       *Monitor
	monBefore MonitorStats
	wrapLog   string
	wrapOff   int64
}

// Before a phase the machine must have been idle for this fraction of a 500 ms window
// (waiting at most 10 s; 15 s before a timed load). A cold sync and a floor load are
// single timed runs of a few seconds, and the kernel frees a removed ruleset in the
// background on one of the two CPUs: half idle let that work land in them.
const (
	phaseIdle = 0.5
	timedIdle = 0.85
)

// waitQuiet waits for the machine to be quiet enough before a phase, or before a timed
// run (a cold sync, a floor load) when timed is set, and returns the time waited and the
// idle fraction reached.
func waitQuiet(timed bool) (time.Duration, float64) {
	if timed {
		return WaitIdle(timedIdle, 500*time.Millisecond, 15*time.Second)
	}
	return WaitIdle(phaseIdle, 500*time.Millisecond, 10*time.Second)
}

// startPhase waits for a quiet machine (waitQuiet; the cold sync is a timed run), then
// starts measuring a phase.
func startPhase(name string, mon *Monitor, p Proxy) *phaseTracker {
	waited, idle := waitQuiet(name == "cold-sync")
	t := &phaseTracker{ph: &Phase{Name: name, Start: time.Now(), LoadStart: LoadAvg(),
		SettleS: waited.Seconds(), IdleFrac: idle}, mon: mon, monBefore: mon.Stats(), wrapLog: p.WrapLog()}
	if st, err := os.Stat(t.wrapLog); err == nil {
		t.wrapOff = st.Size()
	}
	return t
}

// end samples the proxy process and the nft runs of the phase.
func (t *phaseTracker) end(ctx context.Context, p Proxy) *Phase {
	t.ph.End = time.Now()
	t.ph.LoadEnd = LoadAvg()
	if pid := p.PID(); pid > 0 && p.Running() {
		if s, err := SampleProc(pid); err == nil {
			t.ph.Proc = s
		}
		if s, err := p.Scrape(ctx); err == nil {
			v := func(n string) float64 { x, _ := s.Value(n, nil); return x }
			t.ph.GoMem = GoMem{HeapAlloc: v("go_memstats_heap_alloc_bytes"), HeapInuse: v("go_memstats_heap_inuse_bytes"),
				HeapIdle: v("go_memstats_heap_idle_bytes"), HeapReleased: v("go_memstats_heap_released_bytes"),
				Sys: v("go_memstats_sys_bytes"), NextGC: v("go_memstats_next_gc_bytes"),
				AllocTotal: v("go_memstats_alloc_bytes_total"), GCs: v("go_gc_duration_seconds")}
		}
	}
	t.ph.NFT = readWrapLog(t.wrapLog, t.wrapOff)
	t.ph.Monitor = t.mon.Stats().Delta(t.monBefore)
	return t.ph
}

// readWrapLog summarises the wrapper's lines from offset off on.
func readWrapLog(path string, off int64) NFTRuns {
	r := NFTRuns{Kinds: map[string]int{}}
	f, err := os.Open(path)
	if err != nil {
		return r
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return r
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 9 {
			continue
		}
		rss, _ := strconv.ParseInt(fs[1], 10, 64)
		wall, _ := strconv.ParseFloat(fs[2], 64)
		user, _ := strconv.ParseFloat(fs[3], 64)
		sys, _ := strconv.ParseFloat(fs[4], 64)
		code, _ := strconv.Atoi(fs[5])
		inBytes, _ := strconv.ParseInt(fs[6], 10, 64)
		inLines, _ := strconv.ParseInt(fs[7], 10, 64)
		r.Count++
		r.InBytes += inBytes
		if inBytes > r.MaxInBytes {
			r.MaxInBytes, r.MaxInLines = inBytes, inLines
		}
		if code != 0 {
			r.Failed++
		}
		r.MaxRSSKiB = max(r.MaxRSSKiB, rss)
		r.WallS += wall / 1e6
		r.MaxWallS = max(r.MaxWallS, wall/1e6)
		r.CPUS += (user + sys) / 1e6
		r.Kinds[nftKind(fs[8:])]++
	}
	return r
}

// nftKind names an nft invocation by its arguments ("-f -", "--check -f -", "list ...").
func nftKind(args []string) string {
	var keep []string
	for _, a := range args {
		if a == "--json" || a == "--terse" || a == "-j" || a == "-t" {
			continue
		}
		keep = append(keep, a)
		if len(keep) == 3 {
			break
		}
	}
	return strings.Join(keep, " ")
}

// waitSynced polls the proxy's metrics until its last-sync timestamp of every family is
// at or after t0, and returns the latest of them and the scrape.
func waitSynced(ctx context.Context, p Proxy, t0 time.Time, timeout time.Duration) (time.Time, Scrape, error) {
	deadline := time.Now().Add(timeout)
	var last error
	oneFamilySince := time.Time{}
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return time.Time{}, nil, err
		}
		select {
		case <-p.Exited():
			return time.Time{}, nil, fmt.Errorf("%s exited before its first sync; log tail:\n%s", p.Name(), p.LogTail(30))
		default:
		}
		s, err := p.Scrape(ctx)
		if err == nil {
			if at, ok := syncedAt(s, t0, &oneFamilySince); ok {
				return at, s, nil
			}
		} else {
			last = err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Time{}, nil, fmt.Errorf("%s did not report a sync within %s (last scrape error: %v): %w; log tail:\n%s",
		p.Name(), timeout, last, errTimeLimit, p.LogTail(30))
}

// syncedAt reads the last-sync timestamps: with an ip_family label, both IPv4 and IPv6
// must be at or after t0 (one family alone is accepted after 20 s, for a single-stack
// proxy); without the label, the single gauge must be.
func syncedAt(s Scrape, t0 time.Time, oneSince *time.Time) (time.Time, bool) {
	fams := s.Families(metricLastSync)
	t0s := float64(t0.UnixNano()) / 1e9
	if len(fams) == 0 {
		v, ok := s.Value(metricLastSync, nil)
		if !ok || v < t0s {
			return time.Time{}, false
		}
		return unixFloat(v), true
	}
	latest, n := 0.0, 0
	for _, f := range fams {
		v, _ := s.Value(metricLastSync, map[string]string{"ip_family": f})
		if v < t0s {
			return time.Time{}, false
		}
		latest = max(latest, v)
		n++
	}
	if n >= 2 {
		return unixFloat(latest), true
	}
	if oneSince.IsZero() {
		*oneSince = time.Now()
	}
	if time.Since(*oneSince) > 20*time.Second {
		return unixFloat(latest), true
	}
	return time.Time{}, false
}

func unixFloat(v float64) time.Time {
	sec, frac := math.Modf(v)
	return time.Unix(int64(sec), int64(frac*1e9))
}

// coldOpts are what a cold sync needs beyond the proxy and the observer.
type coldOpts struct {
	topo     *netns.Topology
	expected []netip.Addr
	// limit is how long the proxy gets to report its first sync; a proxy still syncing
	// then did not finish (Cold.DNF) and is stopped.
	limit time.Duration
}

// errTimeLimit is waitSynced's error when the proxy did not report a sync in time.
var errTimeLimit = errors.New("time limit reached")

// measureCold starts the proxy and measures its cold full sync from the kernel side: the
// nf_tables generation, polled with the observer muted, in nftables mode and with
// iptables-nft (polledColdEnd); the restore runs' exits with iptables-legacy
// (legacyColdEnd).
func measureCold(ctx context.Context, p Proxy, mon *Monitor, o coldOpts) (*Cold, error) {
	c := &Cold{Expected: len(o.expected), TimeLimitS: o.limit.Seconds()}
	ns := o.topo.NS(netns.NodeA)
	if err := mon.Mute(); err != nil {
		return nil, err
	}
	defer func() { _ = mon.Unmute() }()
	gens, err := StartGenPoller(ns, genPollEvery)
	if err != nil {
		return nil, err
	}
	defer gens.Close()
	off := fileSize(p.WrapLog())
	t0, err := p.Start(ctx)
	if err != nil {
		return nil, err
	}
	start := gens.At(t0)
	at, s, err := waitSynced(ctx, p, t0, o.limit)
	if errors.Is(err, errTimeLimit) {
		coldDNF(p, gens, c, t0, start, off, o)
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	c.MetricS = at.Sub(t0).Seconds()
	h := s.Histogram(metricSyncDur)
	c.SyncDurationS, c.SyncCount = h.Sum, h.Count
	if p.Mode().Legacy() {
		legacyColdEnd(ctx, o.topo, p, c, t0, at, off, o.expected)
		return c, nil
	}
	polledColdEnd(gens, c, t0, at, start, o)
	return c, gens.Err()
}

// coldDNF records what a proxy that did not finish its cold sync within the limit had
// done by then (commits, restore runs, its running children and their peak RSS so far),
// then kills those children so that the wrapper logs their peak RSS and nothing of the
// sync outlives the proxy, and counts the expected addresses the kernel does not hold.
func coldDNF(p Proxy, gens *GenPoller, c *Cold, t0 time.Time, start Gen, off int64, o coldOpts) {
	c.DNF = true
	now := time.Now()
	c.Commits = int(gens.Last().ID - start.ID)
	for _, e := range readWrapEntries(p.WrapLog(), off) {
		if e.restore() && e.Code == 0 {
			c.RestoresDone++
		}
	}
	c.Running = sampleChildren(p.PID())
	c.KernelS, c.Criterion = now.Sub(t0).Seconds(), "did not finish within the time limit"
	if err := killChildren(p.PID()); err != nil {
		c.Criterion += fmt.Sprintf(" (%v)", err)
	}
	c.Unseen = len(o.expected)
	if !p.Mode().Legacy() {
		unseen, err := KernelUnseen(o.topo.NS(netns.NodeA), o.expected)
		if err != nil {
			c.Criterion += fmt.Sprintf(" (expected addresses not checked: %v)", err)
		}
		c.Unseen = unseen
	}
}

// polledColdEnd ends a cold sync seen through the polled nf_tables generation: once the
// generation stayed unchanged for a moment after the proxy's metric said both families
// were synced, the kernel's rules and set elements are searched for every expected
// address (all cluster IPs and endpoints); the sync ended with the last commit before the
// search that found them all (searched again after each later commit, until
// coldKernelTimeout).
func polledColdEnd(gens *GenPoller, c *Cold, t0, at time.Time, start Gen, o coldOpts) {
	ns := o.topo.NS(netns.NodeA)
	// The last commit before the metric covered both families; the grace covers a poll
	// answered a little after the proxy stamped its metric.
	if g := gens.At(at.Add(200 * time.Millisecond)); g.ID != start.ID {
		c.MetricGenS = g.At.Sub(t0).Seconds()
	}
	deadline := time.Now().Add(coldKernelTimeout)
	c.Unseen = len(o.expected)
	var checked Gen
	var err error
	for {
		gens.Quiet(300*time.Millisecond, 10*time.Second)
		checked = gens.Last()
		if c.Unseen, err = KernelUnseen(ns, o.expected); err != nil || c.Unseen == 0 || time.Now().After(deadline) {
			break
		}
		for gens.Last().ID == checked.ID && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	switch {
	case err != nil:
		c.KernelS, c.Criterion = c.MetricS, fmt.Sprintf("proxy metric (the kernel could not be searched: %v)", err)
	case c.Unseen == 0 && checked.ID != start.ID:
		c.AllSeenGenS = checked.At.Sub(t0).Seconds()
		c.KernelS, c.Criterion = c.AllSeenGenS, "last commit before the kernel was found holding every expected address"
	case c.MetricGenS > 0:
		c.KernelS, c.Criterion = c.MetricGenS, fmt.Sprintf("last commit before the proxy reported both families synced (%d expected addresses not in the kernel)", c.Unseen)
	default:
		c.KernelS, c.Criterion = c.MetricS, "proxy metric (no commit observed)"
	}
	end := t0.Add(time.Duration(c.KernelS * float64(time.Second)))
	c.Commits = int(gens.At(end).ID - start.ID)
}

// histLatency converts a network-programming histogram delta into MetricLatency.
func histLatency(h Hist) MetricLatency {
	return MetricLatency{Count: h.Count, P50: h.Quantile(0.5) * 1e3, P90: h.Quantile(0.9) * 1e3,
		P99: h.Quantile(0.99) * 1e3, Mean: h.Mean() * 1e3, Hist: h}
}

// changeOpts are the one-endpoint change parameters.
type changeOpts struct {
	samples int
	spacing time.Duration
	timeout time.Duration
	// budget, when set, ends the phase early: no sample starts after it (Latency.CutShort).
	budget time.Duration
}

// over reports whether a phase started at start has used up its budget.
func (o changeOpts) over(start time.Time) bool { return o.budget > 0 && time.Since(start) > o.budget }

// measureChanges makes spaced one-endpoint changes and times each from the API write to
// the first kernel notification holding the new address.
func measureChanges(ctx context.Context, p Proxy, mon *Monitor, objs *Objects, n int, o changeOpts, rng *rand.Rand) (*Latency, error) {
	l := &Latency{MsgTypes: map[string]int{}}
	before, _ := p.Scrape(ctx)
	monBefore := mon.Stats()
	var acks []float64
	var lastWrite, lastSeen time.Time
	start := time.Now()
	for k := 0; k < o.samples; k++ {
		if o.over(start) {
			l.CutShort = true
			break
		}
		// Each change finds the proxy idle: more than minSyncPeriod after the previous
		// write and after the last commit in node-a (a periodic sync, or the cold sync
		// just before the first sample), so that no sample waits for the rate limiter.
		for wait := 0; wait < 10; wait++ { // a commit may land while waiting: check again
			next := lastWrite.Add(o.spacing)
			for _, t := range []time.Time{lastSeen.Add(100 * time.Millisecond), mon.LastGen().Add(o.spacing)} {
				if t.After(next) {
					next = t
				}
			}
			d := time.Until(next)
			if d <= 0 {
				break
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(d):
			}
		}
		addr := objs.NextAddr()
		var w *Watch
		ch, err := objs.ReplaceEndpoint(ctx, rng.IntN(n), addr, rng, func() { w = mon.Watch(addr) })
		lastWrite = ch.Written
		if err != nil {
			l.Errors++
			if w != nil {
				mon.Unwatch(w)
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		}
		acks = append(acks, ch.Acked.Sub(ch.Written).Seconds()*1e3)
		select {
		case <-w.Done():
			l.Values = append(l.Values, w.At.Sub(ch.Written).Seconds()*1e3)
			l.MsgTypes[w.MsgType]++
			lastSeen = w.At
		case <-time.After(o.timeout):
			l.Missed++
			mon.Unwatch(w)
			lastSeen = time.Now()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	l.Samples = len(l.Values)
	l.finish()
	l.AckP50 = percentile(acks, 0.5)
	time.Sleep(200 * time.Millisecond) // let the metric catch the last sample
	if after, err := p.Scrape(ctx); err == nil && before != nil {
		l.Metric = histLatency(after.Histogram(metricNetProgram).Sub(before.Histogram(metricNetProgram)))
	}
	l.Commits = mon.Stats().Delta(monBefore).Gens
	return l, nil
}

// churnOpts are the churn parameters.
type churnOpts struct {
	rate    float64
	dur     time.Duration
	timeout time.Duration
	workers int
}

// measureChurn writes changes at a steady rate and times each like measureChanges.
func measureChurn(ctx context.Context, p Proxy, mon *Monitor, objs *Objects, n int, o churnOpts, rng *rand.Rand) (*Churn, error) {
	c := &Churn{Rate: o.rate, Seconds: o.dur.Seconds()}
	c.MsgTypes = map[string]int{}
	before, _ := p.Scrape(ctx)
	monBefore := mon.Stats()
	w, err := writeChurn(ctx, mon, objs, rng.Perm(n), o, rng)
	if err != nil {
		return nil, err
	}
	c.Errors += w.skipped
	c.Achieved = float64(len(w.results)) / w.end.Sub(w.start).Seconds()
	var pending []churnResult
	var acks []float64
	for _, r := range w.results {
		if r.err != nil {
			c.Errors++
			if r.w != nil {
				mon.Unwatch(r.w)
			}
			continue
		}
		acks = append(acks, r.ch.Acked.Sub(r.ch.Written).Seconds()*1e3)
		pending = append(pending, r)
	}
	if err := awaitChurn(ctx, mon, c, pending, w.end.Add(o.timeout)); err != nil {
		return nil, err
	}
	c.Samples = len(c.Values)
	c.finish()
	c.AckP50 = percentile(acks, 0.5)
	mon.Quiet(300*time.Millisecond, 5*time.Second)
	c.Commits = mon.Stats().Delta(monBefore).Gens
	if c.Commits > 0 {
		c.ChangesPerCommit = float64(c.Samples) / float64(c.Commits)
	}
	time.Sleep(200 * time.Millisecond)
	if after, err := p.Scrape(ctx); err == nil && before != nil {
		c.Metric = histLatency(after.Histogram(metricNetProgram).Sub(before.Histogram(metricNetProgram)))
	}
	return c, nil
}

// churnResult is one change written under churn and the watch for its new address.
type churnResult struct {
	w   *Watch
	ch  Change
	err error
}

// churnWrites is what writeChurn did: the changes it wrote in the order they completed,
// how many ticks it skipped, and when the writing started and ended.
type churnWrites struct {
	results    []churnResult
	skipped    int
	start, end time.Time
}

// writeChurn replaces one endpoint per tick, at o.rate for o.dur, walking the Services in
// perm's order, with at most o.workers writes in flight; a tick that finds every worker
// busy is skipped. Each write watches for its new address before it goes out.
func writeChurn(ctx context.Context, mon *Monitor, objs *Objects, perm []int, o churnOpts, rng *rand.Rand) (*churnWrites, error) {
	interval := time.Duration(float64(time.Second) / o.rate)
	total := int(o.rate * o.dur.Seconds())
	results := make(chan churnResult, total)
	sem := make(chan struct{}, o.workers)
	var wg sync.WaitGroup
	var rngMu sync.Mutex
	w := &churnWrites{start: time.Now()}
	tick := time.NewTicker(interval)
	sent := 0
	for sent < total {
		select {
		case <-ctx.Done():
			tick.Stop()
			wg.Wait()
			return nil, ctx.Err()
		case <-tick.C:
		}
		i := perm[sent%len(perm)]
		sent++
		select {
		case sem <- struct{}{}:
		default:
			w.skipped++ // the apiserver fell behind: skip this tick's change
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			addr := objs.NextAddr()
			var wt *Watch
			rngMu.Lock()
			seed := rng.Uint64()
			rngMu.Unlock()
			r := rand.New(rand.NewPCG(seed, uint64(i)))
			ch, err := objs.ReplaceEndpoint(ctx, i, addr, r, func() { wt = mon.Watch(addr) })
			results <- churnResult{w: wt, ch: ch, err: err}
		}()
	}
	tick.Stop()
	wg.Wait()
	w.end = time.Now()
	close(results)
	for r := range results {
		w.results = append(w.results, r)
	}
	return w, nil
}

// awaitChurn waits until deadline for the kernel to show each pending change's address,
// recording the latency and notification type of those seen and counting the others as
// missed. A change already seen is never missed, even past the deadline.
func awaitChurn(ctx context.Context, mon *Monitor, c *Churn, pending []churnResult, deadline time.Time) error {
	for _, r := range pending {
		select {
		case <-r.w.Done():
			c.Values = append(c.Values, r.w.At.Sub(r.ch.Written).Seconds()*1e3)
			c.MsgTypes[r.w.MsgType]++
			continue
		default:
		}
		select {
		case <-r.w.Done():
			c.Values = append(c.Values, r.w.At.Sub(r.ch.Written).Seconds()*1e3)
			c.MsgTypes[r.w.MsgType]++
		case <-time.After(time.Until(deadline)):
			c.Missed++
			mon.Unwatch(r.w)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// measureDataplane opens conns sequential TCP connections from a pod to the real
// Service's cluster IP, timing connect() and the whole exchange (the server answers one
// line and closes).
func measureDataplane(ctx context.Context, topo *netns.Topology, from string, dst netip.AddrPort, conns int) *Dataplane {
	d := &Dataplane{From: from, Target: dst.String(), Conns: conns}
	var connect []float64
	one := func(record bool) {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		var dl net.Dialer
		t := time.Now()
		c, err := dl.DialContext(cctx, "tcp4", dst.String())
		ct := time.Since(t)
		if err == nil {
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, err = bufio.NewReader(c).ReadString('\n')
			c.Close()
		}
		if !record {
			return
		}
		if err != nil {
			d.Failed++
			d.LastError = err.Error()
			return
		}
		d.OK++
		connect = append(connect, float64(ct.Microseconds()))
	}
	var elapsed time.Duration
	err := topo.Do(from, func() error {
		for i := 0; i < 50; i++ { // warm-up: neighbour entries, caches, code paths
			one(false)
		}
		start := time.Now()
		for i := 0; i < conns && ctx.Err() == nil; i++ {
			one(true)
		}
		elapsed = time.Since(start)
		return nil
	})
	if err != nil {
		d.LastError = err.Error()
	}
	d.ConnectP50, d.ConnectP90, d.ConnectP99 = percentile(connect, 0.5), percentile(connect, 0.9), percentile(connect, 0.99)
	d.ConnectMean = mean(connect)
	if elapsed > 0 {
		d.ConnsPerSec = float64(d.OK) / elapsed.Seconds()
	}
	d.Values = connect
	return d
}

// dumpRuleset lists the proxy's tables in node-a into one file.
func dumpRuleset(ctx context.Context, topo *netns.Topology, p Proxy, path string) (int64, int, error) {
	var b strings.Builder
	for _, t := range p.Tables() {
		out, err := nftIn(ctx, topo, netns.NodeA, "list", "table", t[0], t[1])
		if err != nil {
			return 0, 0, err
		}
		b.WriteString(out)
		b.WriteString("\n")
	}
	s := b.String()
	return int64(len(s)), strings.Count(s, "\n"), os.WriteFile(path, []byte(s), 0o644)
}

// floorNS is the scratch namespace the floor is measured in.
func floorNS(topo *netns.Topology) string { return topo.Prefix() + "-floor" }

// deleteFloorNS removes the scratch namespace if it exists.
func deleteFloorNS(topo *netns.Topology) error {
	name := floorNS(topo)
	if _, err := os.Stat(filepath.Join(netns.RunDir, name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip netns delete %s: %w: %s", name, err, out)
	}
	return nil
}

// loadOnce creates a fresh namespace, times `nft -f path` in it and deletes it. nft runs
// through the wrapper, as the proxies' nft runs do: started straight from this (large)
// process, a child's maxrss would count this process's RSS at the moment of exec.
func loadOnce(ctx context.Context, topo *netns.Topology, nt nftTools, path string) (time.Duration, NFTRuns, error) {
	h, done, err := floorNamespace(ctx, topo)
	if err != nil {
		return 0, NFTRuns{}, err
	}
	defer done()
	off := fileSize(nt.log)
	cmd := exec.CommandContext(ctx, nt.wrapper, "-f", path)
	cmd.Env = append(os.Environ(), "NFTWRAP_LOG="+nt.log, "NFTWRAP_REAL="+nt.real)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	var start time.Time
	// The child inherits the namespace of the thread that forks it.
	if err := netns.DoIn(h, func() error { start = time.Now(); return cmd.Start() }); err != nil {
		return 0, NFTRuns{}, err
	}
	err = cmd.Wait()
	el := time.Since(start)
	if err != nil {
		return el, NFTRuns{}, fmt.Errorf("nft -f: %w: %s", err, lastLines(stderr.String(), 5))
	}
	return el, readWrapLog(nt.log, off), nil
}

// floorNamespace creates the fresh, empty namespace a floor load runs in, once the
// machine is quiet (the previous load's namespace is freed in the background); done
// closes its handle and deletes it.
func floorNamespace(ctx context.Context, topo *netns.Topology) (h vnetns.NsHandle, done func(), err error) {
	name := floorNS(topo)
	_ = deleteFloorNS(topo)
	waitQuiet(true)
	if out, err := exec.CommandContext(ctx, "ip", "netns", "add", name).CombinedOutput(); err != nil {
		return 0, nil, fmt.Errorf("ip netns add %s: %w: %s", name, err, out)
	}
	h, err = vnetns.GetFromName(name)
	if err != nil {
		_ = deleteFloorNS(topo)
		return 0, nil, err
	}
	return h, func() { h.Close(); _ = deleteFloorNS(topo) }, nil
}

// nftTools are the nft wrapper, its log for the floor's runs and the real nft.
type nftTools struct{ wrapper, log, real string }

// measureFloor times nft loading the dumped ruleset into a fresh namespace: runs times
// (as many as the proxy's cold syncs) when that is quick, once when it takes more than
// 5 s. The fastest run counts: the proxy, the control plane and their timers keep running
// on the same two CPUs, and a run they disturbed measures them, not nft (medians of three
// ranged from 1.8 to 3.8 s for the same 10,000-Service ruleset that loads in 1.8 s on an
// idle machine). Both sides get the same number of tries: with the same spread, the
// fastest of five runs is on average faster than the fastest of three.
func measureFloor(ctx context.Context, topo *netns.Topology, nt nftTools, path string, bytes int64, lines, runs int) *Floor {
	return measureFloorWith(func() (time.Duration, NFTRuns, error) { return loadOnce(ctx, topo, nt, path) }, bytes, lines, runs)
}

// measureFloorWith is measureFloor with the load given: one timed load of the rules into
// a fresh namespace, and the tool runs it made.
func measureFloorWith(load func() (time.Duration, NFTRuns, error), bytes int64, lines, runs int) *Floor {
	f := &Floor{RulesetBytes: bytes, RulesetLines: lines}
	for r := 0; r < max(1, runs); r++ {
		el, run, err := load()
		if err != nil {
			f.Error = err.Error()
			return f
		}
		f.Runs = append(f.Runs, el.Seconds())
		f.MaxRSSKiB = max(f.MaxRSSKiB, run.MaxRSSKiB)
		f.CPUS += run.CPUS
		if el > 5*time.Second {
			break
		}
	}
	f.CPUS /= float64(len(f.Runs))
	f.MedianS = percentile(f.Runs, 0.5)
	f.FastestS = slices.Min(f.Runs)
	return f
}
