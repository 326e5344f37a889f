package nfttrace

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/model"
)

// counter parses `counter [packets N bytes M]`.
func (p *parser) counter() (step, error) {
	p.next()
	if p.peek() == "packets" {
		p.pos += 2
		if err := p.expect("bytes"); err != nil {
			return nil, fmt.Errorf("counter: %w", err)
		}
		p.next()
	}
	return counter{}, nil
}

// markSet sets the packet mark: to val, or to the current mark combined with val by op
// (|, ^ or &).
type markSet struct {
	op  string
	val uint32
}

// markSet parses `meta mark set V` and `meta mark set meta mark OP V`.
func (p *parser) markSet() (step, error) {
	p.pos += 3
	s := markSet{}
	if p.peek() == "meta" {
		p.next()
		if p.next() != "mark" {
			return nil, fmt.Errorf("meta mark set: only the mark itself can be combined")
		}
		ops := map[string]string{"|": "|", "or": "|", "^": "^", "xor": "^", "&": "&", "and": "&"}
		if s.op = ops[p.next()]; s.op == "" {
			return nil, fmt.Errorf("meta mark set: unsupported operator")
		}
	}
	n, err := strconv.ParseUint(p.next(), 0, 32)
	if err != nil {
		return nil, fmt.Errorf("meta mark set: %w", err)
	}
	s.val = uint32(n)
	return s, nil
}

func (s markSet) eval(r *run) (bool, verdict, error) {
	switch s.op {
	case "|":
		r.pkt.mark |= s.val
	case "^":
		r.pkt.mark ^= s.val
	case "&":
		r.pkt.mark &= s.val
	default:
		r.pkt.mark = s.val
	}
	return true, verdict{}, nil
}

// update adds the packet's fields to a dynamic set (session affinity remembers the
// client): the path becomes sticky, and later lookups of this path find the key.
type update struct {
	set  string
	sels []selector
}

// update parses `update|add @s { F [. F ...] }`.
func (p *parser) update() (step, error) {
	verb := p.next()
	u := &update{}
	var err error
	if u.set, err = p.setRef(); err != nil {
		return nil, fmt.Errorf("%s: %w", verb, err)
	}
	if err := p.expect("{"); err != nil {
		return nil, fmt.Errorf("%s: %w", verb, err)
	}
	for {
		sel, err := p.parseSelector()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", verb, err)
		}
		u.sels = append(u.sels, sel)
		if p.peek() != "." {
			break
		}
		p.next()
	}
	if err := p.expect("}"); err != nil {
		return nil, fmt.Errorf("%s: %w (timeouts and expressions of elements are not supported)", verb, err)
	}
	return u, nil
}

func (u *update) eval(r *run) (bool, verdict, error) {
	if r.tbl.Sets[u.set] == nil {
		return false, verdict{}, fmt.Errorf("no set %q", u.set)
	}
	vals, ok := r.values(u.sels)
	if !ok {
		return false, verdict{}, nil
	}
	if r.added == nil {
		r.added = map[string][][]value{}
	}
	r.added[u.set] = append(r.added[u.set], vals)
	r.pkt.sticky = true
	return true, verdict{}, nil
}

// dnat rewrites the destination: to a fixed address (and port), or to the value an
// endpoint map holds for a random slot; every slot is followed as a path of its own.
type dnat struct {
	addr    netip.Addr
	port    uint16 // 0: the port stays
	mod     uint64 // numgen form: slots offset .. offset+mod-1 of mapName
	offset  uint64
	mapName string
}

// dnat parses `dnat [ip|ip6] to ADDR[:PORT]` and `dnat [ip|ip6] to numgen random mod N
// [offset O] map @m`.
func (p *parser) dnat() (step, error) {
	p.next()
	if w := p.peek(); w == "ip" || w == "ip6" {
		p.next()
		if (w == "ip") != (p.fam == model.IPv4) {
			return nil, fmt.Errorf("dnat %s in a table of family %s", w, p.fam)
		}
	}
	if err := p.expect("to"); err != nil {
		return nil, fmt.Errorf("dnat: %w", err)
	}
	d := &dnat{}
	if p.peek() != "numgen" {
		var err error
		d.addr, d.port, err = parseTarget(p.next(), p.fam)
		return d, err
	}
	var err error
	if d.mod, d.offset, err = p.numgen(); err != nil {
		return nil, fmt.Errorf("dnat: %w", err)
	}
	if err := p.expect("map"); err != nil {
		return nil, fmt.Errorf("dnat: %w", err)
	}
	d.mapName, err = p.setRef()
	return d, err
}

