package iptables

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/model"
)

// verifiedChains are the fixed chains whose rule counts Verify compares with the last
// sync's: one per table, each never empty, so that a flush of the table (iptables -t nat
// -F, a firewall reload) shows.
var verifiedChains = []struct{ table, chain string }{
	{tableMangle, chainFirewall},
	{tableFilter, chainChecks},
	{tableNAT, chainPostrouting},
	{tableNAT, chainServices},
}

// Verify implements backends.Verifier: every jump from a built-in chain is there, and the
// fixed chains above hold as many rules as the last sync wrote. It lists the built-in
// chains and those fixed chains only (iptables -S), whose sizes do not grow with the
// Services: 12 short commands per family. iptables-legacy copies a whole table out of the
// kernel for each of them, so there Verify first compares the tables' headers (their
// entry counts) with those of the last sync or check, and lists only when they differ.
func (b *Backend) Verify(ctx context.Context, f model.Family) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	fs, ok := b.fams[f]
	if !ok || !fs.ready || b.k == nil {
		return nil
	}
	if fs.unchanged(ctx, b.k) {
		return nil
	}
	if err := fs.verifyRules(ctx, b.k); err != nil {
		return err
	}
	fs.baseline = headers(ctx, b.k, f)
	return nil
}

// verifyRules lists the built-in chains and the verified fixed chains. It stops before
// the next command once ctx is cancelled (a sync was requested: see proxier's runner).
func (fs *familyState) verifyRules(ctx context.Context, k kernel) error {
	f := fs.x.f
	for _, j := range jumps() {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("checking the rules of %s: %w", f, err)
		}
		rules, _, err := k.ListChain(ctx, f, j.table, j.chain)
		if err != nil {
			return fmt.Errorf("checking the jump from %s %s: %w", j.table, j.chain, err)
		}
		if !slices.ContainsFunc(rules, func(r string) bool { return sameRule(r, j.chain, j.spec) }) {
			fs.listed = false
			return fmt.Errorf("%s: the jump from %s %s to %s is gone: %w", f, j.table, j.chain, j.spec[len(j.spec)-1], backends.ErrRulesMissing)
		}
	}
	for _, v := range verifiedChains {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("checking the rules of %s: %w", f, err)
		}
		rules, exists, err := k.ListChain(ctx, f, v.table, v.chain)
		if err != nil {
			return fmt.Errorf("checking chain %s %s: %w", v.table, v.chain, err)
		}
		if want := fs.chains[v.chain].rules; !exists || len(rules) != want {
			fs.listed = false
			return fmt.Errorf("%s: chain %s %s holds %d rules (exists: %v), the last sync wrote %d: %w",
				f, v.table, v.chain, len(rules), exists, want, backends.ErrRulesMissing)
		}
	}
	return nil
}

// sameRule reports whether a listed rule ("-A CHAIN args") is the jump chain/spec.
func sameRule(listed, chain string, spec []string) bool {
	return strings.TrimSpace(listed) == "-A "+chain+" "+strings.Join(spec, " ")
}

// headers returns the entry counts of the tables' headers, or nil where the variant has
// none (iptables-nft) or one cannot be read.
func headers(ctx context.Context, k kernel, f model.Family) map[string]uint32 {
	out := map[string]uint32{}
	for _, table := range restoreTables {
		n, ok, err := k.Entries(ctx, f, table)
		if !ok || err != nil {
			return nil
		}
		out[table] = n
	}
	return out
}

// unchanged reports whether every table's header counts the entries it counted when the
// rules were last synced or verified: then nobody changed the tables (iptables-legacy, where
// listing even one chain reads the whole table), and Verify need not list anything.
func (fs *familyState) unchanged(ctx context.Context, k kernel) bool {
	if fs.baseline == nil {
		return false
	}
	now := headers(ctx, k, fs.x.f)
	return now != nil && maps.Equal(now, fs.baseline)
}
