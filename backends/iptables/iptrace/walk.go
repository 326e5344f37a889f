package iptrace

import (
	"net/netip"

	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/model"
)

// packet is the state of the traced packet on one path.
type packet struct {
	proto model.Protocol
	src   netip.Addr
	dst   netip.AddrPort
	iif   string // "" when node-a sends the packet
	mark  uint32
	dnat  bool // a DNAT rule rewrote the destination (ctstate DNAT)
	masq  bool // MASQUERADE ran in nat POSTROUTING (ctstate SNAT)
}

// run is one path of a packet through the tables.
type run struct {
	t    *tracer
	pick *chooser
	pkt  packet
	prob float64 // the product of the random choices taken so far
	// stop is where the path ended: VerdictDrop or VerdictReject, else VerdictAccept.
	stop backendtest.Verdict
	// hook is the built-in chain being run (PREROUTING, ...), table its table.
	hook, table string
	// recents are the --set matches the path went through, dnatAt the DNAT rule.
	recents []recentSet
	dnatAt  position
}

// hookTables are the tables whose built-in chain each hook runs, in the kernel's
// priority order (raw -300, mangle -150, nat -100 for DNAT, filter 0, nat 100 for SNAT).
var hookTables = map[string][]string{
	"PREROUTING":  {"raw", "mangle", "nat"},
	"INPUT":       {"mangle", "filter", "nat"},
	"FORWARD":     {"mangle", "filter"},
	"OUTPUT":      {"raw", "mangle", "nat", "filter"},
	"POSTROUTING": {"mangle", "nat"},
}

// walk takes the packet through the hooks it traverses and returns where the path ends.
func (r *run) walk() (outcome, error) {
	if err := r.traverse(); err != nil {
		return outcome{}, err
	}
	o := outcome{verdict: r.stop, prob: r.prob}
	if r.stop == backendtest.VerdictAccept && r.pkt.dnat {
		o.verdict, o.target, o.masq, o.dnatAt = backendtest.VerdictDNAT, r.pkt.dst, r.pkt.masq, r.dnatAt
		sticky, err := r.sticky()
		if err != nil {
			return outcome{}, err
		}
		o.sticky = sticky
	}
	return o, nil
}

// traverse runs the hooks in the order the kernel does: an arriving packet is routed
// after PREROUTING, to INPUT when its destination is local, else through FORWARD and
// POSTROUTING; a packet of node-a leaves through OUTPUT and POSTROUTING and, when it is
// addressed to node-a, comes back in on loopback (without the nat tables: conntrack
// NATs a connection once).
func (r *run) traverse() error {
	if r.pkt.iif != "" {
		if stopped, err := r.runHook("PREROUTING", true); stopped || err != nil {
			return err
		}
		if r.local() {
			return r.hooks(true, "INPUT")
		}
		return r.hooks(true, "FORWARD", "POSTROUTING")
	}
	if err := r.hooks(true, "OUTPUT", "POSTROUTING"); err != nil || r.stop != backendtest.VerdictAccept || !r.local() {
		return err
	}
	r.pkt.iif = "lo"
	return r.hooks(false, "PREROUTING", "INPUT")
}

// local reports whether the packet is addressed to node-a.
func (r *run) local() bool { return r.t.host.IsLocal(r.pkt.dst.Addr()) }

// hooks runs hooks one after the other until one stops the packet.
func (r *run) hooks(nat bool, hooks ...string) error {
	for _, h := range hooks {
		if stopped, err := r.runHook(h, nat); stopped || err != nil {
			return err
		}
	}
	return nil
}

// runHook runs the built-in chain of hook h in each of its tables (nat only when nat is set)
// and reports whether the packet was dropped or rejected.
func (r *run) runHook(h string, nat bool) (bool, error) {
	for _, table := range hookTables[h] {
		if table == "nat" && !nat {
			continue
		}
		r.hook, r.table = h, table
		f, err := r.builtin()
		if err != nil {
			return true, err
		}
		switch f {
		case flowDrop:
			r.stop = backendtest.VerdictDrop
			return true, nil
		case flowReject:
			r.stop = backendtest.VerdictReject
			return true, nil
		}
	}
	return false, nil
}
