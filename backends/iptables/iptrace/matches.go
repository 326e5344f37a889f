package iptrace

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/portico-dev/portico/backends/iptables/ipsettest"
	"github.com/portico-dev/portico/model"
)

// protocols are the -p protocols the tracer knows.
var protocols = map[string]model.Protocol{"tcp": model.TCP, "udp": model.UDP, "sctp": model.SCTP}

// protoName returns iptables' spelling of p.
func protoName(p model.Protocol) string { return strings.ToLower(p.String()) }

// address parses -s/-d A[/M]: M is a prefix length or a mask, contiguous or not.
func (p *parser) address(opt string) error {
	v, err := p.value(opt)
	if err != nil {
		return err
	}
	addr, mask, err := parseAddrMask(v, p.fam)
	if err != nil {
		return fmt.Errorf("%s %s: %w", opt, v, err)
	}
	src := opt == "-s" || opt == "--source"
	return p.add(func(r *run, _ position) (bool, error) {
		a := r.pkt.dst.Addr()
		if src {
			a = r.pkt.src
		}
		return masked(a, mask) == addr, nil
	}, true, opt)
}

// parseAddrMask parses A[/M] of family fam and returns A&M and M.
func parseAddrMask(s string, fam model.Family) (netip.Addr, netip.Addr, error) {
	a, m, hasMask := strings.Cut(s, "/")
	addr, err := netip.ParseAddr(a)
	if err != nil || !fam.Contains(addr) || addr.Zone() != "" {
		return netip.Addr{}, netip.Addr{}, fmt.Errorf("not an %s address", fam)
	}
	bits := addr.BitLen()
	if !hasMask {
		m = strconv.Itoa(bits)
	}
	var mask netip.Addr
	if n, err := strconv.Atoi(m); err == nil {
		if n < 0 || n > bits {
			return netip.Addr{}, netip.Addr{}, fmt.Errorf("prefix length %d out of range", n)
		}
		mask = prefixMask(n, bits)
	} else if mask, err = netip.ParseAddr(m); err != nil || !fam.Contains(mask) {
		return netip.Addr{}, netip.Addr{}, fmt.Errorf("mask %q is neither a prefix length nor an %s mask", m, fam)
	}
	return masked(addr, mask), mask, nil
}

