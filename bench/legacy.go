package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

// iptables-legacy sends no nf_tables notifications: it replaces a whole table with one
// setsockopt, which returns once the kernel holds the new table, and the restore program
// exits right after. So in that variant the kernel-side moment of a sync is the exit of
// the proxy's restore run (the tool wrapper logs it, in nanoseconds), and what the kernel
// then holds is checked separately: by iptables-legacy-save after a cold sync, and by
// connections from node-a to the Service after a change (conntrack NEW events show the
// address each one was translated to).

// wrapEntry is one line of the tool wrapper's log.
type wrapEntry struct {
	// At is the exit, Start the start (At minus the wall time).
	At, Start time.Time
	Code      int
	Tool      string
	Args      []string
}

// restore reports whether the run loaded rules or sets into the kernel.
func (e wrapEntry) restore() bool {
	if strings.HasSuffix(e.Tool, "-restore") {
		return true
	}
	if e.Tool == "ipset" {
		for _, a := range e.Args {
			if a == "restore" || a == "-R" {
				return true
			}
		}
	}
	return false
}

// readWrapEntries parses the wrapper's log from offset off on.
func readWrapEntries(path string, off int64) []wrapEntry {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil
	}
	var out []wrapEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 9 {
			continue
		}
		ns, _ := strconv.ParseInt(fs[0], 10, 64)
		wall, _ := strconv.ParseInt(fs[2], 10, 64)
		code, _ := strconv.Atoi(fs[5])
		at := time.Unix(0, ns)
		out = append(out, wrapEntry{At: at, Start: at.Add(-time.Duration(wall) * time.Microsecond), Code: code, Tool: fs[8], Args: fs[9:]})
	}
	return out
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// legacyColdEnd ends a cold sync in iptables-legacy: the exit of the proxy's last
// successful restore run that ended before its metric said both families were synced
// (plus the same grace as for a commit), then checks with iptables-legacy-save and ipset
// save that node-a holds every expected address.
func legacyColdEnd(ctx context.Context, topo *netns.Topology, p Proxy, c *Cold, t0, at time.Time, off int64, expected []netip.Addr) {
	var last time.Time
	procs := map[string]bool{}
	for _, e := range readWrapEntries(p.WrapLog(), off) {
		if !e.restore() || e.Code != 0 || e.At.After(at.Add(200*time.Millisecond)) {
			continue
		}
		c.Commits++
		procs[e.Tool] = true
		last = e.At
	}
	for k := range procs {
		c.CommitProcs = append(c.CommitProcs, k)
	}
	if last.IsZero() {
		c.KernelS, c.Criterion = c.MetricS, "proxy metric (no restore run seen)"
	} else {
		c.KernelS, c.Criterion = last.Sub(t0).Seconds(), "exit of the last restore run before the proxy reported both families synced"
	}
	c.MetricGenS = c.KernelS
	c.Unseen = len(expected)
	held, err := legacyAddrs(ctx, topo)
	if err != nil {
		c.Criterion += fmt.Sprintf(" (not checked: %v)", err)
		return
	}
	c.Unseen = 0
	for _, a := range expected {
		if !held[a] {
			c.Unseen++
		}
	}
}

var ipv4Re = regexp.MustCompile(`\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b`)

// legacyAddrs returns the IPv4 addresses in node-a's iptables-legacy rules and ipsets.
func legacyAddrs(ctx context.Context, topo *netns.Topology) (map[netip.Addr]bool, error) {
	held := map[netip.Addr]bool{}
	for _, argv := range [][]string{{"iptables-legacy-save"}, {"ipset", "save"}} {
		out, err := outIn(ctx, topo, netns.NodeA, argv...)
		if err != nil {
			return nil, err
		}
		for _, s := range ipv4Re.FindAllString(out, -1) {
			if a, err := netip.ParseAddr(s); err == nil {
				held[a] = true
			}
		}
	}
	return held, nil
}

