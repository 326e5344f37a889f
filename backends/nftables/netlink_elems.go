package nftables

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"strings"

	"sigs.k8s.io/knftables"
)

// A cold load's piece also sends its dispatch elements (service-ips, service-nodeports:
// `frontend : goto chain`) and its cluster-ips elements over netlink, in the batch that
// creates their chains and fills their endpoints (coldPiece). An element whose text form
// is not plain (a comment or a chain name nft would quote) goes through nft.

// setElem is one element of a shared set or map, encoded for netlink.
type setElem struct {
	set string
	el  nlElem
}

// encodeSetElem encodes a dispatch or cluster-IP element as the renderer wrote it (key
// fields, the value "goto <chain>", a comment) for family f; false for any other element
// and for one whose text form is not plain.
func encodeSetElem(f fam, e *knftables.Element) (setElem, bool) {
	name := e.Set + e.Map
	var key []byte
	var ok bool
	switch {
	case e.Map == mapServiceIPs && len(e.Key) == 3:
		key, ok = frontendKeyBytes(f, e.Key[0], e.Key[1], e.Key[2])
	case e.Map == mapServiceNodePorts && len(e.Key) == 2:
		key, ok = frontendKeyBytes(f, "", e.Key[0], e.Key[1])
	case e.Set == setClusterIPs && e.Map == "" && len(e.Key) == 1:
		key, ok = addrBytes(f, e.Key[0])
	}
	if !ok {
		return setElem{}, false
	}
	out := setElem{set: name, el: nlElem{key: key}}
	if e.Map != "" {
		chain, isGoto := strings.CutPrefix(strings.Join(e.Value, " . "), "goto ")
		if !isGoto || !plain(chain, maxNameLen) {
			return setElem{}, false
		}
		out.el.gotoChain = chain
	}
	if e.Comment != nil {
		if !plain(*e.Comment, maxCommentLen) {
			return setElem{}, false
		}
		out.el.comment = *e.Comment
	}
	return out, true
}

// plain reports whether s is stored as nft's text writes it (no quoting, no escapes).
func plain(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("./_:-", c) >= 0) {
			return false
		}
	}
	return true
}

// addrBytes is an address of family f as the kernel holds it (4 or 16 bytes).
func addrBytes(f fam, s string) ([]byte, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return nil, false
	}
	if f.ip == "ip" {
		if !a.Is4() {
			return nil, false
		}
		b := a.As4()
		return b[:], true
	}
	if !a.Is6() || a.Is4In6() {
		return nil, false
	}
	b := a.As16()
	return b[:], true
}

// frontendKeyBytes is the concatenation `addr . proto . port` (addr "" leaves it out):
// every field takes whole 32-bit registers, the protocol one byte and the port two in
// network byte order, each padded with zeros.
func frontendKeyBytes(f fam, addr, proto, port string) ([]byte, bool) {
	var key []byte
	if addr != "" {
		a, ok := addrBytes(f, addr)
		if !ok {
			return nil, false
		}
		key = a
	}
	num, ok := protoNumbers[proto]
	p, err := strconv.ParseUint(port, 10, 16)
	if !ok || err != nil {
		return nil, false
	}
	key = append(key, num, 0, 0, 0)
	key = binary.BigEndian.AppendUint16(key, uint16(p))
	return append(key, 0, 0), true
}

// endpointKey appends the key of o's element to dst: numgen's 32-bit result (the slot) in
// host byte order.
func endpointKey(dst []byte, o epOp) []byte {
	return binary.NativeEndian.AppendUint32(dst, o.slot)
}

// endpointValue appends the value of o's element to dst: the endpoint's address (4 bytes
// in table ip, 16 in ip6) then its port, both in network byte order, the port padded to a
// 32-bit register.
func endpointValue(dst []byte, f fam, o epOp) []byte {
	if a := o.ep.Addr().Unmap(); f.ip == "ip" && a.Is4() {
		a4 := a.As4()
		dst = append(dst, a4[:]...)
	} else {
		a16 := o.ep.Addr().As16()
		dst = append(dst, a16[:]...)
	}
	dst = binary.BigEndian.AppendUint16(dst, o.ep.Port())
	return append(dst, 0, 0)
}