// prefixMask returns the mask of a prefix length n in an address of bits bits.
func prefixMask(n, bits int) netip.Addr {
	b := make([]byte, bits/8)
	for i := range b {
		switch {
		case n >= 8:
			b[i], n = 0xff, n-8
		case n > 0:
			b[i], n = byte(0xff<<(8-n)), 0
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// masked returns a & mask (a of the mask's family; unmapped otherwise).
func masked(a, mask netip.Addr) netip.Addr {
	x, m := a.AsSlice(), mask.AsSlice()
	if len(x) != len(m) {
		return netip.Addr{}
	}
	for i := range x {
		x[i] &= m[i]
	}
	out, _ := netip.AddrFromSlice(x)
	return out
}

// iface parses -i NAME (NAME+ matches every name with that prefix).
func (p *parser) iface(opt string) error {
	name, err := p.value(opt)
	if err != nil {
		return err
	}
	return p.add(func(r *run, _ position) (bool, error) {
		if prefix, ok := strings.CutSuffix(name, "+"); ok {
			return r.pkt.iif != "" && strings.HasPrefix(r.pkt.iif, prefix), nil
		}
		return r.pkt.iif == name, nil
	}, true, opt)
}

// protocol parses -p tcp|udp|sctp.
func (p *parser) protocol(opt string) error {
	name, err := p.value(opt)
	if err != nil {
		return err
	}
	proto, ok := protocols[name]
	if !ok || p.neg {
		return fmt.Errorf("-p %s is not modelled (tcp, udp, sctp without !)", name)
	}
	p.proto = proto
	return p.add(func(r *run, _ position) (bool, error) { return r.pkt.proto == proto, nil }, false, opt)
}

// dport parses --dport N or --dport N:M of -m tcp|udp|sctp.
func (p *parser) dport(opt string) error {
	if opt != "--dport" && opt != "--destination-port" {
		return fmt.Errorf("option %s of -m %s is not modelled", opt, p.module)
	}
	v, err := p.value(opt)
	if err != nil {
		return err
	}
	lo, hi, isRange := strings.Cut(v, ":")
	if !isRange {
		hi = lo
	}
	first, err1 := strconv.ParseUint(lo, 10, 16)
	last, err2 := strconv.ParseUint(hi, 10, 16)
	if err1 != nil || err2 != nil || first > last {
		return fmt.Errorf("--dport %q is not a port or a port range", v)
	}
	return p.add(func(r *run, _ position) (bool, error) {
		port := uint64(r.pkt.dst.Port())
		return port >= first && port <= last, nil
	}, true, opt)
}

// ctstate parses --ctstate STATE[,STATE...]. A first packet is NEW; DNAT holds once a
// DNAT rule rewrote it, SNAT once MASQUERADE did; ESTABLISHED, RELATED, INVALID and
// UNTRACKED never hold.
func (p *parser) ctstate(opt string) error {
	if opt != "--ctstate" {
		return fmt.Errorf("option %s of -m conntrack is not modelled", opt)
	}
	v, err := p.value(opt)
	if err != nil {
		return err
	}
	states := strings.Split(v, ",")
	for _, s := range states {
		switch s {
		case "NEW", "DNAT", "SNAT", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED":
		default:
			return fmt.Errorf("--ctstate %s is not modelled", s)
		}
	}
	return p.add(func(r *run, _ position) (bool, error) {
		for _, s := range states {
			if s == "NEW" || s == "DNAT" && r.pkt.dnat || s == "SNAT" && r.pkt.masq {
				return true, nil
			}
		}
		return false, nil
	}, true, opt)
}

// addrtype parses --dst-type LOCAL and --src-type LOCAL.
func (p *parser) addrtype(opt string) error {
	if opt != "--dst-type" && opt != "--src-type" {
		return fmt.Errorf("option %s of -m addrtype is not modelled", opt)
	}
	v, err := p.value(opt)
	if err != nil {
		return err
	}
	if v != "LOCAL" {
		return fmt.Errorf("%s %s is not modelled (LOCAL only)", opt, v)
	}
	dst := opt == "--dst-type"
	return p.add(func(r *run, _ position) (bool, error) {
		if dst {
			return r.t.host.IsLocal(r.pkt.dst.Addr()), nil
		}
		return r.t.host.IsLocal(r.pkt.src), nil
	}, true, opt)
}

// matchSet parses --match-set NAME FLAGS.
func (p *parser) matchSet(opt string) error {
	if opt != "--match-set" {
		return fmt.Errorf("option %s of -m set is not modelled", opt)
	}
	name, err := p.value(opt)
	if err != nil {
		return err
	}
	flags, err := p.value(opt)
	if err != nil {
		return err
	}
	fl := strings.Split(flags, ",")
	return p.add(func(r *run, _ position) (bool, error) {
		if r.t.sets == nil {
			return false, fmt.Errorf("--match-set %s: the tracer has no ipsets", name)
		}
		ok, err := r.t.sets.Match(name, fl, ipsettest.PacketFields{
			Src: r.pkt.src, Dst: r.pkt.dst.Addr(), DstPort: r.pkt.dst.Port(), Proto: r.pkt.proto})
		if err != nil {
			return false, fmt.Errorf("--match-set %s %s: %w", name, flags, err)
		}
		return ok, nil
	}, true, opt)
}

// mark parses --mark V[/M]: (mark & M) == V.
func (p *parser) mark(opt string) error {
	if opt != "--mark" {
		return fmt.Errorf("option %s of -m mark is not modelled", opt)
	}
	v, err := p.value(opt)
	if err != nil {
		return err
	}
	val, mask, err := parseMark(v)
	if err != nil {
		return err
	}
	return p.add(func(r *run, _ position) (bool, error) { return r.pkt.mark&mask == val, nil }, true, opt)
}

// parseMark parses V[/M] (hexadecimal with 0x, or decimal); M defaults to 0xffffffff.
func parseMark(s string) (uint32, uint32, error) {
	v, m, hasMask := strings.Cut(s, "/")
	if !hasMask {
		m = "0xffffffff"
	}
	val, err1 := strconv.ParseUint(v, 0, 32)
	mask, err2 := strconv.ParseUint(m, 0, 32)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("mark %q is not VALUE[/MASK]", s)
	}
	return uint32(val), uint32(mask), nil
}