// restoreAfter waits for the sync that follows a change written at since: it returns
// the exit of the last successful restore run that started after since (a run started
// before cannot hold the change), once the proxy ran no tool for quiet, with the tool's
// name; ok is false when no restore came within timeout.
func restoreAfter(ctx context.Context, wrapLog string, off int64, since time.Time, quiet, timeout time.Duration) (time.Time, string, bool, error) {
	deadline := time.Now().Add(timeout)
	var last time.Time
	var tool string
	lastLine := since
	for {
		for _, e := range readWrapEntries(wrapLog, off) {
			lastLine = maxTime(lastLine, e.At)
			if e.restore() && e.Code == 0 && e.Start.After(since) && e.At.After(last) {
				last, tool = e.At, e.Tool
			}
		}
		switch {
		case !last.IsZero() && time.Since(lastLine) >= quiet:
			return last, tool, true, nil
		case last.IsZero() && time.Now().After(deadline):
			return time.Time{}, "", false, nil
		case time.Now().After(deadline.Add(quiet)):
			return last, tool, !last.IsZero(), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, "", false, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// probeFor opens TCP connections from node-a to dst, one every millisecond without
// waiting for an answer (the endpoints are fake), until ct reports one translated to
// addr or max were opened; it returns how many it opened and whether addr was seen. Each
// SYN creates a conntrack entry whose reply tuple is the endpoint the rules picked; with
// e endpoints picked at random, a new one shows within a few times e connections.
func probeFor(ctx context.Context, topo *netns.Topology, ct *Monitor, dst netip.AddrPort, addr netip.Addr, max int) (int, bool, error) {
	w := ct.Watch(addr)
	defer ct.Unwatch(w)
	sa := &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
	n := 0
	err := topo.Do(netns.NodeA, func() error {
		for ; n < max; n++ {
			select {
			case <-w.Done():
				return nil
			case <-ctx.Done():
				return ctx.Err()
			default:
			}
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("probe socket: %w", err)
			}
			if err := unix.Connect(fd, sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
				unix.Close(fd)
				return fmt.Errorf("probe connect to %s: %w", dst, err)
			}
			unix.Close(fd)
			time.Sleep(time.Millisecond)
		}
		return nil
	})
	select {
	case <-w.Done():
		return n, true, err
	case <-time.After(100 * time.Millisecond):
	}
	select {
	case <-w.Done():
		return n, true, err
	default:
		return n, false, err
	}
}

// forgetProbes deletes the conntrack entries of the probes to a cluster IP, so that a
// later probe reusing a source port is translated anew instead of by the old entry.
func forgetProbes(ctx context.Context, topo *netns.Topology, clusterIP netip.Addr) {
	_, _ = execIn(ctx, topo, netns.NodeA, "conntrack", "-D", "-p", "tcp", "-d", clusterIP.String())
}

// legacyQuiet is how long a proxy must have run no tool for its sync after a change to be
// over (iptables-legacy).
const legacyQuiet = 500 * time.Millisecond

// legacyProbes is the most connections opened to confirm one change.
const legacyProbes = 500

// measureChangesLegacy is measureChanges for iptables-legacy: each sample runs from just
// before the API write to the exit of the proxy's last restore run of the sync that
// followed (restoreAfter); then connections from node-a to the Service confirm that the
// kernel translates to the new address (probeFor), untimed.
func measureChangesLegacy(ctx context.Context, p Proxy, ct *Monitor, topo *netns.Topology, objs *Objects, n int, o changeOpts, rng *rand.Rand) (*Latency, error) {
	l := &Latency{MsgTypes: map[string]int{}, Method: "exit of the proxy's last restore run of the sync after the write"}
	before, _ := p.Scrape(ctx)
	var acks []float64
	var lastWrite, lastSeen time.Time
	start := time.Now()
	for k := 0; k < o.samples; k++ {
		if o.over(start) {
			l.CutShort = true
			break
		}
		next := maxTime(lastWrite.Add(o.spacing), lastSeen.Add(100*time.Millisecond))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Until(next)):
		}
		i, addr := rng.IntN(n), objs.NextAddr()
		off := fileSize(p.WrapLog())
		ch, err := objs.ReplaceEndpoint(ctx, i, addr, rng, nil)
		lastWrite = ch.Written
		if err != nil {
			l.Errors++
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		}
		acks = append(acks, ch.Acked.Sub(ch.Written).Seconds()*1e3)
		at, tool, ok, err := restoreAfter(ctx, p.WrapLog(), off, ch.Written, legacyQuiet, o.timeout)
		if err != nil {
			return nil, err
		}
		lastSeen = time.Now()
		if !ok {
			l.Missed++
			continue
		}
		l.Values = append(l.Values, at.Sub(ch.Written).Seconds()*1e3)
		l.MsgTypes[tool]++
		cip := objs.ClusterIP(i)
		probes, seen, _ := probeFor(ctx, topo, ct, netip.AddrPortFrom(cip, 80), addr, legacyProbes)
		l.Probes += probes
		if seen {
			l.Verified++
		}
		forgetProbes(ctx, topo, cip)
		lastSeen = time.Now()
	}
	l.Samples = len(l.Values)
	l.finish()
	l.AckP50 = percentile(acks, 0.5)
	if after, err := p.Scrape(ctx); err == nil && before != nil {
		l.Metric = histLatency(after.Histogram(metricNetProgram).Sub(before.Histogram(metricNetProgram)))
	}
	return l, nil
}
