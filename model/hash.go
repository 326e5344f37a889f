package model

import (
	"encoding/binary"
	"hash/fnv"
	"net/netip"
)

// hasher feeds a canonical binary encoding of a value into FNV-1a.
type hasher struct {
	buf []byte
}

func (h *hasher) u64(v uint64) { h.buf = binary.LittleEndian.AppendUint64(h.buf, v) }

func (h *hasher) str(s string) {
	h.u64(uint64(len(s)))
	h.buf = append(h.buf, s...)
}

func (h *hasher) flag(b bool) {
	if b {
		h.buf = append(h.buf, 1)
	} else {
		h.buf = append(h.buf, 0)
	}
}

func (h *hasher) addr(a netip.Addr) {
	b, _ := a.MarshalBinary()
	h.str(string(b))
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
	h := hasher{buf: make([]byte, 0, 256)}
	h.str(sp.Name.String())
	h.u64(uint64(len(sp.Frontends)))
	for _, f := range sp.Frontends {
		h.u64(uint64(f.Kind))
		h.addr(f.Addr)
		h.u64(uint64(f.Port))
	}
	h.endpoints(sp.Cluster)
	h.endpoints(sp.Local)
	for _, c := range Classes {
		t := sp.Traffic(c)
		h.u64(uint64(t.Endpoints))
		h.u64(uint64(t.Masquerade))
		h.u64(uint64(t.Empty))
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
	f := fnv.New64a()
	_, _ = f.Write(h.buf)
	return f.Sum64()
}
