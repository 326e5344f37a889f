package nftables

import (
	"encoding/binary"
	"net/netip"
)

// storedGroup is an endpoint group as the mirror keeps it between syncs: its endpoints
// packed into bytes (packEndpoints). At 50,000 Services × 10 endpoints the groups held as
// netip.AddrPort values (32 bytes each) took 22 MB of the mirror; packed, an IPv4
// endpoint takes 6 bytes. A sync unpacks only the groups of the ports it changes.
type storedGroup struct {
	chain string
	block block
	// packed holds the endpoints, unless they do not pack (raw holds them then).
	packed string
	raw    []netip.AddrPort
}

// storeGroups returns the groups of a plan as the mirror keeps them.
func storeGroups(gs []groupPlan) []storedGroup {
	if len(gs) == 0 {
		return nil
	}
	out := make([]storedGroup, len(gs))
	for i, g := range gs {
		out[i] = storedGroup{chain: g.chain, block: g.block}
		if p, ok := packEndpoints(g.eps); ok {
			out[i].packed = p
		} else {
			out[i].raw = g.eps
		}
	}
	return out
}

// plan returns the group with its endpoints unpacked.
func (s storedGroup) plan() groupPlan {
	g := groupPlan{chain: s.chain, block: s.block, eps: s.raw}
	if s.raw == nil {
		g.eps = unpackEndpoints(s.packed)
	}
	return g
}

// len returns the number of endpoints of the group.
func (s storedGroup) len() int {
	if s.raw != nil || s.packed == "" {
		return len(s.raw)
	}
	return (len(s.packed) - 1) / (int(s.packed[0]) + 2)
}

// packEndpoints packs endpoints of one family as one byte giving the address length (4 or
// 16), then each endpoint's address and port (big-endian); false if they do not all have
// an address of that length without a zone (nothing the model makes), or if there are
// none.
func packEndpoints(eps []netip.AddrPort) (string, bool) {
	if len(eps) == 0 {
		return "", false
	}
	width := 16
	if eps[0].Addr().Is4() {
		width = 4
	}
	b := make([]byte, 1, 1+len(eps)*(width+2))
	b[0] = byte(width)
	for _, e := range eps {
		a := e.Addr()
		if a.Is4() != (width == 4) || a.Zone() != "" || !a.IsValid() {
			return "", false
		}
		b = append(b, a.AsSlice()...)
		b = binary.BigEndian.AppendUint16(b, e.Port())
	}
	return string(b), true
}

// unpackEndpoints is the inverse of packEndpoints.
func unpackEndpoints(p string) []netip.AddrPort {
	if p == "" {
		return nil
	}
	width := int(p[0])
	out := make([]netip.AddrPort, 0, (len(p)-1)/(width+2))
	for i := 1; i+width+2 <= len(p); i += width + 2 {
		a, _ := netip.AddrFromSlice([]byte(p[i : i+width]))
		out = append(out, netip.AddrPortFrom(a, binary.BigEndian.Uint16([]byte(p[i+width:i+width+2]))))
	}
	return out
}

// groupPlans returns the port's groups unpacked.
func (ps *portState) groupPlans() []groupPlan {
	out := make([]groupPlan, len(ps.groups))
	for i, g := range ps.groups {
		out[i] = g.plan()
	}
	return out
}

// groupBlock returns the block of the port's endpoint group read by chain.
func (ps *portState) groupBlock(chain string) (block, bool) {
	if ps == nil {
		return block{}, false
	}
	for _, g := range ps.groups {
		if g.chain == chain {
			return g.block, true
		}
	}
	return block{}, false
}
