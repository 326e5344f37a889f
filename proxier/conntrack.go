package proxier

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/portico-dev/portico/model"
)

// StaleFlow selects UDP conntrack entries that would keep sending packets to an endpoint
// that is gone, or past a Service that now has endpoints.
type StaleFlow struct {
	// Frontend is the original destination. An invalid Addr matches any address (a
	// NodePort on every local address).
	Frontend netip.AddrPort
	// Endpoint is the DNAT target (the reply source); invalid matches entries of every
	// target.
	Endpoint netip.AddrPort
}

// ConntrackCleaner deletes conntrack entries.
type ConntrackCleaner interface {
	// DeleteUDP deletes the UDP entries of family that match any of flows.
	DeleteUDP(ctx context.Context, family model.Family, flows []StaleFlow) error
}

// staleUDPFlows lists the UDP flows to clear after next replaced prev: flows DNATed to an
// endpoint that no longer serves the frontend, and flows to a frontend that had no
// endpoints and now has some (packets sent meanwhile may have created un-NATed entries).
func staleUDPFlows(prev, next *model.Table, d model.Diff) []StaleFlow {
	if prev == nil {
		return nil
	}
	var out []StaleFlow
	for _, name := range slices.Concat(d.Changed, d.Removed) {
		if name.Protocol != model.UDP {
			continue
		}
		old, existed := prev.Get(name)
		cur, exists := next.Get(name)
		if !existed && exists {
			// A new Service port: packets sent to its frontends before it existed may
			// have left un-NATed entries (its endpoints went from none to some).
			old = &model.ServicePort{Name: name, Frontends: cur.Frontends}
		}
		if old == nil {
			continue
		}
		out = append(out, staleForPort(old, cur)...)
	}
	return out
}

// staleForPort compares one UDP Service port before and after (cur is nil when removed).
func staleForPort(old, cur *model.ServicePort) []StaleFlow {
	var out []StaleFlow
	for _, f := range old.Frontends {
		dst := netip.AddrPortFrom(f.Addr, f.Port)
		before := frontendEndpoints(old, f)
		after := []model.Endpoint(nil)
		if cur != nil && slices.Contains(cur.Frontends, f) {
			after = frontendEndpoints(cur, f)
		}
		for _, e := range before {
			if !slices.ContainsFunc(after, func(a model.Endpoint) bool { return a.AddrPort() == e.AddrPort() }) {
				out = append(out, StaleFlow{Frontend: dst, Endpoint: e.AddrPort()})
			}
		}
		if len(before) == 0 && len(after) > 0 {
			out = append(out, StaleFlow{Frontend: dst})
		}
	}
	return out
}

// frontendEndpoints returns every endpoint traffic to f may be sent to.
func frontendEndpoints(sp *model.ServicePort, f model.Frontend) []model.Endpoint {
	return sp.ServedBy(f)
}

// NetlinkConntrack deletes conntrack entries through netlink, in the network namespace of
// the calling thread. Each call is bounded by its context: the netlink socket's timeouts
// follow the deadline, and a call still running when the context ends is reported as
// failed (and tried again by the proxier) while it finishes in the background; a call made
// meanwhile fails at once instead of stacking up behind it.
type NetlinkConntrack struct{}

// DeleteUDP implements ConntrackCleaner. Each flow is deleted with a dump that the kernel
// filters (its frontend, its endpoint as the source of replies), so that the table is not
// copied out for every change; many flows are deleted with one dump of the UDP entries.
func (NetlinkConntrack) DeleteUDP(ctx context.Context, family model.Family, flows []StaleFlow) error {
	if len(flows) == 0 {
		return nil
	}
	return runBounded(ctx, family, func(c *ctSocket) error { return c.deleteFlows(flows) })
}

// SweepUDP implements ConntrackSweeper with one dump of the UDP entries.
func (NetlinkConntrack) SweepUDP(ctx context.Context, family model.Family, served UDPServed) error {
	return runBounded(ctx, family, func(c *ctSocket) error {
		return c.deleteMatching(udpOnly(), []netlink.CustomConntrackFilter{sweepFilter{served}})
	})
}

// netlinkBusy is set while a conntrack call runs.
var netlinkBusy atomic.Bool

// runBounded runs work over a netfilter socket of family opened in the caller's network
// namespace, giving up when ctx ends.
func runBounded(ctx context.Context, family model.Family, work func(*ctSocket) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("conntrack, %s: %w", family, err)
	}
	if !netlinkBusy.CompareAndSwap(false, true) {
		return fmt.Errorf("conntrack, %s: an earlier call that timed out is still running", family)
	}
	deadline, _ := ctx.Deadline()
	c, err := openCtSocket(family, deadline)
	if err != nil {
		netlinkBusy.Store(false)
		return err
	}
	done := make(chan error, 1)
	go func() {
		err := work(c)
		c.close()
		netlinkBusy.Store(false) // before the caller learns the result and may call again
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("conntrack, %s: %w", family, ctx.Err())
	}
}

// inetFamily is the netlink family of f.
func inetFamily(f model.Family) netlink.InetFamily {
	if f == model.IPv6 {
		return netlink.InetFamily(unix.AF_INET6)
	}
	return netlink.InetFamily(unix.AF_INET)
}

// sweepFilter matches the UDP entries that a UDPServed says are stale.
type sweepFilter struct{ served UDPServed }

// MatchConntrackFlow implements netlink.CustomConntrackFilter.
func (f sweepFilter) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	if flow.Forward.Protocol != unix.IPPROTO_UDP {
		return false
	}
	dst, ok1 := addrPort(flow.Forward.DstIP, flow.Forward.DstPort)
	src, ok2 := addrPort(flow.Reverse.SrcIP, flow.Reverse.SrcPort)
	return ok1 && ok2 && f.served.Stale(dst, src)
}

func addrPort(ip net.IP, port uint16) (netip.AddrPort, bool) {
	a, ok := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), port), ok
}

// flowFilter matches UDP conntrack flows selected by a StaleFlow.
type flowFilter StaleFlow

// MatchConntrackFlow implements netlink.CustomConntrackFilter.
func (f flowFilter) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	if flow.Forward.Protocol != unix.IPPROTO_UDP {
		return false
	}
	if !matchAddrPort(f.Frontend, flow.Forward.DstIP, flow.Forward.DstPort) {
		return false
	}
	return !f.Endpoint.IsValid() || matchAddrPort(f.Endpoint, flow.Reverse.SrcIP, flow.Reverse.SrcPort)
}

func matchAddrPort(want netip.AddrPort, ip net.IP, port uint16) bool {
	if want.Port() != port {
		return false
	}
	if !want.Addr().IsValid() {
		return true
	}
	got, ok := netip.AddrFromSlice(ip)
	return ok && got.Unmap() == want.Addr()
}
