//go:build e2e

package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portico-dev/portico/e2e/harness/traffic"
)

// sctpWarning is printed once per run: without SCTP sockets nothing can answer an SCTP
// association here.
var sctpWarning sync.Once

// checkSCTP checks an SCTP flow of the table. Without SCTP sockets (no CONFIG_IP_SCTP on
// the development kernel) nothing can answer an association, so it checks what does not
// need them, whatever the mode: a raw SCTP INIT sent from the flow's source to the
// frontend is DNATed by node-a to one of the expected endpoints (node-a's conntrack table
// shows it: conntrack and NAT handle SCTP even when the kernel has no SCTP sockets).
func checkSCTP(t *testing.T, f Flow, src netip.Addr, dst netip.AddrPort, want []netip.AddrPort) {
	t.Helper()
	if ok, why := traffic.SCTPSupported(); !ok {
		sctpWarning.Do(func() {
			msg := "SCTP SOCKETS ARE NOT SUPPORTED BY THIS KERNEL (" + why + "): no SCTP association can be " +
				"made end to end; SCTP flows check the DNAT of a raw INIT in node-a's conntrack table"
			fmt.Fprintln(os.Stderr, "e2e: WARNING: "+msg)
		})
	}
	if len(want) == 0 || f.From != client {
		t.Fatalf("flow %q: an SCTP flow must start at the client and expect endpoints", f.Name)
	}
	const srcPort = 40123
	deadline := time.Now().Add(3 * time.Second)
	var entries []ctEntry
	for attempt := 1; time.Now().Before(deadline); attempt++ {
		if err := traffic.SendSCTPInit(suite.Topo, client, src, srcPort, dst, 0x1234abcd); err != nil {
			t.Fatalf("the raw approach does not work here: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
		var err error
		if entries, err = conntrackEntries(nodeA, "sctp"); err != nil {
			t.Fatalf("reading node-a's conntrack table: %v", err)
		}
		for _, e := range entries {
			if e.origSrc == netip.AddrPortFrom(src, srcPort) && e.origDst == dst {
				if !slices.Contains(want, e.replySrc) {
					t.Fatalf("SCTP INIT %s -> %s: conntrack reply source %s, want one of the endpoints %v (DNAT); entry: %s",
						e.origSrc, dst, e.replySrc, want, e.line)
				}
				t.Logf("attempt %d: node-a conntrack: %s", attempt, e.line)
				return
			}
		}
	}
	t.Fatalf("no SCTP conntrack entry for %s:%d -> %s in node-a after 3s of INITs (a wrong checksum or a "+
		"missing rule would explain it); SCTP entries: %v", src, srcPort, dst, entries)
}

// ctEntry is one conntrack entry: the original and the reply tuples.
type ctEntry struct {
	origSrc, origDst, replySrc, replyDst netip.AddrPort
	line                                 string
}

// conntrackEntries reads the conntrack entries of protocol proto (as /proc names it:
// tcp, udp, sctp) inside namespace ns. It reads /proc/thread-self/net/nf_conntrack on a
// thread switched into ns, because vishvananda/netlink does not parse SCTP ports.
func conntrackEntries(ns, proto string) ([]ctEntry, error) {
	var data []byte
	err := suite.Topo.Do(ns, func() error {
		var err error
		data, err = os.ReadFile("/proc/thread-self/net/nf_conntrack")
		return err
	})
	if err != nil {
		return nil, err
	}
	var out []ctEntry
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[2] != proto {
			continue
		}
		var vals []map[string]string
		for _, kv := range f {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			if k == "src" {
				vals = append(vals, map[string]string{})
			}
			if len(vals) > 0 {
				vals[len(vals)-1][k] = v
			}
		}
		if len(vals) < 2 {
			continue
		}
		e := ctEntry{line: line}
		e.origSrc, e.origDst = tuple(vals[0], "src", "sport"), tuple(vals[0], "dst", "dport")
		e.replySrc, e.replyDst = tuple(vals[1], "src", "sport"), tuple(vals[1], "dst", "dport")
		out = append(out, e)
	}
	return out, nil
}

func tuple(m map[string]string, addr, port string) netip.AddrPort {
	a, err := netip.ParseAddr(m[addr])
	if err != nil {
		return netip.AddrPort{}
	}
	var p uint16
	_, _ = fmt.Sscan(m[port], &p)
	return netip.AddrPortFrom(a, p)
}
