package nfttrace

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/model"
)

// maxPaths bounds the paths one packet may take (every random choice multiplies them).
const maxPaths = 4096

// tracer follows packets through the table of one family that a knftables.Fake holds.
type tracer struct {
	fake   *knftables.Fake
	fam    model.Family
	host   backendtest.Host
	rules  *ruleCache
	stages []Stage
}

// Stage is a step of the kernel outside the traced table that rewrites destinations at
// one hook, between the table's base chains by priority: IPVS, which takes packets
// addressed to its virtual servers in local input (priority 98) and local output (-98).
// A packet a stage rewrote in input is sent on from node-a: it then traverses output and
// postrouting, as IPVS's transmitted packets do.
type Stage struct {
	// Hook and Priority place the stage.
	Hook     knftables.BaseChainHook
	Priority int
	// Lookup returns the destinations a packet to dst may be rewritten to (each becomes a
	// path of its own) and whether the choice is remembered per client; ok is false when
	// the stage leaves the packet alone (no virtual server, or one without destinations).
	Lookup func(proto model.Protocol, dst netip.AddrPort) (targets []netip.AddrPort, sticky, ok bool)
}

// NewWithStages is New with stages of the kernel outside the table (see Stage).
func NewWithStages(fake *knftables.Fake, fam model.Family, host backendtest.Host, stages ...Stage) backendtest.Tracer {
	t := New(fake, fam, host).(*tracer)
	t.stages = stages
	return t
}

// New returns a Tracer over the rules that fake (a *knftables.Fake holding portico's table
// of family fam: "ip portico" or "ip6 portico") holds, for node-a described by host. The
// tracer reads the fake at every Trace, so it sees every sync made after New.
func New(fake *knftables.Fake, fam model.Family, host backendtest.Host) backendtest.Tracer {
	return &tracer{fake: fake, fam: fam, host: host, rules: newRuleCache(fam)}
}

// Trace follows p through every path the rules allow and gathers their outcome.
func (t *tracer) Trace(p backendtest.Packet) (backendtest.Result, error) {
	if t.host.Martian(p) {
		return backendtest.Result{Verdict: backendtest.VerdictDrop}, nil
	}
	start, err := t.packet(p)
	if err != nil {
		return backendtest.Result{}, fmt.Errorf("tracing %s: %w", p, err)
	}
	t.fake.RLock()
	defer t.fake.RUnlock()
	outs, err := t.follow(start)
	if err != nil {
		return backendtest.Result{}, fmt.Errorf("tracing %s: %w", p, err)
	}
	res, err := merge(outs)
	if err != nil {
		return backendtest.Result{}, fmt.Errorf("tracing %s: %w", p, err)
	}
	return res, nil
}

// follow runs the packet once per sequence of random choices and returns the outcome of
// each path. The caller holds the fake's read lock.
func (t *tracer) follow(start packet) ([]outcome, error) {
	tbl, err := t.table()
	if err != nil {
		return nil, err
	}
	hooks, prio, err := orderHooks(tbl, knftFamily(t.fam))
	if err != nil {
		return nil, err
	}
	pick := &chooser{}
	var outs []outcome
	for {
		r := &run{t: t, tbl: tbl, hooks: hooks, prio: prio, pick: pick, pkt: start}
		o, err := r.walk()
		if err != nil {
			return nil, err
		}
		outs = append(outs, o)
		if !pick.next() {
			return outs, nil
		}
		if len(outs) == maxPaths {
			return nil, fmt.Errorf("more than %d paths: the random choices multiply too much", maxPaths)
		}
	}
}

// table returns the fake's table after checking that it is of the tracer's family.
func (t *tracer) table() (*knftables.FakeTable, error) {
	tbl := t.fake.Table
	if tbl == nil {
		return nil, errors.New("the fake holds no table (nothing was synced)")
	}
	for _, other := range t.fake.Tables[knftFamily(t.fam)] {
		if other == tbl {
			return tbl, nil
		}
	}
	return nil, fmt.Errorf("the fake's table %q is not of family %s", tbl.Name, knftFamily(t.fam))
}

// packet checks p against the tracer's family and returns the state a path starts from.
func (t *tracer) packet(p backendtest.Packet) (packet, error) {
	num, ok := protoNumbers[p.Proto]
	if !ok {
		return packet{}, fmt.Errorf("unknown protocol %s", p.Proto)
	}
	if !t.fam.Contains(p.Src) || !t.fam.Contains(p.Dst.Addr()) {
		return packet{}, fmt.Errorf("the addresses are not %s, the family of the traced table", t.fam)
	}
	return packet{proto: num, src: p.Src, dst: p.Dst, iif: p.InIface}, nil
}

// protoNumbers are the IP protocol numbers of the transport protocols.
var protoNumbers = map[model.Protocol]uint64{model.TCP: 6, model.UDP: 17, model.SCTP: 132}

// knftFamily returns the nftables family of an IP family.
func knftFamily(f model.Family) knftables.Family {
	if f == model.IPv6 {
		return knftables.IPv6Family
	}
	return knftables.IPv4Family
}

// outcome is where one path of a packet ends.
type outcome struct {
	verdict backendtest.Verdict
	target  netip.AddrPort // VerdictDNAT only
	masq    bool
	sticky  bool
}

// String describes the outcome for error messages.
func (o outcome) String() string {
	if o.verdict == backendtest.VerdictDNAT {
		return fmt.Sprintf("dnat to %s (masqueraded: %t)", o.target, o.masq)
	}
	return o.verdict.String()
}

// merge turns the outcomes of every path into one Result: the common verdict, each
// endpoint once, sorted, and whether any path remembered the client.
func merge(outs []outcome) (backendtest.Result, error) {
	res := backendtest.Result{Verdict: outs[0].verdict}
	masq := map[netip.AddrPort]bool{}
	for _, o := range outs {
		if o.verdict != res.Verdict {
			return backendtest.Result{}, fmt.Errorf("the paths of one packet end differently: %s and %s", outs[0], o)
		}
		res.Sticky = res.Sticky || o.sticky
		if o.verdict != backendtest.VerdictDNAT {
			continue
		}
		if m, seen := masq[o.target]; seen && m != o.masq {
			return backendtest.Result{}, fmt.Errorf("endpoint %s is reached both masqueraded and not", o.target)
		}
		masq[o.target] = o.masq
	}
	for ep, m := range masq {
		res.Targets = append(res.Targets, backendtest.Target{Endpoint: ep, Masquerade: m})
	}
	slices.SortFunc(res.Targets, func(a, b backendtest.Target) int { return a.Endpoint.Compare(b.Endpoint) })
	return res, nil
}
