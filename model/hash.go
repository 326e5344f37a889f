package model

import (
	"net/netip"
)

// FNV-1a, 64 bits.
const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// hasher feeds a canonical binary encoding of a value into FNV-1a as it goes: it
// allocates nothing (a compile of 10,000 Service ports hashes every one of them).
type hasher struct {
	sum uint64
}

func newHasher() hasher { return hasher{sum: fnvOffset64} }

func (h *hasher) byte(b byte) {
	h.sum ^= uint64(b)
	h.sum *= fnvPrime64
}

func (h *hasher) u64(v uint64) {
	for range 8 {
		h.byte(byte(v))
		v >>= 8
	}
}

func (h *hasher) str(s string) {
	h.u64(uint64(len(s)))
	for i := range len(s) {
		h.byte(s[i])
	}
}

func (h *hasher) flag(b bool) {
	if b {
		h.byte(1)
	} else {
		h.byte(0)
	}
}

func (h *hasher) addr(a netip.Addr) {
	switch {
	case !a.IsValid():
		h.byte(0)
	case a.Is4():
		h.byte(4)
		for _, b := range a.As4() {
			h.byte(b)
		}
	default:
		h.byte(6)
		for _, b := range a.As16() {
			h.byte(b)
		}
	}
}

func (h *hasher) endpoints(eps []Endpoint) {
	h.u64(uint64(len(eps)))
	for _, e := range eps {
		h.addr(e.Addr)
		h.u64(uint64(e.Port))
		h.flag(e.Local)
		h.flag(e.Ready)
		h.flag(e.Serving)
		h.flag(e.Terminating)
	}
	// A nil list ("not used") hashes differently from an empty one ("no endpoints").
	h.flag(eps == nil)
}

func (sp *ServicePort) computeHash() uint64 {
	h := newHasher()
	h.str(sp.Name.Namespace)
	h.str(sp.Name.Name)
	h.str(sp.Name.Port)
	h.byte(byte(sp.Name.Protocol))
	h.u64(uint64(len(sp.Frontends)))
	for _, f := range sp.Frontends {
		h.byte(byte(f.Kind))
		h.addr(f.Addr)
		h.u64(uint64(f.Port))
	}
	h.endpoints(sp.Cluster)
	h.endpoints(sp.Local)
	for _, c := range Classes {
		t := sp.Traffic(c)
		h.byte(byte(t.Endpoints))
		h.byte(byte(t.Masquerade))
		h.byte(byte(t.Empty))
	}
	h.u64(uint64(len(sp.Hairpin)))
	for _, a := range sp.Hairpin {
		h.addr(a)
	}
	h.u64(uint64(sp.Affinity.Timeout))
	h.u64(uint64(len(sp.SourceRanges)))
	for _, p := range sp.SourceRanges {
		h.addr(p.Addr())
		h.u64(uint64(p.Bits()))
	}
	h.u64(uint64(sp.HealthCheckNodePort))
	h.str(sp.Scheduler)
	return h.sum
}
