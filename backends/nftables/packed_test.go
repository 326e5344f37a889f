package nftables

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// TestStoredGroupRoundTrip: a group the mirror keeps gives back exactly the endpoints it
// was given (IPv4, IPv6, IPv4-mapped IPv6, and ones that do not pack), and its length;
// ten IPv4 endpoints take 61 bytes.
func TestStoredGroupRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	v4 := func() netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))}), uint16(rng.IntN(65536)))
	}
	v6 := func() netip.AddrPort {
		var a [16]byte
		for i := range a {
			a[i] = byte(rng.IntN(256))
		}
		return netip.AddrPortFrom(netip.AddrFrom16(a), uint16(rng.IntN(65536)))
	}
	mapped := func() netip.AddrPort {
		a := v4()
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr().As16()), a.Port())
	}
	zoned := func() netip.AddrPort { return netip.MustParseAddrPort("[fe80::1%eth0]:80") }
	cases := map[string][]netip.AddrPort{"empty": {}, "nil": nil}
	for n := range 20 {
		for name, gen := range map[string]func() netip.AddrPort{"v4": v4, "v6": v6, "mapped": mapped} {
			eps := make([]netip.AddrPort, n+1)
			for i := range eps {
				eps[i] = gen()
			}
			cases[name+string(rune('a'+n))] = eps
		}
	}
	cases["mixed"] = []netip.AddrPort{v4(), v6()}
	cases["mixed-mapped"] = []netip.AddrPort{v4(), mapped()}
	cases["zone"] = []netip.AddrPort{v6(), zoned()}
	for name, eps := range cases {
		g := groupPlan{chain: "c", block: block{start: 8, size: 16}, eps: eps}
		s := storeGroups([]groupPlan{g})[0]
		got := s.plan()
		if got.chain != g.chain || got.block != g.block || !slices.Equal(got.eps, g.eps) {
			t.Errorf("%s: stored %v, got back %v", name, g.eps, got.eps)
		}
		if s.len() != len(eps) {
			t.Errorf("%s: len %d, want %d", name, s.len(), len(eps))
		}
	}
	ten := make([]netip.AddrPort, 10)
	for i := range ten {
		ten[i] = v4()
	}
	if p, ok := packEndpoints(ten); !ok || len(p) != 61 {
		t.Errorf("ten IPv4 endpoints packed into %d bytes (%v), want 61", len(p), ok)
	}
}
