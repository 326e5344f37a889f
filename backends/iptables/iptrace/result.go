package iptrace

import (
	"cmp"
	"fmt"
	"math"
	"net/netip"
	"slices"

	"github.com/portico-dev/portico/backends/backendtest"
)

// tolerance is how far from 1/n the share of an endpoint of a DNAT chain may be.
const tolerance = 1e-6

// merge turns the outcomes of every path into one Result: the common verdict, each
// endpoint once, sorted, and Sticky when every DNAT path is.
func merge(outs []outcome) (backendtest.Result, error) {
	res := backendtest.Result{Verdict: outs[0].verdict, Sticky: true}
	masq := map[netip.AddrPort]bool{}
	for _, o := range outs {
		if o.verdict != res.Verdict {
			return backendtest.Result{}, fmt.Errorf("the paths of one packet end differently: %s and %s", outs[0], o)
		}
		res.Sticky = res.Sticky && o.sticky
		if o.verdict != backendtest.VerdictDNAT {
			continue
		}
		if m, seen := masq[o.target]; seen && m != o.masq {
			return backendtest.Result{}, fmt.Errorf("endpoint %s is reached both masqueraded and not", o.target)
		}
		masq[o.target] = o.masq
	}
	res.Sticky = res.Sticky && res.Verdict == backendtest.VerdictDNAT
	for ep, m := range masq {
		res.Targets = append(res.Targets, backendtest.Target{Endpoint: ep, Masquerade: m})
	}
	slices.SortFunc(res.Targets, func(a, b backendtest.Target) int { return a.Endpoint.Compare(b.Endpoint) })
	return res, nil
}

// uniform checks that the endpoints each DNAT chain sends the packet to are reached
// with equal probability: within a chain, each endpoint's share of the chain's paths is
// 1/n within tolerance.
func uniform(outs []outcome) error {
	type key struct{ table, chain string }
	byChain := map[key]map[netip.AddrPort]float64{}
	for _, o := range outs {
		if o.verdict != backendtest.VerdictDNAT {
			continue
		}
		k := key{o.dnatAt.table, o.dnatAt.chain}
		if byChain[k] == nil {
			byChain[k] = map[netip.AddrPort]float64{}
		}
		byChain[k][o.target] += o.prob
	}
	keys := make([]key, 0, len(byChain))
	for k := range byChain {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int { return cmp.Or(cmp.Compare(a.table, b.table), cmp.Compare(a.chain, b.chain)) })
	for _, k := range keys {
		if err := equalShares(k.table, k.chain, byChain[k]); err != nil {
			return err
		}
	}
	return nil
}

// equalShares checks that each endpoint of a DNAT chain gets 1/n of the probability the
// chain's paths have, within tolerance.
func equalShares(table, chain string, eps map[netip.AddrPort]float64) error {
	total := 0.0
	sorted := make([]netip.AddrPort, 0, len(eps))
	for ep, p := range eps {
		total += p
		sorted = append(sorted, ep)
	}
	slices.SortFunc(sorted, netip.AddrPort.Compare)
	want := 1 / float64(len(eps))
	for _, ep := range sorted {
		if share := eps[ep] / total; total == 0 || math.Abs(share-want) > tolerance {
			return fmt.Errorf("chain %s of table %s sends %s a share %.9f of its connections, want 1/%d = %.9f (check --probability)",
				chain, table, ep, share, len(eps), want)
		}
	}
	return nil
}

// sticky reports whether the path's endpoint is remembered for the client's next
// connection: a --set the path went through has, earlier in its chain, an --update or
// --rcheck of the same list (name, side, mask) that DNATs to the path's endpoint.
func (r *run) sticky() (bool, error) {
	for _, s := range r.recents {
		rules := r.t.rs.Rules(s.at.table, s.at.chain)
		for i := 0; i < s.at.index && i < len(rules); i++ {
			rl, err := r.t.rule(rules[i].Spec)
			if err != nil {
				return false, err
			}
			if rl.target.kind == tDNAT && rl.target.dest(r.pkt.dst.Port()) == r.pkt.dst && slices.Contains(rl.checks, s.key.list) {
				return true, nil
			}
		}
	}
	return false, nil
}
