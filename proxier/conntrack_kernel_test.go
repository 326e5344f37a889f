//go:build e2e

package proxier

import (
	"context"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/model"
)

// The conntrack kernel tests insert entries with the conntrack tool in a network namespace
// they create (backendtest.EnterFreshNetns: everything from the test's goroutine, locked
// to the thread in that namespace) and delete them with NetlinkConntrack.

// ctEntry is a conntrack entry: the client, the original destination and the source of
// the replies (the DNAT target; the destination itself when not DNATed).
type ctEntry struct {
	proto            string
	client, dst, rep string
}

func (e ctEntry) insert(t *testing.T) {
	t.Helper()
	c, d, r := netip.MustParseAddrPort(e.client), netip.MustParseAddrPort(e.dst), netip.MustParseAddrPort(e.rep)
	args := []string{"-I", "-p", e.proto,
		"-s", c.Addr().String(), "-d", d.Addr().String(), "--sport", itoa(c.Port()), "--dport", itoa(d.Port()),
		"-r", r.Addr().String(), "-q", c.Addr().String(), "--reply-port-src", itoa(r.Port()), "--reply-port-dst", itoa(c.Port()),
		"-t", "300"}
	if e.proto == "tcp" {
		args = append(args, "--state", "ESTABLISHED")
	}
	if out, err := exec.Command("conntrack", args...).CombinedOutput(); err != nil {
		t.Fatalf("conntrack %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }

// listEntries returns the entries of the namespace as "proto client>dst>rep".
func listEntries(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, fam := range []string{"ipv4", "ipv6"} {
		b, err := exec.Command("conntrack", "-L", "-f", fam, "-o", "extended").CombinedOutput()
		if err != nil {
			t.Fatalf("conntrack -L: %v\n%s", err, b)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if e, ok := parseListed(line); ok {
				out = append(out, e)
			}
		}
	}
	slices.Sort(out)
	return out
}

// parseListed turns a line of `conntrack -L` into "proto client>dst>rep".
func parseListed(line string) (string, bool) {
	f := strings.Fields(line)
	if len(f) < 3 || (f[2] != "udp" && f[2] != "tcp") {
		return "", false
	}
	var vals []string
	for _, w := range f {
		if k, v, ok := strings.Cut(w, "="); ok && (k == "src" || k == "dst" || k == "sport" || k == "dport") {
			vals = append(vals, v)
		}
	}
	if len(vals) < 8 {
		return "", false
	}
	ap := func(ip, port string) string {
		return netip.AddrPortFrom(netip.MustParseAddr(ip), mustPort(port)).String()
	}
	return f[2] + " " + ap(vals[0], vals[2]) + ">" + ap(vals[1], vals[3]) + ">" + ap(vals[4], vals[6]), true
}

func mustPort(s string) uint16 {
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		panic(err)
	}
	return uint16(p)
}

func (e ctEntry) String() string { return e.proto + " " + e.client + ">" + e.dst + ">" + e.rep }

// TestNetlinkConntrackKernel deletes stale flows with kernel-filtered dumps, one dump of
// the UDP entries (more flows than maxFilteredDumps) and the start-up sweep, and checks
// that exactly the stale entries went.
func TestNetlinkConntrackKernel(t *testing.T) {
	defer backendtest.EnterFreshNetns(t, "conntrack")()
	var (
		stale     = ctEntry{"udp", "10.0.0.1:40000", "10.96.0.53:53", "10.244.2.53:5353"}
		current   = ctEntry{"udp", "10.0.0.2:40001", "10.96.0.53:53", "10.244.2.54:5353"}
		otherFE   = ctEntry{"udp", "10.0.0.3:40002", "10.96.0.99:53", "10.244.2.53:5353"}
		tcp       = ctEntry{"tcp", "10.0.0.4:40003", "10.96.0.53:53", "10.244.2.53:5353"}
		unnatted  = ctEntry{"udp", "10.0.0.5:40004", "10.96.0.60:53", "10.96.0.60:53"}
		stale6    = ctEntry{"udp", "[fd00::1]:40000", "[fd00:96::53]:53", "[fd00:244::53]:5353"}
		nodePort  = ctEntry{"udp", "10.0.0.6:40005", "192.168.50.10:30053", "10.244.2.99:5353"}
		nodePortK = ctEntry{"udp", "10.0.0.7:40006", "192.168.50.10:30053", "10.244.2.54:5353"}
		local     = ctEntry{"udp", "10.0.0.8:40007", "192.168.50.10:30053", "192.168.50.10:30053"}
	)
	for _, e := range []ctEntry{stale, current, otherFE, tcp, unnatted, stale6, nodePort, nodePortK, local} {
		e.insert(t)
	}
	want := func(what string, entries ...ctEntry) {
		t.Helper()
		var w []string
		for _, e := range entries {
			w = append(w, e.String())
		}
		slices.Sort(w)
		if got := listEntries(t); !slices.Equal(got, w) {
			t.Fatalf("%s: entries\n  %s\nwant\n  %s", what, strings.Join(got, "\n  "), strings.Join(w, "\n  "))
		}
	}
	want("inserted", stale, current, otherFE, tcp, unnatted, stale6, nodePort, nodePortK, local)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ct := NetlinkConntrack{}

	// The kernel filters: a flow's dump returns its entries only.
	for _, fam := range []model.Family{model.IPv4, model.IPv6} {
		c, err := openCtSocket(fam, time.Now().Add(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		f := map[model.Family]StaleFlow{model.IPv4: flow("10.96.0.53:53>10.244.2.54:5353"), model.IPv6: flow("[fd00:96::53]:53>[fd00:244::53]:5353")}[fam]
		rows, err := c.dump(flowDumpFilter(f))
		c.close()
		if err != nil || len(rows) != 1 || !c.filters {
			t.Fatalf("%s: the filtered dump of %s returned %d entries (%v, kernel filters used: %t), want 1", fam, flowString(f), len(rows), err, c.filters)
		}
	}

	// Filtered: an endpoint gone from 10.96.0.53:53, and a frontend that got endpoints.
	if err := ct.DeleteUDP(ctx, model.IPv4, []StaleFlow{flow("10.96.0.53:53>10.244.2.53:5353"), flow("10.96.0.60:53")}); err != nil {
		t.Fatalf("DeleteUDP: %v", err)
	}
	want("after the filtered delete", current, otherFE, tcp, stale6, nodePort, nodePortK, local)
	if err := ct.DeleteUDP(ctx, model.IPv6, []StaleFlow{flow("[fd00:96::53]:53>[fd00:244::53]:5353")}); err != nil {
		t.Fatalf("DeleteUDP IPv6: %v", err)
	}
	want("after the IPv6 delete", current, otherFE, tcp, nodePort, nodePortK, local)

	// More flows than maxFilteredDumps: one dump, the same result.
	many := []StaleFlow{flow("10.96.0.99:53>10.244.2.53:5353")}
	for i := range maxFilteredDumps {
		many = append(many, StaleFlow{Frontend: netip.AddrPortFrom(netip.MustParseAddr("10.96.1.1"), uint16(1000+i))})
	}
	if err := ct.DeleteUDP(ctx, model.IPv4, many); err != nil {
		t.Fatalf("DeleteUDP of %d flows: %v", len(many), err)
	}
	want("after the unfiltered delete", current, tcp, nodePort, nodePortK, local)

	// The sweep: 10.96.0.53:53 is served by .54 only, the NodePort on every address by .54.
	stale.insert(t)
	served := UDPServed{
		ByFrontend: map[netip.AddrPort][]netip.AddrPort{netip.MustParseAddrPort("10.96.0.53:53"): {netip.MustParseAddrPort("10.244.2.54:5353")}},
		ByPort:     map[uint16][]netip.AddrPort{30053: {netip.MustParseAddrPort("10.244.2.54:5353")}},
	}
	if err := ct.SweepUDP(ctx, model.IPv4, served); err != nil {
		t.Fatalf("SweepUDP: %v", err)
	}
	want("after the sweep", current, tcp, nodePortK, local)

	// Bounded: a context that has ended fails at once and leaves the entries alone.
	ended, stop := context.WithCancel(context.Background())
	stop()
	stale.insert(t)
	start := time.Now()
	if err := ct.DeleteUDP(ended, model.IPv4, []StaleFlow{flow("10.96.0.53:53>10.244.2.53:5353")}); err == nil {
		t.Errorf("DeleteUDP with an ended context succeeded")
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("DeleteUDP with an ended context took %v", took)
	}
	eventually(t, "the abandoned call to end", func() bool { return !netlinkBusy.Load() }, nil)
	if err := ct.DeleteUDP(ctx, model.IPv4, []StaleFlow{flow("10.96.0.53:53>10.244.2.53:5353")}); err != nil {
		t.Fatalf("DeleteUDP after an abandoned call: %v", err)
	}
	want("at the end", current, tcp, nodePortK, local)
}
