package bench

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/portico-dev/portico/e2e/harness/netns"
	"github.com/portico-dev/portico/e2e/harness/traffic"
)

// Live endpoints: the traffic changes (measureTraffic) replace endpoints by addresses
// that answer, so that a change is timed as a user sees it: until a connection to the
// ClusterIP reaches a new endpoint. pod-b1 treats the whole of liveNet as its own (a local
// route: a socket can bind any of its addresses), node-b routes liveNet to pod-b1 and
// node-a to node-b, as a pod network would; each change opens servers on its new
// addresses in pod-b1 (port TargetPort) and closes them after the sample. Every address is
// used once per run, like the never-used addresses of the kernel-side changes.
var liveNet = netip.MustParsePrefix("10.252.0.0/16")

// setupLive adds liveNet's routes in pod-b1, node-b and node-a.
func setupLive(topo *netns.Topology) error {
	dst := netns.IPNet(liveNet)
	podB1 := topo.PodIP(netns.PodB1, netns.IPv4)
	nodeB := topo.NodeIP(netns.NodeB, netns.IPv4)
	steps := []struct {
		ns    string
		route func() (*netlink.Route, error)
	}{
		{netns.PodB1, func() (*netlink.Route, error) {
			lo, err := netlink.LinkByName("lo")
			if err != nil {
				return nil, err
			}
			return &netlink.Route{Dst: dst, Type: unix.RTN_LOCAL, Table: unix.RT_TABLE_LOCAL, Scope: netlink.SCOPE_HOST, LinkIndex: lo.Attrs().Index}, nil
		}},
		{netns.NodeB, func() (*netlink.Route, error) { return &netlink.Route{Dst: dst, Gw: net.IP(podB1.AsSlice())}, nil }},
		{netns.NodeA, func() (*netlink.Route, error) { return &netlink.Route{Dst: dst, Gw: net.IP(nodeB.AsSlice())}, nil }},
	}
	for _, s := range steps {
		err := topo.Do(s.ns, func() error {
			r, err := s.route()
			if err != nil {
				return err
			}
			return netlink.RouteAdd(r)
		})
		if err != nil {
			return fmt.Errorf("route to the live endpoints (%s) in %s: %w", liveNet, topo.Name(s.ns), err)
		}
	}
	return nil
}

// liveAddrs hands out liveNet's addresses, each once.
type liveAddrs struct {
	mu   sync.Mutex
	next uint32
}

// take returns n never-used live addresses.
func (l *liveAddrs) take(n int) []netip.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]netip.Addr, n)
	for i := range out {
		l.next++
		if l.next >= 1<<16-1 {
			l.next = 1 // a run makes far fewer changes
		}
		out[i] = addOffset(liveNet.Addr(), l.next)
	}
	return out
}

// probeRound is how often probeUntil opens connections.
const probeRound = 2 * time.Millisecond

// probeUntil opens connections from namespace from to dst, k at a time every probeRound,
// until one is answered by one of want; it returns when that answer came (zero after
// timeout) and how many connections it opened. Connections to an old endpoint that does
// not answer give up after 200 ms; at most 256 are open at once.
func probeUntil(ctx context.Context, topo *netns.Topology, from string, dst netip.AddrPort, want []netip.Addr, k int, timeout time.Duration) (time.Time, int) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	found := make(chan time.Time, 1)
	sem := make(chan struct{}, 256)
	dial := topo.Dialer(from)
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(probeRound)
	defer tick.Stop()
	opened := 0
	for {
		for j := 0; j < k; j++ {
			select {
			case sem <- struct{}{}:
			default:
				continue // too many in flight: skip this one
			}
			opened++
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				if at, ok := probeOnce(ctx, dial, dst, want); ok {
					select {
					case found <- at:
					default:
					}
				}
			}()
		}
		select {
		case at := <-found:
			cancel()
			return at, opened
		case <-ctx.Done():
			return time.Time{}, opened
		case <-tick.C:
		}
	}
}

// probeOnce opens one connection and reports when it was answered by one of want.
func probeOnce(ctx context.Context, dial netns.DialFunc, dst netip.AddrPort, want []netip.Addr) (time.Time, bool) {
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	c, err := dial(cctx, "tcp4", dst.String())
	if err != nil {
		return time.Time{}, false
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 128)
	n, _ := c.Read(buf) // the server writes its line and closes: n > 0 is an answer
	at := time.Now()
	if n == 0 {
		return time.Time{}, false
	}
	local, _, _ := strings.Cut(string(buf[:n]), " ")
	ap, perr := netip.ParseAddrPort(local)
	if perr != nil {
		return time.Time{}, false
	}
	for _, w := range want {
		if ap.Addr() == w {
			return at, true
		}
	}
	return time.Time{}, false
}

// serveLive opens servers on addrs in pod-b1 (port TargetPort).
func serveLive(topo *netns.Topology, addrs []netip.Addr) (*traffic.Server, error) {
	return traffic.Serve(topo, netns.PodB1, addrs, []traffic.PortSpec{{Port: TargetPort, Protocol: traffic.TCP}})
}
