package nftables

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/model"
)

// checkFakeText checks every text of the fake's table that the backend wrote: chain, set
// and map names are identifiers the kernel takes, comments fit nft's limit and quotes.
// (knftables.Fake itself accepts any text.)
func checkFakeText(t *testing.T, fake *knftables.Fake, when string) {
	t.Helper()
	if fake.Table == nil {
		return
	}
	var errs []string
	note := func(what string, err error) {
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", what, err))
		}
	}
	comment := func(what string, c *string) {
		if c != nil {
			note(what+" comment", checkComment(*c))
		}
	}
	for name, c := range fake.Table.Chains {
		note("chain", checkName(name))
		for _, r := range c.Rules {
			comment("rule of "+name, r.Comment)
		}
	}
	for name, s := range fake.Table.Sets {
		note("set", checkName(name))
		comment("set "+name, s.Comment)
		for _, e := range s.Elements {
			comment("element of "+name, e.Comment)
		}
	}
	for name, m := range fake.Table.Maps {
		note("map", checkName(name))
		comment("map "+name, m.Comment)
		for _, e := range m.Elements {
			comment("element of "+name, e.Comment)
		}
	}
	if s := fake.Table.Sets[setFirewallAllow]; s != nil {
		note("set "+setFirewallAllow, overlapping(s.Elements))
	}
	sort.Strings(errs)
	if len(errs) > 0 {
		t.Fatalf("%s: %d texts the kernel would reject, e.g.:\n%s", when, len(errs), strings.Join(errs[:min(5, len(errs))], "\n"))
	}
}

// overlapping returns an error for two elements of an interval set keyed
// "addr . proto . port . range" whose ranges overlap for the same frontend: the kernel
// refuses the second one ("File exists").
func overlapping(es []*knftables.Element) error {
	ranges := map[string][]netip.Prefix{}
	for _, e := range es {
		if len(e.Key) != 4 {
			return fmt.Errorf("element %v: want 4 fields", e.Key)
		}
		p, err := netip.ParsePrefix(e.Key[3])
		if err != nil {
			return fmt.Errorf("element %v: %w", e.Key, err)
		}
		frontend := strings.Join(e.Key[:3], " . ")
		for _, q := range ranges[frontend] {
			if p.Overlaps(q) {
				return fmt.Errorf("%s: source ranges %s and %s overlap", frontend, q, p)
			}
		}
		ranges[frontend] = append(ranges[frontend], p)
	}
	return nil
}

