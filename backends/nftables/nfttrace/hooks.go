package nfttrace

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/backends/backendtest"
)

// hookChains are the base chains of each hook, in the order the kernel runs them.
type hookChains map[knftables.BaseChainHook][]*knftables.FakeChain

// orderHooks gathers the base chains of tbl by hook and sorts them by priority (by name
// where priorities are equal). A hook, chain type or policy the tracer does not model is an
// error.
func orderHooks(tbl *knftables.FakeTable, fam knftables.Family) (hookChains, error) {
	hc := hookChains{}
	prio := map[*knftables.FakeChain]int{}
	for _, ch := range tbl.Chains {
		if ch.Hook == nil {
			continue
		}
		if err := checkBase(ch); err != nil {
			return nil, err
		}
		p, err := knftables.ParsePriority(fam, string(*ch.Priority))
		if err != nil {
			return nil, fmt.Errorf("base chain %s: %w", ch.Name, err)
		}
		prio[ch] = p
		hc[*ch.Hook] = append(hc[*ch.Hook], ch)
	}
	for _, chains := range hc {
		slices.SortFunc(chains, func(a, b *knftables.FakeChain) int {
			return cmp.Or(cmp.Compare(prio[a], prio[b]), cmp.Compare(a.Name, b.Name))
		})
	}
	return hc, nil
}

// checkBase reports a base chain the tracer cannot run as the kernel would.
func checkBase(ch *knftables.FakeChain) error {
	switch *ch.Hook {
	case knftables.PreroutingHook, knftables.InputHook, knftables.ForwardHook, knftables.OutputHook, knftables.PostroutingHook:
	default:
		return fmt.Errorf("base chain %s: hook %q is not modelled", ch.Name, *ch.Hook)
	}
	if ch.Type == nil || ch.Priority == nil {
		return fmt.Errorf("base chain %s: no type or priority", ch.Name)
	}
	if *ch.Type != knftables.FilterType && *ch.Type != knftables.NATType {
		return fmt.Errorf("base chain %s: chain type %q is not modelled", ch.Name, *ch.Type)
	}
	if ch.Policy != nil && *ch.Policy != knftables.AcceptPolicy && *ch.Policy != knftables.DropPolicy {
		return fmt.Errorf("base chain %s: policy %q is not modelled", ch.Name, *ch.Policy)
	}
	return nil
}

// packet is the state of the traced packet on one path.
type packet struct {
	proto  uint64 // IP protocol number
	src    netip.Addr
	dst    netip.AddrPort
	iif    string // "" when node-a sends the packet
	mark   uint32
	dnat   bool // the destination was rewritten (ct status dnat)
	masq   bool // the source will be masqueraded (ct status snat)
	sticky bool // a dynamic set remembered the client
}

// run is one path of a packet through the table.
type run struct {
	t     *tracer
	tbl   *knftables.FakeTable
	hooks hookChains
	pick  *chooser
	pkt   packet
	// stop is where the path ended: VerdictDrop or VerdictReject, else VerdictAccept.
	stop backendtest.Verdict
	// base is the base chain being run; natted is set when a NAT statement of it ran.
	base   *knftables.FakeChain
	natted bool
	// added holds what update statements put into dynamic sets on this path.
	added map[string][][]value
}

// walk takes the packet through the hooks it traverses and returns where the path ends.
func (r *run) walk() (outcome, error) {
	if err := r.traverse(); err != nil {
		return outcome{}, err
	}
	o := outcome{verdict: r.stop, sticky: r.pkt.sticky}
	if r.stop == backendtest.VerdictAccept && r.pkt.dnat {
		o.verdict, o.target, o.masq = backendtest.VerdictDNAT, r.pkt.dst, r.pkt.masq
	}
	return o, nil
}

// traverse runs the hooks in the order the kernel does: an arriving packet is routed
// after prerouting, to input when its destination is local (no postrouting then), else
// through forward and postrouting; a packet of node-a leaves through output and
// postrouting and, when it is addressed to node-a, comes back in on loopback.
func (r *run) traverse() error {
	if r.pkt.iif != "" {
		if stopped, err := r.hook(knftables.PreroutingHook, true); stopped || err != nil {
			return err
		}
		if r.local() {
			_, err := r.hook(knftables.InputHook, true)
			return err
		}
		return r.hooksInOrder(true, knftables.ForwardHook, knftables.PostroutingHook)
	}
	if err := r.hooksInOrder(true, knftables.OutputHook, knftables.PostroutingHook); err != nil {
		return err
	}
	if r.stop != backendtest.VerdictAccept || !r.local() {
		return nil
	}
	r.pkt.iif = "lo"
	return r.hooksInOrder(false, knftables.PreroutingHook, knftables.InputHook)
}

// local reports whether the packet is addressed to node-a.
func (r *run) local() bool { return r.t.host.IsLocal(r.pkt.dst.Addr()) }

// hooksInOrder runs hooks one after the other until one stops the packet.
func (r *run) hooksInOrder(nat bool, hooks ...knftables.BaseChainHook) error {
	for _, h := range hooks {
		if stopped, err := r.hook(h, nat); stopped || err != nil {
			return err
		}
	}
	return nil
}

// hook runs the base chains of h (its NAT chains only when nat is set, and only until one
// of them has NATed the packet) and reports whether the packet was dropped or rejected.
func (r *run) hook(h knftables.BaseChainHook, nat bool) (bool, error) {
	natDone := false
	for _, ch := range r.hooks[h] {
		isNAT := *ch.Type == knftables.NATType
		if isNAT && (!nat || natDone) {
			continue
		}
		v, err := r.runBase(ch)
		if err != nil {
			return true, err
		}
		switch v.kind {
		case vDrop:
			r.stop = backendtest.VerdictDrop
			return true, nil
		case vReject:
			r.stop = backendtest.VerdictReject
			return true, nil
		}
		natDone = natDone || isNAT && r.natted
	}
	return false, nil
}

// runBase runs a base chain; a packet that leaves it without a verdict meets its policy.
func (r *run) runBase(ch *knftables.FakeChain) (verdict, error) {
	r.base, r.natted = ch, false
	v, err := r.chain(ch, 0)
	if err != nil || v.kind != vNone {
		return v, err
	}
	if ch.Policy != nil && *ch.Policy == knftables.DropPolicy {
		return verdict{kind: vDrop}, nil
	}
	return verdict{kind: vAccept}, nil
}