// parseTarget parses a DNAT target: ADDR, ADDR:PORT or [ADDR6]:PORT.
func parseTarget(s string, fam model.Family) (netip.Addr, uint16, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr(), ap.Port(), checkFamily(ap.Addr(), fam)
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("dnat: bad target %q", s)
	}
	return a, 0, checkFamily(a, fam)
}

// checkFamily reports an address outside the table's family.
func checkFamily(a netip.Addr, fam model.Family) error {
	if !fam.Contains(a) {
		return fmt.Errorf("address %s in a table of family %s", a, fam)
	}
	return nil
}

func (d *dnat) eval(r *run) (bool, verdict, error) {
	if err := r.natAllowed("dnat", knftables.PreroutingHook, knftables.OutputHook); err != nil {
		return false, verdict{}, err
	}
	addr, port := d.addr, d.port
	if d.mapName != "" {
		e, err := d.slot(r)
		if err != nil || e == nil {
			return false, verdict{}, err
		}
		if addr, port, err = endpointValue(e.Value, r.t.fam); err != nil {
			return false, verdict{}, fmt.Errorf("map %s, key %q: %w", d.mapName, strings.Join(e.Key, " . "), err)
		}
	}
	if port == 0 {
		port = r.pkt.dst.Port()
	}
	r.pkt.dst, r.pkt.dnat, r.natted = netip.AddrPortFrom(addr, port), true, true
	return true, verdict{kind: vAccept}, nil
}

// slot picks this path's slot and returns its element of the endpoint map, or nil (the
// rule then does not match, as in the kernel).
func (d *dnat) slot(r *run) (*knftables.Element, error) {
	c, err := r.pick.choose(int(d.mod))
	if err != nil {
		return nil, err
	}
	key := []value{{num: d.offset + uint64(c)}}
	return r.mapElement(d.mapName, []selector{{name: "numgen", kind: kInt}}, key)
}

// endpointValue parses an endpoint map's value: the address and, if present, the port.
func endpointValue(v []string, fam model.Family) (netip.Addr, uint16, error) {
	if len(v) == 0 || len(v) > 2 {
		return netip.Addr{}, 0, fmt.Errorf("value %q is not an address and a port", strings.Join(v, " . "))
	}
	a, err := netip.ParseAddr(v[0])
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("bad address: %w", err)
	}
	var port uint64
	if len(v) == 2 {
		if port, err = strconv.ParseUint(v[1], 10, 16); err != nil || port == 0 {
			return netip.Addr{}, 0, fmt.Errorf("bad port %q", v[1])
		}
	}
	return a, uint16(port), checkFamily(a, fam)
}

// masquerade rewrites the source to an address of node-a when the packet leaves.
type masquerade struct{}

// masqueradeFlags are the flags `masquerade` may carry.
var masqueradeFlags = []string{"random", "fully-random", "persistent"}

// masquerade parses `masquerade [FLAG[,FLAG...]]`.
func (p *parser) masquerade() (step, error) {
	p.next()
	if !slices.Contains(masqueradeFlags, p.peek()) {
		return masquerade{}, nil
	}
	flags, err := p.flags()
	if err != nil {
		return nil, fmt.Errorf("masquerade: %w", err)
	}
	for _, f := range flags {
		if !slices.Contains(masqueradeFlags, f) {
			return nil, fmt.Errorf("masquerade: unknown flag %q", f)
		}
	}
	return masquerade{}, nil
}

func (masquerade) eval(r *run) (bool, verdict, error) {
	if err := r.natAllowed("masquerade", knftables.PostroutingHook); err != nil {
		return false, verdict{}, err
	}
	r.pkt.masq, r.natted = true, true
	return true, verdict{kind: vAccept}, nil
}

// natAllowed reports a NAT statement run outside a NAT chain of the hooks the kernel
// allows it in (nft would refuse to load it).
func (r *run) natAllowed(stmt string, hooks ...knftables.BaseChainHook) error {
	if *r.base.Type != knftables.NATType || !slices.Contains(hooks, *r.base.Hook) {
		return fmt.Errorf("%s reached from base chain %s (type %s, hook %s): nft allows it only in nat chains of %v",
			stmt, r.base.Name, *r.base.Type, *r.base.Hook, hooks)
	}
	return nil
}
