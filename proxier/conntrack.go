package proxier

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"

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

// NetlinkConntrack deletes conntrack entries through netlink, in the current network
// namespace.
type NetlinkConntrack struct{}

// DeleteUDP implements ConntrackCleaner with one table dump for all flows.
func (NetlinkConntrack) DeleteUDP(_ context.Context, family model.Family, flows []StaleFlow) error {
	if len(flows) == 0 {
		return nil
	}
	fam := netlink.InetFamily(unix.AF_INET)
	if family == model.IPv6 {
		fam = netlink.InetFamily(unix.AF_INET6)
	}
	filters := make([]netlink.CustomConntrackFilter, len(flows))
	for i, f := range flows {
		filters[i] = flowFilter(f)
	}
	if _, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, fam, filters...); err != nil {
		return fmt.Errorf("deleting stale UDP conntrack entries: %w", err)
	}
	return nil
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
