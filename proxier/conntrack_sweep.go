package proxier

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/portico-dev/portico/model"
)

// UDPServed is what the UDP frontends of one family serve once a sync has landed: for each
// frontend, the endpoints its new flows may be DNATed to. The first sync after a start
// uses it to find the conntrack entries left from before: flows towards endpoints that
// went away, or that reached a frontend before it had endpoints, while portico was down.
type UDPServed struct {
	// ByFrontend holds the frontends with an address.
	ByFrontend map[netip.AddrPort][]netip.AddrPort
	// ByPort holds the frontends served on every local address (a NodePort without
	// nodePortAddresses), by port.
	ByPort map[uint16][]netip.AddrPort
}

// Stale reports whether a UDP conntrack entry whose original destination is dst and whose
// replies come from replySrc must go: it was DNATed to an address that no longer serves
// dst, or it was not DNATed although dst has endpoints now. Entries towards no frontend
// are never stale; for a frontend served on every local address only DNATed entries are
// considered (the others may be the node's own traffic to that port).
func (s UDPServed) Stale(dst, replySrc netip.AddrPort) bool {
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	replySrc = netip.AddrPortFrom(replySrc.Addr().Unmap(), replySrc.Port())
	natted := replySrc != dst
	eps, ok := s.ByFrontend[dst]
	if !ok {
		if eps, ok = s.ByPort[dst.Port()]; !ok || !natted {
			return false
		}
	}
	if !natted {
		return len(eps) > 0
	}
	return !slices.Contains(eps, replySrc)
}

// udpServed builds the UDPServed of t.
func udpServed(t *model.Table) UDPServed {
	s := UDPServed{ByFrontend: map[netip.AddrPort][]netip.AddrPort{}, ByPort: map[uint16][]netip.AddrPort{}}
	for _, name := range t.Names() {
		sp, ok := t.Get(name)
		if !ok || name.Protocol != model.UDP {
			continue
		}
		for _, f := range sp.Frontends {
			eps := []netip.AddrPort{}
			for _, e := range sp.ServedBy(f) {
				eps = append(eps, e.AddrPort())
			}
			if !f.Addr.IsValid() {
				s.ByPort[f.Port] = append(s.ByPort[f.Port], eps...)
				continue
			}
			dst := netip.AddrPortFrom(f.Addr, f.Port)
			s.ByFrontend[dst] = append(s.ByFrontend[dst], eps...)
		}
	}
	return s
}

// ConntrackSweeper is implemented by a ConntrackCleaner that can also delete, in one pass
// over the kernel's UDP entries of a family, those that served says are stale.
type ConntrackSweeper interface {
	// SweepUDP deletes the UDP entries of family that served says are stale.
	SweepUDP(ctx context.Context, family model.Family, served UDPServed) error
}

// sweepConntrack runs the after-start sweep of family fam against the rules last applied.
// A cleaner that cannot sweep is skipped.
func (p *Proxier) sweepConntrack(ctx context.Context, fam model.Family) error {
	sw, ok := p.opts.Conntrack.(ConntrackSweeper)
	t := p.applied[fam]
	if !ok || t == nil {
		return nil
	}
	if err := sw.SweepUDP(ctx, fam, udpServed(t)); err != nil {
		return fmt.Errorf("sweeping the UDP conntrack entries of %s left from before the start: %w", fam, err)
	}
	return nil
}

// sortFlows orders flows by frontend, then endpoint.
func sortFlows(flows []StaleFlow) {
	slices.SortFunc(flows, func(a, b StaleFlow) int {
		return cmp.Or(a.Frontend.Compare(b.Frontend), a.Endpoint.Compare(b.Endpoint))
	})
}
