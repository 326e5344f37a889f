package traffic

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

// MaxProbes caps the count of one ProbeN call.
const MaxProbes = 10000

// Stats summarises a series of probes.
type Stats struct {
	// Sent is how many probes ran (fewer than asked when ctx ended first).
	Sent int
	// Outcomes counts probes per outcome.
	Outcomes map[Outcome]int
	// Servers counts answers per answering address and port.
	Servers map[netip.AddrPort]int
	// Peers counts answers per source address the servers saw (ports dropped).
	Peers map[netip.Addr]int
	// LastErr is the error of the last probe that was not OK.
	LastErr error
}

// ProbeN runs n sequential probes (at most MaxProbes), each a new connection with its
// own timeout, and stops early when ctx ends. It takes at most about n*timeout.
func ProbeN(ctx context.Context, topo *netns.Topology, fromNS string, src netip.Addr,
	dst netip.AddrPort, proto string, timeout time.Duration, n int) Stats {
	s := Stats{Outcomes: map[Outcome]int{}, Servers: map[netip.AddrPort]int{}, Peers: map[netip.Addr]int{}}
	n = min(n, MaxProbes)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		r := Probe(ctx, topo, fromNS, src, dst, proto, timeout)
		s.Sent++
		s.Outcomes[r.Outcome]++
		if r.Outcome == OK {
			s.Servers[r.Server]++
			s.Peers[r.SeenPeer.Addr()]++
		} else {
			s.LastErr = r.Err
		}
	}
	return s
}

// OK returns how many probes were answered.
func (s Stats) OK() int { return s.Outcomes[OK] }

// String renders the stats compactly for test logs.
func (s Stats) String() string {
	var parts []string
	for o, c := range s.Outcomes {
		parts = append(parts, fmt.Sprintf("%s=%d", o, c))
	}
	sort.Strings(parts)
	var srv []string
	for a, c := range s.Servers {
		srv = append(srv, fmt.Sprintf("%s:%d", a, c))
	}
	sort.Strings(srv)
	out := fmt.Sprintf("sent=%d %s servers=[%s]", s.Sent, strings.Join(parts, " "), strings.Join(srv, " "))
	if s.LastErr != nil {
		out += " last error: " + s.LastErr.Error()
	}
	return out
}

// SCTPSupported reports whether this kernel can open SCTP sockets, and if not, why.
func SCTPSupported() (bool, string) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_SCTP)
	if err != nil {
		return false, fmt.Sprintf("socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP): %v", err)
	}
	_ = unix.Close(fd)
	return true, ""
}
