package nftables

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// A cold load sends the rules of Service ports over netlink (coldPiece), encoded the way
// nft 1.0.6 encodes the same text (read with `nft --debug=netlink`), so that the kernel
// holds, and `nft list` shows, exactly what an nft transaction would have made. The
// renderer writes few rule forms per port (render.go); ruleExprs knows these:
//
//	[MATCH] jump CHAIN | goto CHAIN | return
//	meta l4proto PROTO dnat FAMILY to numgen random mod N offset K map @MAP
//
// where MATCH is `ip saddr PREFIX` (`ip6`), `iifname "NAME"` (or "PREFIX*") or
// `fib saddr type local`. Any other text (session affinity, several pod CIDRs, a name
// nft would quote) has no netlink form here, and its piece goes through nft as before.

// reg1 is the data register nft loads and compares in: the first 128-bit one.
const reg1 = unix.NFT_REG_1

// ruleExprs returns the expressions of a rule text for family f, or false if the text is
// not one of the forms above.
func ruleExprs(f fam, text string) ([]expr.Any, bool) {
	toks := strings.Fields(text)
	if len(toks) > 0 && toks[0] == "meta" {
		return dnatExprs(f, toks)
	}
	n, match, ok := matchExprs(f, toks)
	if !ok {
		return nil, false
	}
	v, ok := verdictExpr(toks[n:])
	if !ok {
		return nil, false
	}
	return append(match, v), true
}

// matchExprs returns the expressions of the match that toks start with and the number of
// tokens it takes (0 and no expressions when toks start with a verdict); false if toks
// start with something else.
func matchExprs(f fam, toks []string) (int, []expr.Any, bool) {
	switch {
	case len(toks) == 0:
		return 0, nil, false
	case toks[0] == "jump" || toks[0] == "goto" || toks[0] == "return":
		return 0, nil, true
	case len(toks) > 2 && toks[0] == f.ip && toks[1] == "saddr":
		e, ok := saddrExprs(f, toks[2])
		return 3, e, ok
	case len(toks) > 1 && toks[0] == "iifname":
		e, ok := ifnameExprs(toks[1])
		return 2, e, ok
	case len(toks) > 3 && toks[0] == "fib" && toks[1] == "saddr" && toks[2] == "type" && toks[3] == "local":
		return 4, []expr.Any{
			&expr.Fib{Register: reg1, FlagSADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binary.NativeEndian.AppendUint32(nil, unix.RTN_LOCAL)},
		}, true
	}
	return 0, nil, false
}

// verdictExpr returns the expression of a verdict that takes all of toks.
func verdictExpr(toks []string) (expr.Any, bool) {
	switch {
	case len(toks) == 1 && toks[0] == "return":
		return &expr.Verdict{Kind: expr.VerdictReturn}, true
	case len(toks) == 2 && toks[0] == "jump" && plain(toks[1], maxNameLen):
		return &expr.Verdict{Kind: expr.VerdictJump, Chain: toks[1]}, true
	case len(toks) == 2 && toks[0] == "goto" && plain(toks[1], maxNameLen):
		return &expr.Verdict{Kind: expr.VerdictGoto, Chain: toks[1]}, true
	}
	return nil, false
}

// saddrExprs matches the source address against one prefix (or address): nft loads the
// prefix's whole bytes and compares them, or, for a prefix that ends inside a byte, loads
// the whole address and masks it first.
func saddrExprs(f fam, s string) ([]expr.Any, bool) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		a, aerr := netip.ParseAddr(s)
		if aerr != nil {
			return nil, false
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	addr, ok := addrBytes(f, p.Addr().String())
	if !ok || p.Bits() <= 0 || p != p.Masked() {
		return nil, false
	}
	offset := uint32(12) // ip saddr
	if f.ip == "ip6" {
		offset = 8
	}
	load := &expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: offset}
	if p.Bits()%8 == 0 {
		load.Len = uint32(p.Bits() / 8)
		return []expr.Any{load, &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: addr[:load.Len]}}, true
	}
	load.Len = uint32(len(addr))
	maskBytes := make([]byte, len(addr))
	for i := range maskBytes {
		bits := min(max(p.Bits()-8*i, 0), 8)
		maskBytes[i] = byte(0xff << (8 - bits))
	}
	return []expr.Any{
		load,
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: load.Len, Mask: maskBytes, Xor: make([]byte, len(addr))},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: addr},
	}, true
}

// ifnameExprs matches the input interface's name, quoted: a whole name is compared
// padded to IFNAMSIZ, "PREFIX*" only on the prefix's bytes.
func ifnameExprs(quoted string) ([]expr.Any, bool) {
	name, ok := strings.CutPrefix(quoted, `"`)
	if name, ok = strings.CutSuffix(name, `"`); !ok {
		return nil, false
	}
	prefix, wildcard := strings.CutSuffix(name, "*")
	if !plain(prefix, unix.IFNAMSIZ-1) {
		return nil, false
	}
	data := []byte(prefix)
	if !wildcard {
		data = append(data, make([]byte, unix.IFNAMSIZ-len(prefix))...)
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: data},
	}, true
}

// protoNumbers are the protocols a port's DNAT rule matches.
var protoNumbers = map[string]byte{"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP, "sctp": unix.IPPROTO_SCTP}

// dnatExprs encodes `meta l4proto PROTO dnat FAMILY to numgen random mod N [offset K] map
// @MAP`: the number picks an `addr . port` value of the endpoint map, whose address lands
// in the first data register and whose port right after it.
func dnatExprs(f fam, toks []string) ([]expr.Any, bool) {
	want := []string{"meta", "l4proto", "", "dnat", f.ip, "to", "numgen", "random", "mod", ""}
	if len(toks) != len(want)+2 && len(toks) != len(want)+4 {
		return nil, false
	}
	for i, w := range want {
		if w != "" && toks[i] != w {
			return nil, false
		}
	}
	num, ok := protoNumbers[toks[2]]
	mod, err := strconv.ParseUint(toks[9], 10, 32)
	if !ok || err != nil || mod == 0 {
		return nil, false
	}
	rest, offset := toks[len(want):], uint64(0)
	if len(rest) == 4 {
		if rest[0] != "offset" {
			return nil, false
		}
		if offset, err = strconv.ParseUint(rest[1], 10, 32); err != nil {
			return nil, false
		}
		rest = rest[2:]
	}
	set, ok := strings.CutPrefix(rest[1], "@")
	if rest[0] != "map" || !ok || !plain(set, maxNameLen) {
		return nil, false
	}
	// The value's address lands in the first data register, its port right after it: in
	// the next 32-bit register after 4 bytes, in the next 128-bit one after 16.
	nat := &expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1, RegProtoMin: unix.NFT_REG32_01}
	if f.ip == "ip6" {
		nat.Family, nat.RegProtoMin = unix.NFPROTO_IPV6, unix.NFT_REG_2
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{num}},
		&expr.Numgen{Register: reg1, Modulus: uint32(mod), Type: unix.NFT_NG_RANDOM, Offset: uint32(offset)},
		&expr.Lookup{SourceRegister: reg1, DestRegister: reg1, IsDestRegSet: true, SetName: set},
		nat,
	}, true
}