// tableSummary describes what the fake's table holds, independent of the order the
// objects were written in: per chain its rule count; per shared set or map its elements
// (key and value); per endpoint map only its element count (slots depend on history).
func tableSummary(fake *knftables.Fake) string {
	var lines []string
	for name, c := range fake.Table.Chains {
		lines = append(lines, fmt.Sprintf("chain %s %d", name, len(c.Rules)))
	}
	elements := func(kind, name string, es []*knftables.Element) {
		if strings.HasPrefix(name, endpointMapPrefix) {
			lines = append(lines, fmt.Sprintf("%s %s %d elements", kind, name, len(es)))
			return
		}
		lines = append(lines, fmt.Sprintf("%s %s", kind, name))
		for _, e := range es {
			lines = append(lines, fmt.Sprintf("  %s : %s", strings.Join(e.Key, " . "), strings.Join(e.Value, " . ")))
		}
	}
	for name, s := range fake.Table.Sets {
		elements("set", name, s.Elements)
	}
	for name, m := range fake.Table.Maps {
		elements("map", name, m.Elements)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// syncProperty syncs next after prev and requires a complete success: no error, no
// skipped port, every text valid, the mirror true to the fake.
func syncProperty(t *testing.T, b *Backend, fakes map[model.Family]*knftables.Fake, prev, next *model.State, d func(before, after *model.Table) model.Diff, when string) {
	t.Helper()
	for _, tbl := range next.Tables {
		var before *model.Table
		if prev != nil {
			before = prev.Table(tbl.Family())
		}
		w := fmt.Sprintf("%s, %s", when, tbl.Family())
		if err := b.Sync(context.Background(), tbl, d(before, tbl)); err != nil {
			t.Fatalf("%s: %v", w, err)
		}
		checkFakeText(t, fakes[tbl.Family()], w)
		checkMirror(t, b.fams[tbl.Family()], fakes[tbl.Family()], w)
	}
}

func compareDiff(before, after *model.Table) model.Diff { return model.Compare(before, after) }

// TestPropertyRandomServices: random Services and EndpointSlices that pass the API's
// validation, compiled by proxier/compile and synced (a full sync, then partial syncs of
// random changes, then a full rewrite), never make the backend fail or skip a port, and
// the incremental result holds what a fresh full sync of the same state holds.
func TestPropertyRandomServices(t *testing.T) {
	seeds, services, rounds := 60, 25, 8
	if testing.Short() {
		seeds = 10
	}
	for seed := range uint64(seeds) {
		variant := backendtest.NodeVariants[int(seed)%len(backendtest.NodeVariants)]
		w := newWorld(t, seed, services, variant)
		b, fakes := fakeBackend(t)
		when := fmt.Sprintf("seed %d (%s)", seed, variant.Name)
		state := w.compile(nil)
		syncProperty(t, b, fakes, nil, state, compareDiff, when+": full sync")
		for round := range rounds {
			next := w.compile(w.change())
			syncProperty(t, b, fakes, state, next, compareDiff, fmt.Sprintf("%s: change %d", when, round))
			state = next
		}
		for i := 0; b.PendingWork(model.IPv4) || b.PendingWork(model.IPv6); i++ {
			if i == 3 {
				t.Fatalf("%s: the backend still has work pending after %d follow-up syncs", when, i)
			}
			none := func(*model.Table, *model.Table) model.Diff { return model.Diff{} }
			syncProperty(t, b, fakes, state, state, none, when+": follow-up")
		}
		fresh, freshFakes := fakeBackend(t)
		syncProperty(t, fresh, freshFakes, nil, state, compareDiff, when+": fresh full sync")
		for f, fake := range fakes {
			if got, want := tableSummary(fake), tableSummary(freshFakes[f]); got != want {
				t.Fatalf("%s: %s after the changes differs from a fresh sync:\n%s", when, f, backendtest.FirstDiff(want, got))
			}
		}
		full := func(*model.Table, *model.Table) model.Diff { return model.Diff{Full: true} }
		syncProperty(t, b, fakes, state, state, full, when+": full rewrite")
	}
}

// TestLongNamesRender: Services at the API's limits — 63-character namespace and name,
// 15-character port names, every kind of Service — render into texts the kernel takes,
// with rules, elements and affinity sets commented.
func TestLongNamesRender(t *testing.T) {
	w := newWorld(t, 1, 0, backendtest.NodeVariants[0])
	for i := range 24 {
		n := model.ServiceName{Namespace: longNS, Name: fmt.Sprintf("%s%02d", longName[:61], i)}
		w.g.names[n] = true
		svc := w.g.service(n)
		for j := range svc.Spec.Ports {
			svc.Spec.Ports[j].Name = fmt.Sprintf("%s%d", longPort[:14], j)
		}
		w.services[n], w.slices[n] = svc, w.g.slices(svc)
		w.validate(n)
	}
	b, fakes := fakeBackend(t)
	syncProperty(t, b, fakes, nil, w.compile(nil), compareDiff, "long names")
	long := 0
	for _, fake := range fakes {
		for name, c := range fake.Table.Chains {
			if !strings.Contains(name, longNS) {
				continue
			}
			long++
			if len(c.Rules) == 0 || c.Rules[0].Comment == nil || !strings.HasPrefix(*c.Rules[0].Comment, longNS+"/") {
				t.Errorf("chain %s: rules without the port's comment: %+v", name, c.Rules)
			}
		}
	}
	if long == 0 {
		t.Fatal("no chain of the long-named Services")
	}
	// Affinity sets and map elements carry comments too: checkFakeText checked them.
	if !slices.ContainsFunc(slices.Collect(maps.Values(fakes)), hasAffinitySet) {
		t.Error("no affinity set: the test needs a Service with session affinity")
	}
}

func hasAffinitySet(fake *knftables.Fake) bool {
	for name := range fake.Table.Sets {
		if strings.HasPrefix(name, prefixAffinity) {
			return true
		}
	}
	return false
}
