package ipsettest

import (
	"fmt"
	"net/netip"

	"github.com/portico-dev/portico/model"
)

// PacketFields are the fields of a packet that `-m set --match-set` looks up.
type PacketFields struct {
	// Src is the source address.
	Src netip.Addr
	// Dst is the destination address (after any DNAT).
	Dst netip.Addr
	// DstPort is the destination port (after any DNAT).
	DstPort uint16
	// Proto is the transport protocol.
	Proto model.Protocol
}

// Match reports whether the packet p is in the named set, looked up as the iptables rule
// `-m set --match-set NAME FLAGS` does: flags holds one "src" or "dst" per dimension of
// the set's type (`dst,dst,src` is []string{"dst", "dst", "src"}). For an address
// component the flag picks the packet's source or destination address; for a port
// component, its source or destination port with the packet's protocol. The source port
// is not among the fields, so `src` on a port component is an error, as is a flag count
// other than the set's dimension, a missing set, or addresses of the other family.
func (s *Sets) Match(name string, flags []string, p PacketFields) (bool, error) {
	st, err := s.lookup(name)
	if err != nil {
		return false, err
	}
	if len(flags) != len(st.dims) {
		return false, fmt.Errorf("set %s is %s: %d flags %q, want %d", name, st.typ, len(flags), flags, len(st.dims))
	}
	if !st.family.Contains(p.Src) || !st.family.Contains(p.Dst) {
		return false, fmt.Errorf("set %s is of family %s, the packet %s -> %s is not", name, familyName(st.family), p.Src, p.Dst)
	}
	var key entry
	for i, c := range st.dims {
		if err := key.fill(i, c, flags[i], p); err != nil {
			return false, fmt.Errorf("set %s: %w", name, err)
		}
	}
	return st.contains(key), nil
}

// fill sets component i of a lookup key from the packet field flag selects.
func (e *entry) fill(i int, c component, flag string, p PacketFields) error {
	addr := p.Dst
	switch flag {
	case "dst":
	case "src":
		if c == compPort {
			return fmt.Errorf("flag %d is src on a port: the source port is not known", i+1)
		}
		addr = p.Src
	default:
		return fmt.Errorf("flag %d is %q, want src or dst", i+1, flag)
	}
	switch {
	case c == compPort:
		e.proto, e.port = p.Proto, p.DstPort
	case i == 0:
		e.ip = addr
	default:
		e.net = netip.PrefixFrom(addr, addr.BitLen())
	}
	return nil
}

// contains reports whether the set holds key: the third component of a hash:ip,port,net
// entry matches every address of its network.
func (st *set) contains(key entry) bool {
	if len(st.dims) < 3 || st.dims[2] != compNet {
		_, ok := st.entries[key.String(st.dims)]
		return ok
	}
	for _, e := range st.entries {
		if e.ip == key.ip && e.proto == key.proto && e.port == key.port && e.net.Contains(key.net.Addr()) {
			return true
		}
	}
	return false
}
