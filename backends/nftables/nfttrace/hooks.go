package nfttrace

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/model"
)

// hookChains are the base chains of each hook, in the order the kernel runs them.
type hookChains map[knftables.BaseChainHook][]*knftables.FakeChain

// priorities are the base chains' priorities.
type priorities map[*knftables.FakeChain]int

// orderHooks gathers the base chains of tbl by hook and sorts them by priority (by name
// where priorities are equal). A hook, chain type or policy the tracer does not model is an
// error.
func orderHooks(tbl *knftables.FakeTable, fam knftables.Family) (hookChains, priorities, error) {
	hc := hookChains{}
	prio := priorities{}
	for _, ch := range tbl.Chains {
		if ch.Hook == nil {
			continue
		}
		if err := checkBase(ch); err != nil {
			return nil, nil, err
		}
		p, err := knftables.ParsePriority(fam, string(*ch.Priority))
		if err != nil {
			return nil, nil, fmt.Errorf("base chain %s: %w", ch.Name, err)
		}
		prio[ch] = p
		hc[*ch.Hook] = append(hc[*ch.Hook], ch)
	}
	for _, chains := range hc {
		slices.SortFunc(chains, func(a, b *knftables.FakeChain) int {
			return cmp.Or(cmp.Compare(prio[a], prio[b]), cmp.Compare(a.Name, b.Name))
		})
	}
	return hc, prio, nil
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
	prio  priorities
	pick  *chooser
	pkt   packet
	// resent is set when a stage rewrote the packet in input: node-a sends it on.
	resent bool
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
			if stopped, err := r.hook(knftables.InputHook, true); stopped || err != nil || !r.resent {
				return err
			}
			return r.hooksInOrder(true, knftables.OutputHook, knftables.PostroutingHook)
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
	stages := r.t.stagesAt(h)
	for _, ch := range r.hooks[h] {
		for len(stages) > 0 && stages[0].Priority < r.prio[ch] {
			if err := r.stage(h, stages[0]); err != nil {
				return true, err
			}
			stages = stages[1:]
		}
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
	for _, st := range stages {
		if err := r.stage(h, st); err != nil {
			return true, err
		}
	}
	return false, nil
}

// stagesAt returns the stages of hook h, by priority.
func (t *tracer) stagesAt(h knftables.BaseChainHook) []Stage {
	var out []Stage
	for _, s := range t.stages {
		if s.Hook == h {
			out = append(out, s)
		}
	}
	slices.SortStableFunc(out, func(a, b Stage) int { return cmp.Compare(a.Priority, b.Priority) })
	return out
}

// stage runs a stage on a packet whose destination nothing rewrote yet.
func (r *run) stage(h knftables.BaseChainHook, s Stage) error {
	if r.pkt.dnat {
		return nil
	}
	var proto model.Protocol
	for p, n := range protoNumbers {
		if n == r.pkt.proto {
			proto = p
		}
	}
	targets, sticky, ok := s.Lookup(proto, r.pkt.dst)
	if !ok || len(targets) == 0 {
		return nil
	}
	i, err := r.pick.choose(len(targets))
	if err != nil {
		return err
	}
	r.pkt.dst, r.pkt.dnat = targets[i], true
	r.pkt.sticky = r.pkt.sticky || sticky
	r.resent = h == knftables.InputHook
	return nil
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
