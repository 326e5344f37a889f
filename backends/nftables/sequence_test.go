package nftables

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/model"
)

// txRecord is one transaction a backend handed to knftables.
type txRecord struct {
	text string
	ops  int
	err  error
}

// recordingNFT wraps a knftables.Interface, records every transaction it runs and can
// make the next Run fail without applying anything. after, when set, runs after each Run.
type recordingNFT struct {
	knftables.Interface
	txs      []txRecord
	failNext error
	after    func()
}

func (r *recordingNFT) Run(ctx context.Context, tx *knftables.Transaction) error {
	rec := txRecord{text: tx.String(), ops: tx.NumOperations()}
	if r.failNext != nil {
		rec.err, r.failNext = r.failNext, nil
	} else {
		rec.err = r.Interface.Run(ctx, tx)
	}
	r.txs = append(r.txs, rec)
	if r.after != nil {
		r.after()
	}
	return rec.err
}

// recordingBackend returns a backend over recorders wrapping fakes (new ones when nil).
func recordingBackend(t *testing.T, fakes map[model.Family]*knftables.Fake) (*Backend, map[model.Family]*recordingNFT, map[model.Family]*knftables.Fake) {
	t.Helper()
	if fakes == nil {
		fakes = map[model.Family]*knftables.Fake{
			model.IPv4: knftables.NewFake(knftables.IPv4Family, tableName),
			model.IPv6: knftables.NewFake(knftables.IPv6Family, tableName),
		}
	}
	recs := map[model.Family]*recordingNFT{}
	for f, fake := range fakes {
		recs[f] = &recordingNFT{Interface: fake}
	}
	b := New(backends.Options{MasqueradeBit: 14, Families: []model.Family{model.IPv4, model.IPv6}},
		WithInterfaces(
			func(f model.Family) (knftables.Interface, error) { return recs[f], nil },
			func(_ context.Context, f model.Family) (string, error) { return fakes[f].Dump(), nil },
		))
	return b, recs, fakes
}

// step syncs next (diffed against prev) and returns the one transaction it ran.
func step(t *testing.T, b *Backend, rec *recordingNFT, prev, next *model.Table) txRecord {
	t.Helper()
	return stepDiff(t, b, rec, next, model.Compare(prev, next))
}

func stepDiff(t *testing.T, b *Backend, rec *recordingNFT, next *model.Table, d model.Diff) txRecord {
	t.Helper()
	n := len(rec.txs)
	if err := b.Sync(context.Background(), next, d); err != nil {
		t.Fatalf("sync: %v", err)
	}
	if len(rec.txs) != n+1 {
		t.Fatalf("sync ran %d transactions, want 1", len(rec.txs)-n)
	}
	return rec.txs[n]
}

// everyKind returns the IPv4 table of the every-kind scenario.
func everyKind(t *testing.T) *model.Table {
	t.Helper()
	return scenario(t, nil, fixtures...).Table(model.IPv4)
}

func spn(ns, name, port string, p model.Protocol) model.ServicePortName {
	return model.ServicePortName{Namespace: ns, Name: name, Port: port, Protocol: p}
}

var (
	webHTTP   = spn("default", "web", "http", model.TCP)
	webDNS    = spn("default", "web", "dns", model.UDP)
	npHTTP    = spn("apps", "np", "http", model.TCP)
	sticky    = spn("pol", "sticky", "", model.TCP)
	etpRemote = spn("pol", "etp-remote", "", model.TCP)
	extSvc    = spn("default", "ext", "", model.TCP)
	lbHTTPS   = spn("apps", "lb", "https", model.TCP)
)

// editPort returns tbl with the port called name replaced by an edited, resealed copy.
func editPort(t *testing.T, tbl *model.Table, name model.ServicePortName, edit func(sp *model.ServicePort)) *model.Table {
	t.Helper()
	old, ok := tbl.Get(name)
	if !ok {
		t.Fatalf("no port %s in the table", name)
	}
	cp := *old
	cp.Frontends = slices.Clone(old.Frontends)
	cp.Cluster = slices.Clone(old.Cluster)
	cp.Local = slices.Clone(old.Local)
	cp.SourceRanges = slices.Clone(old.SourceRanges)
	edit(&cp)
	cp.Seal()
	if cp.Hash == old.Hash {
		t.Fatalf("edit of %s changed nothing", name)
	}
	return tbl.Update(tbl.Node(), []*model.ServicePort{&cp}, nil)
}

// removePorts returns tbl without the named ports.
func removePorts(t *testing.T, tbl *model.Table, names ...model.ServicePortName) *model.Table {
	t.Helper()
	for _, n := range names {
		if _, ok := tbl.Get(n); !ok {
			t.Fatalf("no port %s in the table", n)
		}
	}
	return tbl.Update(tbl.Node(), nil, names)
}

// servicePorts returns the names of every port of the Service ns/name.
func servicePorts(tbl *model.Table, ns, name string) []model.ServicePortName {
	var out []model.ServicePortName
	for _, n := range tbl.Names() {
		if n.Namespace == ns && n.Name == name {
			out = append(out, n)
		}
	}
	return out
}

// remoteEP returns a ready endpoint on another node, modelled on like.
func remoteEP(like model.Endpoint, addr string) model.Endpoint {
	e := like
	e.Addr = netip.MustParseAddr(addr)
	e.Local = false
	return e
}

// setCluster replaces the Cluster endpoints of a port (keeping the others' fields).
func setCluster(eps ...model.Endpoint) func(sp *model.ServicePort) {
	return func(sp *model.ServicePort) { sp.Cluster = eps }
}

// ---- reading transactions ----

// txOp is one line of a transaction.
type txOp struct {
	verb, kind string
	obj        string // the chain, set or map the line is about (a rule's chain, an element's set)
	rest       string
	line       string
}

func parseOps(text string) []txOp {
	var ops []txOp
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if line == "" {
			continue
		}
		f := strings.SplitN(line, " ", 6)
		op := txOp{verb: f[0], kind: f[1], line: line}
		if op.kind != "table" && len(f) > 4 {
			op.obj = f[4]
			if len(f) > 5 {
				op.rest = f[5]
			}
		}
		ops = append(ops, op)
	}
	return ops
}

var commentRe = regexp.MustCompile(`comment "([^"]*)"`)

// elemKey returns the key of an element line ("{ key [comment ..] [: value] }").
func (o txOp) elemKey() string {
	s := strings.TrimSuffix(strings.TrimPrefix(o.rest, "{ "), " }")
	s, _, _ = strings.Cut(s, " comment ")
	s, _, _ = strings.Cut(s, " : ")
	return s
}

func (o txOp) elemValue() string {
	_, v, _ := strings.Cut(strings.TrimSuffix(o.rest, " }"), " : ")
	return v
}

func (o txOp) comment() string {
	if m := commentRe.FindStringSubmatch(o.rest); m != nil {
		return m[1]
	}
	return ""
}

func filterOps(ops []txOp, keep func(txOp) bool) []txOp {
	var out []txOp
	for _, o := range ops {
		if keep(o) {
			out = append(out, o)
		}
	}
	return out
}

func hasLine(ops []txOp, line string) bool {
	return slices.ContainsFunc(ops, func(o txOp) bool { return o.line == line })
}

// chainPort returns the port suffix of a per-Service-port chain name.
func chainPort(name string) (string, bool) {
	for _, p := range []string{prefixCluster, prefixLocal, prefixExternal} {
		// Port suffixes always hold a "/" (skeleton names such as cluster-ips-check do not).
		if s, ok := strings.CutPrefix(name, p); ok && strings.Contains(s, "/") {
			return s, true
		}
	}
	return "", false
}

var dnatMapRe = regexp.MustCompile(`numgen random mod (\d+) offset (\d+) map @(\S+)`)

// keyOwners maps "endpoint-map key" to the chain whose DNAT rule reads it, over all
// the given fakes' current tables.
func keyOwners(fakes ...*knftables.Fake) map[string]string {
	out := map[string]string{}
	for _, fake := range fakes {
		for name, c := range fake.Table.Chains {
			for _, r := range c.Rules {
				m := dnatMapRe.FindStringSubmatch(r.Rule)
				if m == nil {
					continue
				}
				mod, _ := strconv.Atoi(m[1])
				off, _ := strconv.Atoi(m[2])
				for k := off; k < off+mod; k++ {
					out[m[3]+" "+strconv.Itoa(k)] = name
				}
			}
		}
	}
	return out
}

// snapshot copies a fake so that it can be read after later transactions.
func snapshot(t *testing.T, fake *knftables.Fake) *knftables.Fake {
	t.Helper()
	cp := knftables.NewFake(knftables.IPv4Family, tableName)
	if fake.Table == nil {
		return cp
	}
	if err := cp.ParseDump(fake.Dump()); err != nil {
		t.Fatalf("copying fake: %v", err)
	}
	return cp
}

// owner returns the Service port suffix an operation belongs to, or "" when it cannot
// be attributed (a set element without comment, a table or skeleton operation).
func owner(o txOp, keys map[string]string, names map[string]string) string {
	switch o.kind {
	case "chain", "rule":
		if s, ok := chainPort(o.obj); ok {
			return s
		}
		return ""
	case "element":
		if strings.HasPrefix(o.obj, endpointMapPrefix) {
			if c, ok := keys[o.obj+" "+o.elemKey()]; ok {
				s, _ := chainPort(c)
				return s
			}
			return "?unowned endpoint key " + o.elemKey()
		}
		if c := o.comment(); c != "" {
			if s, ok := names[c]; ok {
				return s
			}
			return "?" + c
		}
	}
	return ""
}

// suffixes maps port names (as comments spell them) to chain suffixes.
func suffixes(tbls ...*model.Table) map[string]string {
	out := map[string]string{}
	for _, tbl := range tbls {
		for _, n := range tbl.Names() {
			out[n.String()] = portSuffix(n)
		}
	}
	return out
}

// assertOnlyPort fails when an operation of ops belongs to another port than want.
func assertOnlyPort(t *testing.T, ops []txOp, want model.ServicePortName, keys map[string]string, names map[string]string) {
	t.Helper()
	for _, o := range ops {
		if got := owner(o, keys, names); got != portSuffix(want) {
			t.Errorf("operation %q belongs to %q, want only %s", o.line, got, portSuffix(want))
		}
	}
}

// ---- reading fake state ----

// checkConsistent checks what must hold after every transaction: references resolve,
// dispatch never leads to an empty chain, DNAT rules find all their endpoints, and the
// endpoint maps hold no element that no rule reads and no key twice.
func checkConsistent(t *testing.T, fake *knftables.Fake) {
	t.Helper()
	tbl := fake.Table
	if tbl == nil {
		t.Fatal("no table")
	}
	target := func(where, verdict string) {
		f := strings.Fields(verdict)
		for i := 0; i+1 < len(f); i++ {
			if f[i] != "goto" && f[i] != "jump" {
				continue
			}
			c, ok := tbl.Chains[f[i+1]]
			switch {
			case !ok:
				t.Errorf("%s: %s to missing chain %s", where, f[i], f[i+1])
			case len(c.Rules) == 0:
				t.Errorf("%s: %s to empty (retired) chain %s", where, f[i], f[i+1])
			}
		}
	}
	owners := map[string]string{}
	for name, c := range tbl.Chains {
		for _, r := range c.Rules {
			target("rule in "+name, r.Rule)
			for _, w := range strings.Fields(r.Rule) {
				if s, ok := strings.CutPrefix(w, "@"); ok {
					if tbl.Sets[s] == nil && tbl.Maps[s] == nil {
						t.Errorf("rule in %s: missing set %s", name, s)
					}
				}
			}
			m := dnatMapRe.FindStringSubmatch(r.Rule)
			if m == nil {
				continue
			}
			mod, _ := strconv.Atoi(m[1])
			off, _ := strconv.Atoi(m[2])
			mp := tbl.Maps[m[3]]
			for k := off; k < off+mod; k++ {
				key := strconv.Itoa(k)
				if prev, dup := owners[key]; dup {
					t.Errorf("endpoint key %d read by %s and %s", k, prev, name)
				}
				owners[key] = name
				if mp == nil || mp.FindElement(key) == nil {
					t.Errorf("%s: endpoint key %d missing from %s", name, k, m[3])
				}
			}
		}
	}
	seen := map[string]string{}
	for mname, mp := range tbl.Maps {
		for _, e := range mp.Elements {
			if len(e.Value) == 1 {
				target("element of "+mname, e.Value[0])
			}
			if !strings.HasPrefix(mname, endpointMapPrefix) {
				continue
			}
			key := strings.Join(e.Key, " . ")
			if other, dup := seen[key]; dup {
				t.Errorf("endpoint key %s in both %s and %s", key, other, mname)
			}
			seen[key] = mname
			if _, ok := owners[key]; !ok {
				t.Errorf("orphan endpoint element %s { %s : %s }", mname, key, strings.Join(e.Value, " . "))
			}
		}
	}
}

// semantic returns the fake's dump with endpoint maps resolved into the DNAT rules that
// read them, sorted: equal for two tables that behave the same whatever slots they use.
func semantic(fake *knftables.Fake) string {
	tbl := fake.Table
	resolve := func(rule string) string {
		return dnatMapRe.ReplaceAllStringFunc(rule, func(s string) string {
			m := dnatMapRe.FindStringSubmatch(s)
			mod, _ := strconv.Atoi(m[1])
			off, _ := strconv.Atoi(m[2])
			var vals []string
			for k := off; k < off+mod; k++ {
				v := "<missing>"
				if mp := tbl.Maps[m[3]]; mp != nil {
					if e := mp.FindElement(strconv.Itoa(k)); e != nil {
						v = strings.Join(e.Value, " . ")
					}
				}
				vals = append(vals, v)
			}
			slices.Sort(vals) // a random pick: the order of the slots does not matter
			return "numgen random pick [" + strings.Join(vals, ", ") + "]"
		})
	}
	var lines []string
	for _, l := range strings.Split(fake.Dump(), "\n") {
		if l == "" || strings.HasPrefix(l, "add element ip portico "+endpointMapPrefix) ||
			strings.HasPrefix(l, "add element ip6 portico "+endpointMapPrefix) {
			continue
		}
		if strings.HasPrefix(l, "add rule ") {
			l = resolve(l)
		}
		lines = append(lines, l)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// freshFake returns the fake of a new backend after one full sync of tbl.
func freshFake(t *testing.T, tbl *model.Table) *knftables.Fake {
	t.Helper()
	b, fakes := fakeBackend(t)
	if err := b.Sync(context.Background(), tbl, model.Compare(nil, tbl)); err != nil {
		t.Fatalf("fresh sync: %v", err)
	}
	return fakes[tbl.Family()]
}

// assertSameBehaviour compares the fake to a fresh full sync of tbl, modulo slots.
func assertSameBehaviour(t *testing.T, fake *knftables.Fake, tbl *model.Table) {
	t.Helper()
	checkConsistent(t, fake)
	if got, want := semantic(fake), semantic(freshFake(t, tbl)); got != want {
		t.Errorf("state differs from a fresh sync of the same table:\n%s", backendtest.FirstDiff(want, got))
	}
}

// portChains returns the chains of the fake that belong to the port.
func portChains(fake *knftables.Fake, n model.ServicePortName) []string {
	var out []string
	for name := range fake.Table.Chains {
		if s, ok := chainPort(name); ok && s == portSuffix(n) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// affinitySets returns the affinity sets of the fake whose comment starts with the port.
func affinitySets(fake *knftables.Fake, n model.ServicePortName) map[string]string {
	out := map[string]string{}
	for name, s := range fake.Table.Sets {
		if strings.HasPrefix(name, prefixAffinity) && s.Comment != nil && strings.HasPrefix(*s.Comment, n.String()+" -> ") {
			out[name] = strings.TrimPrefix(*s.Comment, n.String()+" -> ")
		}
	}
	return out
}

func sortedLines(s string) string {
	l := strings.Split(s, "\n")
	sort.Strings(l)
	return strings.Join(l, "\n")
}

func fullTx(ops []txOp) bool { return hasLine(ops, "flush map ip portico "+mapServiceIPs) }

// ---- tests ----

func TestSequenceOneEndpointReplaced(t *testing.T) {
	// The replacement sorts after every other endpoint, whichever one it replaces.
	for _, replaced := range []int{0, 1, 2} {
		t.Run(fmt.Sprintf("endpoint-%d", replaced), func(t *testing.T) { testOneEndpointReplaced(t, replaced) })
	}
}

func testOneEndpointReplaced(t *testing.T, replaced int) {
	t1 := everyKind(t)
	b, recs, fakes := recordingBackend(t, nil)
	rec, fake := recs[model.IPv4], fakes[model.IPv4]
	if tx := step(t, b, rec, nil, t1); !fullTx(parseOps(tx.text)) {
		t.Fatalf("first sync is not a full rewrite:\n%s", tx.text)
	}
	checkConsistent(t, fake)
	before := snapshot(t, fake)

	sp, _ := t1.Get(webHTTP)
	if len(sp.Cluster) != 3 {
		t.Fatalf("fixture changed: %s has %d endpoints, want 3", webHTTP, len(sp.Cluster))
	}
	gone := sp.Cluster[replaced]
	eps := slices.Clone(sp.Cluster)
	eps[replaced] = remoteEP(gone, "10.244.2.99")
	t2 := editPort(t, t1, webHTTP, setCluster(eps...))
	if sp.Cluster[replaced].Local {
		// The local endpoint's hairpin element is shared with other ports: kept.
		defer func() {
			if fake.Table.Sets[setHairpin].FindElement(gone.Addr.String(), gone.Addr.String()) == nil {
				t.Error("hairpin element still used by other ports was removed")
			}
		}()
	}
	tx := step(t, b, rec, t1, t2)
	ops := parseOps(tx.text)
	t.Logf("transaction:\n%s", tx.text)

	assertOnlyPort(t, ops, webHTTP, keyOwners(before, fake), suffixes(t1, t2))
	if tx.ops > 4 {
		t.Errorf("%d operations for one endpoint, want <= 4", tx.ops)
	}
	_, off, mapName := dnatOf(t, fake, prefixCluster+portSuffix(webHTTP))
	var dels, adds []txOp
	for _, o := range ops {
		switch {
		case o.kind != "element" || o.obj != mapName:
			t.Errorf("operation %q is not on endpoint map %s", o.line, mapName)
		case o.verb == "delete":
			dels = append(dels, o)
		case o.verb == "add":
			adds = append(adds, o)
		default:
			t.Errorf("unexpected %q", o.line)
		}
	}
	if len(dels) != 1 || len(adds) != 1 || dels[0].elemKey() != adds[0].elemKey() || !strings.Contains(dels[0].line, "{ "+strconv.Itoa(off+replaced)+" }") {
		t.Fatalf("want one element replaced in place, got deletes %v adds %v", dels, adds)
	}
	if want := "10.244.2.99 . " + strconv.Itoa(int(gone.Port)); adds[0].elemValue() != want {
		t.Errorf("new element value %q, want %q", adds[0].elemValue(), want)
	}
	for name, c := range before.Table.Chains {
		if got := fake.Table.Chains[name]; got == nil || len(got.Rules) != len(c.Rules) {
			t.Errorf("chain %s changed", name)
		}
	}
	assertSameBehaviour(t, fake, t2)
}

// dnatOf returns mod, offset and map of the DNAT rule of chain.
func dnatOf(t *testing.T, fake *knftables.Fake, chain string) (int, int, string) {
	t.Helper()
	c := fake.Table.Chains[chain]
	if c == nil {
		t.Fatalf("no chain %s", chain)
	}
	for _, r := range c.Rules {
		if m := dnatMapRe.FindStringSubmatch(r.Rule); m != nil {
			mod, _ := strconv.Atoi(m[1])
			off, _ := strconv.Atoi(m[2])
			return mod, off, m[3]
		}
	}
	t.Fatalf("chain %s has no DNAT rule", chain)
	return 0, 0, ""
}

func TestSequenceEndpointCountChanges(t *testing.T) {
	t1 := everyKind(t)
	b, recs, fakes := recordingBackend(t, nil)
	rec, fake := recs[model.IPv4], fakes[model.IPv4]
	step(t, b, rec, nil, t1)
	chain := prefixCluster + portSuffix(npHTTP)
	sp, _ := t1.Get(npHTTP)
	if len(sp.Cluster) != 2 {
		t.Fatalf("fixture changed: %s has %d endpoints, want 2", npHTTP, len(sp.Cluster))
	}
	eps := slices.Clone(sp.Cluster)
	_, off0, map0 := dnatOf(t, fake, chain)
	names := suffixes(t1)

	// grow adds one remote endpoint and returns the transaction.
	prev := t1
	grow := func(addr string) (*model.Table, []txOp, *knftables.Fake) {
		t.Helper()
		before := snapshot(t, fake)
		eps = append(eps, remoteEP(eps[0], addr))
		next := editPort(t, prev, npHTTP, setCluster(slices.Clone(eps)...))
		tx := step(t, b, rec, prev, next)
		prev = next
		ops := parseOps(tx.text)
		assertOnlyPort(t, ops, npHTTP, keyOwners(before, fake), names)
		checkConsistent(t, fake)
		return next, ops, before
	}

	t.Run("2to3 same class", func(t *testing.T) {
		_, ops, _ := grow("10.244.3.1")
		mod, off, m := dnatOf(t, fake, chain)
		if mod != 3 || off != off0 || m != map0 {
			t.Errorf("DNAT rule reads mod %d offset %d %s, want mod 3 offset %d %s", mod, off, m, off0, map0)
		}
		for _, o := range ops {
			switch {
			case o.kind == "element" && o.verb == "add" && o.obj == map0 && o.elemKey() == strconv.Itoa(off0+2):
			case (o.kind == "chain" || o.kind == "rule") && o.obj == chain:
			default:
				t.Errorf("unexpected operation %q", o.line)
			}
		}
		if !hasLine(ops, "flush chain ip portico "+chain) {
			t.Errorf("chain %s not rewritten", chain)
		}
		if n := len(filterOps(ops, func(o txOp) bool { return o.kind == "element" })); n != 1 {
			t.Errorf("%d element operations, want 1", n)
		}
	})
	t.Run("3to4 same class", func(t *testing.T) {
		grow("10.244.3.2")
		if mod, off, _ := dnatOf(t, fake, chain); mod != 4 || off != off0 {
			t.Errorf("mod %d offset %d, want mod 4 offset %d", mod, off, off0)
		}
	})
	var freedOff int
	t.Run("4to5 new class", func(t *testing.T) {
		next, ops, _ := grow("10.244.3.3")
		mod, off, m := dnatOf(t, fake, chain)
		if mod != 5 || off == off0 || m != map0 {
			t.Errorf("DNAT rule reads mod %d offset %d %s, want mod 5 at a new offset of %s", mod, off, m, map0)
		}
		var dels, adds []string
		for _, o := range ops {
			if o.kind != "element" {
				continue
			}
			if o.verb == "delete" {
				dels = append(dels, o.elemKey())
			} else {
				adds = append(adds, o.elemKey())
			}
		}
		slices.Sort(dels)
		wantDels := []string{strconv.Itoa(off0), strconv.Itoa(off0 + 1), strconv.Itoa(off0 + 2), strconv.Itoa(off0 + 3)}
		slices.Sort(wantDels)
		if !slices.Equal(dels, wantDels) {
			t.Errorf("deleted keys %v, want the old block %v", dels, wantDels)
		}
		if len(adds) != 5 {
			t.Errorf("added %d elements, want 5", len(adds))
		}
		for k := off0; k < off0+4; k++ {
			if fake.Table.Maps[map0].FindElement(strconv.Itoa(k)) != nil {
				t.Errorf("old key %d still in %s", k, map0)
			}
		}
		freedOff = off0
		assertSameBehaviour(t, fake, next)
	})
	t.Run("freed block is reused", func(t *testing.T) {
		// A new Service with 1 endpoint gets a block of the freed size class.
		src, _ := prev.Get(extSvc)
		cp := *src
		cp.Name = spn("apps", "newcomer", "", model.TCP)
		cp.Frontends = []model.Frontend{{Kind: model.ClusterIP, Addr: netip.MustParseAddr("10.96.9.9"), Port: 80}}
		cp.Cluster = []model.Endpoint{remoteEP(src.Cluster[0], "10.244.3.50")}
		cp.Local = nil
		cp.Seal()
		next := prev.Update(prev.Node(), []*model.ServicePort{&cp}, nil)
		step(t, b, rec, prev, next)
		prev = next
		checkConsistent(t, fake)
		if _, off, _ := dnatOf(t, fake, prefixCluster+portSuffix(cp.Name)); off != freedOff {
			t.Errorf("new group at offset %d, want the freed block at %d", off, freedOff)
		}
		assertSameBehaviour(t, fake, next)
	})
	t.Run("shrink back", func(t *testing.T) {
		before := snapshot(t, fake)
		next := editPort(t, prev, npHTTP, setCluster(eps[0]))
		tx := step(t, b, rec, prev, next)
		prev = next
		assertOnlyPort(t, parseOps(tx.text), npHTTP, keyOwners(before, fake), suffixes(next, t1))
		if mod, _, _ := dnatOf(t, fake, chain); mod != 1 {
			t.Errorf("mod %d, want 1", mod)
		}
		assertSameBehaviour(t, fake, next)
	})
}

func TestSequenceServiceDeleted(t *testing.T) {
	for _, nextFull := range []bool{false, true} {
		t.Run(fmt.Sprintf("next-full=%v", nextFull), func(t *testing.T) {
			t1 := everyKind(t)
			b, recs, fakes := recordingBackend(t, nil)
			rec, fake := recs[model.IPv4], fakes[model.IPv4]
			step(t, b, rec, nil, t1)
			before := snapshot(t, fake)

			// default/ext and pol/sticky are the only users of the local endpoint
			// 10.244.1.11 (its hairpin element goes); pol/etp-remote has a drop element.
			gone := []model.ServicePortName{extSvc, sticky, etpRemote}
			var goneChains []string
			for _, n := range gone {
				goneChains = append(goneChains, portChains(before, n)...)
			}
			goneSets := affinitySets(before, sticky)
			if len(goneChains) != 5 || len(goneSets) != 2 { // cluster- chains of all three, ext- of ext and etp-remote
				t.Fatalf("fixture changed: chains %v affinity sets %v", goneChains, goneSets)
			}
			t2 := removePorts(t, t1, gone...)
			tx := step(t, b, rec, t1, t2)
			ops := parseOps(tx.text)
			t.Logf("deleting transaction:\n%s", tx.text)

			for _, c := range goneChains {
				if !hasLine(ops, "flush chain ip portico "+c) {
					t.Errorf("chain %s not flushed", c)
				}
				if ch := fake.Table.Chains[c]; ch == nil || len(ch.Rules) != 0 {
					t.Errorf("chain %s should exist empty until the next transaction", c)
				}
			}
			for _, o := range ops {
				if o.verb == "delete" && (o.kind == "chain" || o.kind == "set") {
					t.Errorf("%q: objects must only be deleted by the next transaction", o.line)
				}
				if o.verb == "add" {
					t.Errorf("%q: deleting Services adds nothing", o.line)
				}
			}
			names := suffixes(t1)
			keys := keyOwners(before)
			for _, o := range ops {
				if o.verb != "delete" || o.kind != "element" {
					continue
				}
				s := owner(o, keys, names)
				if s == "" {
					continue // cluster-ips, hairpin: checked below
				}
				if !slices.ContainsFunc(gone, func(n model.ServicePortName) bool { return portSuffix(n) == s }) {
					t.Errorf("%q deletes an element of %s", o.line, s)
				}
			}
			for _, want := range []string{
				"delete element ip portico cluster-ips { 10.96.0.40 }",
				"delete element ip portico cluster-ips { 10.96.1.2 }",
				"delete element ip portico cluster-ips { 10.96.1.3 }",
				"delete element ip portico hairpin { 10.244.1.11 . 10.244.1.11 }",
				"delete element ip portico no-endpoint-services { 192.168.50.10 . tcp . 30002 }",
				"delete element ip portico service-ips { 10.96.1.3 . tcp . 80 }",
				"delete element ip portico service-ips { 192.168.60.40 . tcp . 8000 }",
			} {
				if !hasLine(ops, want) {
					t.Errorf("missing %q", want)
				}
			}
			for _, keep := range []string{"hairpin { 10.244.1.10 . 10.244.1.10 }", "cluster-ips { 10.96.0.10 }"} {
				if hasLine(ops, "delete element ip portico "+keep) {
					t.Errorf("shared element %s deleted", keep)
				}
			}
			// Nothing of the deleted ports stays in the shared sets and maps.
			for _, o := range parseOps(fake.Dump()) {
				if o.kind != "element" {
					continue
				}
				if s := owner(o, keyOwners(fake), names); slices.ContainsFunc(gone, func(n model.ServicePortName) bool { return portSuffix(n) == s }) {
					t.Errorf("element of a deleted port left: %s", o.line)
				}
			}
			checkConsistent(t, fake)

			// The next transaction deletes the emptied chains and the affinity sets.
			var tx2 txRecord
			if nextFull {
				tx2 = stepDiff(t, b, rec, t2, model.Diff{Full: true})
			} else {
				t3 := editPort(t, t2, webHTTP, func(sp *model.ServicePort) { sp.Cluster = sp.Cluster[:2] })
				tx2 = step(t, b, rec, t2, t3)
				t2 = t3
			}
			ops2 := parseOps(tx2.text)
			for _, c := range goneChains {
				if !hasLine(ops2, "delete chain ip portico "+c) {
					t.Errorf("next transaction does not delete chain %s", c)
				}
				if fake.Table.Chains[c] != nil {
					t.Errorf("chain %s still exists", c)
				}
			}
			for s := range goneSets {
				if !hasLine(ops2, "delete set ip portico "+s) {
					t.Errorf("next transaction does not delete affinity set %s", s)
				}
				if fake.Table.Sets[s] != nil {
					t.Errorf("affinity set %s still exists", s)
				}
			}
			assertSameBehaviour(t, fake, t2)
			// Deletions happen once.
			tx3 := stepDiff(t, b, rec, t2, model.Diff{})
			if strings.Contains(tx3.text, "delete") {
				t.Errorf("third transaction deletes again:\n%s", tx3.text)
			}
		})
	}
}

func TestSequencePortDeletedKeepsSharedElements(t *testing.T) {
	t1 := everyKind(t)
	b, recs, fakes := recordingBackend(t, nil)
	rec, fake := recs[model.IPv4], fakes[model.IPv4]
	step(t, b, rec, nil, t1)
	if len(servicePorts(t1, "default", "web")) != 2 {
		t.Fatal("fixture changed: default/web should have two ports")
	}
	t2 := removePorts(t, t1, webDNS)
	tx := step(t, b, rec, t1, t2)
	ops := parseOps(tx.text)
	chain := prefixCluster + portSuffix(webDNS)
	if !hasLine(ops, "flush chain ip portico "+chain) {
		t.Errorf("chain %s not flushed:\n%s", chain, tx.text)
	}
	if !hasLine(ops, "delete element ip portico service-ips { 10.96.0.10 . udp . 53 }") {
		t.Errorf("dispatch element of the port not deleted:\n%s", tx.text)
	}
	for _, o := range ops {
		if o.kind == "element" && (o.obj == setClusterIPs || o.obj == setHairpin) {
			t.Errorf("%q: the cluster IP and the hairpin pairs are still used by %s", o.line, webHTTP)
		}
	}
	if fake.Table.Sets[setClusterIPs].FindElement("10.96.0.10") == nil {
		t.Error("cluster IP element shared with the other port was removed")
	}
	if fake.Table.Maps[mapServiceIPs].FindElement("10.96.0.10", "tcp", "80") == nil {
		t.Error("dispatch element of the other port was removed")
	}
	checkConsistent(t, fake)

	// Deleting the last port removes the shared element.
	t3 := removePorts(t, t2, webHTTP)
	tx = step(t, b, rec, t2, t3)
	ops = parseOps(tx.text)
	if !hasLine(ops, "delete element ip portico cluster-ips { 10.96.0.10 }") {
		t.Errorf("cluster IP not deleted with its last port:\n%s", tx.text)
	}
	if !hasLine(ops, "delete chain ip portico "+chain) {
		t.Errorf("chain %s of the previous transaction not deleted", chain)
	}
	stepDiff(t, b, rec, t3, model.Diff{})
	assertSameBehaviour(t, fake, t3)
}

func TestSequenceRecreatedBeforeDeferredDelete(t *testing.T) {
	for _, tc := range []struct {
		name string
		port model.ServicePortName
		edit func(sp *model.ServicePort) // the re-created version, nil for the same one
	}{
		{"same", etpRemote, nil},
		{"same-affinity", sticky, nil},
		{"other-endpoints", webHTTP, func(sp *model.ServicePort) { sp.Cluster = sp.Cluster[:1] }},
		{"other-affinity-endpoints", sticky, func(sp *model.ServicePort) { sp.Cluster = sp.Cluster[1:] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t1 := everyKind(t)
			b, recs, fakes := recordingBackend(t, nil)
			rec, fake := recs[model.IPv4], fakes[model.IPv4]
			step(t, b, rec, nil, t1)
			chains := portChains(fake, tc.port)
			t2 := removePorts(t, t1, tc.port)
			step(t, b, rec, t1, t2)
			t3 := t1
			if tc.edit != nil {
				t3 = editPort(t, t1, tc.port, tc.edit)
			}
			tx := step(t, b, rec, t2, t3)
			sets := affinitySets(fake, tc.port)
			for _, o := range parseOps(tx.text) {
				if o.verb != "delete" {
					continue
				}
				if _, mine := sets[o.obj]; (o.kind == "chain" && slices.Contains(chains, o.obj)) || (o.kind == "set" && mine) {
					t.Errorf("re-created port loses %s %s: %q", o.kind, o.obj, o.line)
				}
			}
			for _, c := range chains {
				if ch := fake.Table.Chains[c]; ch == nil || len(ch.Rules) == 0 {
					t.Errorf("chain %s missing or empty after re-creation", c)
				}
			}
			checkConsistent(t, fake)
			assertSameBehaviour(t, fake, t3)
			// Nor does any later transaction delete it.
			tx = stepDiff(t, b, rec, t3, model.Diff{})
			for _, c := range chains {
				if strings.Contains(tx.text, "delete chain ip portico "+c+"\n") {
					t.Errorf("later transaction deletes re-created chain %s", c)
				}
			}
			assertSameBehaviour(t, fake, t3)
		})
	}
}

func TestSequenceFailureForcesFullRewrite(t *testing.T) {
	for _, tc := range []struct {
		name string
		// change returns the table whose sync fails, then the next one.
		change func(t *testing.T, t1 *model.Table) (*model.Table, *model.Table)
		// before runs a successful sync before the failing one.
		before bool
	}{
		{"endpoint-change", func(t *testing.T, t1 *model.Table) (*model.Table, *model.Table) {
			failing := editPort(t, t1, webHTTP, func(sp *model.ServicePort) { sp.Cluster = sp.Cluster[:1] })
			return failing, editPort(t, failing, npHTTP, func(sp *model.ServicePort) { sp.Cluster = sp.Cluster[1:] })
		}, false},
		{"pending-deletes", func(t *testing.T, t1 *model.Table) (*model.Table, *model.Table) {
			failing := editPort(t, t1, webHTTP, func(sp *model.ServicePort) { sp.Cluster = sp.Cluster[:1] })
			return failing, removePorts(t, failing, lbHTTPS)
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t1 := everyKind(t)
			b, recs, fakes := recordingBackend(t, nil)
			rec, fake := recs[model.IPv4], fakes[model.IPv4]
			step(t, b, rec, nil, t1)
			var stale []string
			if tc.before {
				stale = portChains(fake, sticky)
				t0 := removePorts(t, t1, sticky)
				step(t, b, rec, t1, t0)
				t1 = t0
			}
			failing, next := tc.change(t, t1)
			dumpBefore := fake.Dump()
			injected := errors.New("injected failure")
			rec.failNext = injected
			if err := b.Sync(context.Background(), failing, model.Compare(t1, failing)); !errors.Is(err, injected) {
				t.Fatalf("sync returned %v, want the injected error", err)
			}
			if fake.Dump() != dumpBefore {
				t.Fatal("failed transaction changed the fake")
			}
			d := model.Compare(failing, next)
			if d.Full {
				t.Fatal("test bug: the diff should not be full")
			}
			tx := stepDiff(t, b, rec, next, d)
			ops := parseOps(tx.text)
			// Every shared set and map (the endpoint maps too) is flushed and refilled.
			for _, o := range sharedSets(newFam(model.IPv4)) {
				var line string
				switch v := o.(type) {
				case *knftables.Map:
					line = "flush map ip portico " + v.Name
				case *knftables.Set:
					line = "flush set ip portico " + v.Name
				}
				if !hasLine(ops, line) {
					t.Errorf("sync after a failure lacks %q", line)
				}
			}
			checkConsistent(t, fake)
			if len(stale) > 0 {
				for _, c := range stale {
					if ch := fake.Table.Chains[c]; ch != nil && len(ch.Rules) > 0 {
						t.Errorf("stale chain %s has rules", c)
					}
				}
				// The deferred deletion still happens.
				stepDiff(t, b, rec, next, model.Diff{})
				for _, c := range stale {
					if fake.Table.Chains[c] != nil {
						t.Errorf("stale chain %s never deleted", c)
					}
				}
			}
			if got, want := fake.Dump(), freshFake(t, next).Dump(); got != want {
				t.Errorf("state after recovery differs from a fresh backend's:\n%s", backendtest.FirstDiff(want, got))
			}
			// And partial syncs work again afterwards.
			after := editPort(t, next, npHTTP, func(sp *model.ServicePort) {
				sp.Cluster = append(sp.Cluster, remoteEP(sp.Cluster[0], "10.244.3.7"))
			})
			if tx := step(t, b, rec, next, after); fullTx(parseOps(tx.text)) || tx.ops > 8 {
				t.Errorf("sync after recovery is not partial (%d ops)", tx.ops)
			}
			assertSameBehaviour(t, fake, after)
		})
	}
}

func TestSequenceSessionAffinity(t *testing.T) {
	t1 := everyKind(t)
	b, recs, fakes := recordingBackend(t, nil)
	rec, fake := recs[model.IPv4], fakes[model.IPv4]
	step(t, b, rec, nil, t1)
	sp, _ := t1.Get(sticky)
	byEP := func() map[string]string { // endpoint -> set
		out := map[string]string{}
		for s, ep := range affinitySets(fake, sticky) {
			out[ep] = s
		}
		return out
	}
	sets := byEP()
	if len(sets) != len(sp.Cluster) {
		t.Fatalf("%d affinity sets for %d endpoints: %v", len(sets), len(sp.Cluster), sets)
	}
	chain := fake.Table.Chains[prefixCluster+portSuffix(sticky)]
	for ep, s := range sets {
		set := fake.Table.Sets[s]
		if set.Timeout == nil || *set.Timeout != sp.Affinity.Timeout {
			t.Errorf("set %s timeout %v, want %v", s, set.Timeout, sp.Affinity.Timeout)
		}
		if !slices.Contains(set.Flags, knftables.TimeoutFlag) || !slices.Contains(set.Flags, knftables.DynamicFlag) {
			t.Errorf("set %s flags %v", s, set.Flags)
		}
		if !slices.ContainsFunc(chain.Rules, func(r *knftables.Rule) bool {
			return strings.Contains(r.Rule, "@"+s+" ") && strings.HasSuffix(r.Rule, "dnat ip to "+ep)
		}) {
			t.Errorf("no rule sends the clients of %s back to %s", s, ep)
		}
	}

	// A new endpoint gets its set.
	added := remoteEP(sp.Cluster[0], "10.244.3.3")
	t2 := editPort(t, t1, sticky, setCluster(append(slices.Clone(sp.Cluster), added)...))
	tx := step(t, b, rec, t1, t2)
	now := byEP()
	newSet, ok := now[added.String()]
	if !ok || len(now) != 3 {
		t.Fatalf("sets after adding an endpoint: %v", now)
	}
	if !strings.Contains(tx.text, "add set ip portico "+newSet+" ") {
		t.Errorf("transaction does not create %s:\n%s", newSet, tx.text)
	}
	if strings.Contains(tx.text, "delete") {
		t.Errorf("adding an endpoint deletes something:\n%s", tx.text)
	}
	checkConsistent(t, fake)

	// An endpoint that goes loses its set, one transaction later.
	first := sp.Cluster[0]
	goneSet := now[first.String()]
	t3 := editPort(t, t2, sticky, setCluster(sp.Cluster[1], added))
	tx = step(t, b, rec, t2, t3)
	if strings.Contains(tx.text, "delete set") {
		t.Errorf("set deleted in the same transaction as the rules that use it:\n%s", tx.text)
	}
	if fake.Table.Sets[goneSet] == nil {
		t.Errorf("set %s deleted too early", goneSet)
	}
	for _, r := range fake.Table.Chains[prefixCluster+portSuffix(sticky)].Rules {
		if strings.Contains(r.Rule, goneSet) {
			t.Errorf("rule still uses the set of the removed endpoint: %s", r.Rule)
		}
	}
	checkConsistent(t, fake)
	t4 := editPort(t, t3, webHTTP, func(sp *model.ServicePort) { sp.Cluster = sp.Cluster[:1] })
	tx = step(t, b, rec, t3, t4)
	if !strings.Contains(tx.text, "delete set ip portico "+goneSet+"\n") {
		t.Errorf("next transaction does not delete %s:\n%s", goneSet, tx.text)
	}
	if fake.Table.Sets[goneSet] != nil {
		t.Errorf("set %s not deleted", goneSet)
	}
	if got := byEP(); len(got) != 2 || got[added.String()] != newSet {
		t.Errorf("sets after removal: %v", got)
	}
	assertSameBehaviour(t, fake, t4)

	// A new timeout reaches the kernel.
	t5 := editPort(t, t4, sticky, func(sp *model.ServicePort) { sp.Affinity.Timeout = 3 * time.Hour })
	step(t, b, rec, t4, t5)
	stepDiff(t, b, rec, t5, model.Diff{})
	for s := range affinitySets(fake, sticky) {
		if set := fake.Table.Sets[s]; set.Timeout == nil || *set.Timeout != 3*time.Hour {
			t.Errorf("set %s has timeout %v after the timeout changed to 3h", s, set.Timeout)
		}
	}
	assertSameBehaviour(t, fake, t5)

	// Affinity switched off: every set goes (one transaction later).
	t6 := editPort(t, t5, sticky, func(sp *model.ServicePort) { sp.Affinity = model.Affinity{} })
	step(t, b, rec, t5, t6)
	stepDiff(t, b, rec, t6, model.Diff{})
	if got := affinitySets(fake, sticky); len(got) != 0 {
		t.Errorf("affinity sets left after affinity was switched off: %v", got)
	}
	assertSameBehaviour(t, fake, t6)
}

func TestSequenceRestart(t *testing.T) {
	t.Run("same model", func(t *testing.T) {
		t1 := everyKind(t)
		b1, recs1, fakes := recordingBackend(t, nil)
		step(t, b1, recs1[model.IPv4], nil, t1)
		// Scramble the slots with a few partial syncs before the "restart".
		t2 := editPort(t, t1, npHTTP, func(sp *model.ServicePort) {
			for _, a := range []string{"10.244.3.1", "10.244.3.2", "10.244.3.3"} {
				sp.Cluster = append(sp.Cluster, remoteEP(sp.Cluster[0], a))
			}
		})
		step(t, b1, recs1[model.IPv4], t1, t2)
		t3 := editPort(t, t2, npHTTP, func(sp *model.ServicePort) { sp.Cluster = sp.Cluster[:2] })
		step(t, b1, recs1[model.IPv4], t2, t3)
		want := freshFake(t, t3).Dump()

		b2, recs2, _ := recordingBackend(t, fakes)
		tx := step(t, b2, recs2[model.IPv4], nil, t3)
		if !fullTx(parseOps(tx.text)) {
			t.Fatal("first sync of a new backend is not full")
		}
		if got := fakes[model.IPv4].Dump(); got != want {
			t.Errorf("full sync over a populated table does not converge:\n%s", backendtest.FirstDiff(want, got))
		}
		// Again, as a periodic full sync: same state, no deletions, same transaction.
		tx2 := stepDiff(t, b2, recs2[model.IPv4], t3, model.Diff{Full: true})
		if got := fakes[model.IPv4].Dump(); got != want {
			t.Errorf("second full sync changes the table:\n%s", backendtest.FirstDiff(want, got))
		}
		// (The order of endpoint elements within a transaction is not fixed.)
		if a, b := sortedLines(tx.text), sortedLines(tx2.text); a != b {
			t.Errorf("second full sync differs from the first:\n%s", backendtest.FirstDiff(a, b))
		}
	})
	t.Run("stale objects of the previous run", func(t *testing.T) {
		old := everyKind(t)
		b1, recs1, fakes := recordingBackend(t, nil)
		step(t, b1, recs1[model.IPv4], nil, old)
		fake := fakes[model.IPv4]
		cur := scenario(t, nil, "clusterip.yaml", "nodeport.yaml").Table(model.IPv4)
		var stale, staleSets []string
		for name := range fake.Table.Chains {
			if s, ok := chainPort(name); ok && !slices.ContainsFunc(cur.Names(), func(n model.ServicePortName) bool { return portSuffix(n) == s }) {
				stale = append(stale, name)
			}
		}
		for name := range fake.Table.Sets {
			if strings.HasPrefix(name, prefixAffinity) {
				staleSets = append(staleSets, name)
			}
		}
		if len(stale) < 5 || len(staleSets) == 0 {
			t.Fatalf("test bug: stale chains %v sets %v", stale, staleSets)
		}

		b2, recs2, _ := recordingBackend(t, fakes)
		rec := recs2[model.IPv4]
		tx := step(t, b2, rec, nil, cur)
		ops := parseOps(tx.text)
		for _, c := range stale {
			if !hasLine(ops, "flush chain ip portico "+c) {
				t.Errorf("stale chain %s not flushed", c)
			}
			if hasLine(ops, "delete chain ip portico "+c) {
				t.Errorf("stale chain %s deleted in the transaction that empties it", c)
			}
		}
		checkConsistent(t, fake)
		tx = stepDiff(t, b2, rec, cur, model.Diff{})
		ops = parseOps(tx.text)
		for _, c := range stale {
			if !hasLine(ops, "delete chain ip portico "+c) {
				t.Errorf("stale chain %s not deleted by the next transaction", c)
			}
		}
		for _, s := range staleSets {
			if !hasLine(ops, "delete set ip portico "+s) {
				t.Errorf("stale set %s not deleted by the next transaction", s)
			}
		}
		if got, want := fake.Dump(), freshFake(t, cur).Dump(); got != want {
			t.Errorf("restarted backend does not converge to a fresh table:\n%s", backendtest.FirstDiff(want, got))
		}
	})
}

func TestRuleCommentsNameServicePort(t *testing.T) {
	st := scenario(t, nil, fixtures...)
	b, fakes := fakeBackend(t)
	syncAll(t, b, nil, st)
	for _, tbl := range st.Tables {
		fake := fakes[tbl.Family()]
		bySuffix := map[string]model.ServicePortName{}
		for _, n := range tbl.Names() {
			bySuffix[portSuffix(n)] = n
		}
		seen := map[model.ServicePortName]bool{}
		for name, c := range fake.Table.Chains {
			sfx, ok := chainPort(name)
			if !ok {
				continue
			}
			n, ok := bySuffix[sfx]
			if !ok {
				t.Errorf("%s: chain %s belongs to no port", tbl.Family(), name)
				continue
			}
			seen[n] = true
			if len(c.Rules) == 0 {
				t.Errorf("%s: chain %s is empty", tbl.Family(), name)
			}
			for _, r := range c.Rules {
				if r.Comment == nil || *r.Comment != n.String() {
					t.Errorf("%s: rule %q in %s has comment %v, want %q", tbl.Family(), r.Rule, name, r.Comment, n.String())
				}
			}
		}
		if len(seen) == 0 {
			t.Errorf("%s: no port has chains", tbl.Family())
		}
		// Also after a partial rewrite of a chain.
		checkConsistent(t, fake)
	}
	// Partial rewrites keep the comments.
	t1 := st.Table(model.IPv4)
	t2 := editPort(t, t1, npHTTP, func(sp *model.ServicePort) {
		sp.Cluster = append(sp.Cluster, remoteEP(sp.Cluster[0], "10.244.3.3"))
	})
	if err := b.Sync(context.Background(), t2, model.Compare(t1, t2)); err != nil {
		t.Fatal(err)
	}
	for _, r := range fakes[model.IPv4].Table.Chains[prefixCluster+portSuffix(npHTTP)].Rules {
		if r.Comment == nil || *r.Comment != npHTTP.String() {
			t.Errorf("rewritten rule %q has comment %v", r.Rule, r.Comment)
		}
	}
}

func TestSequenceEndpointChurnIsProportional(t *testing.T) {
	t1 := everyKind(t)
	// web:http gets 10 endpoints (a block of 16), then each is replaced in turn.
	eps := make([]model.Endpoint, 0, 10)
	sp, _ := t1.Get(webHTTP)
	for i := range 10 {
		eps = append(eps, remoteEP(sp.Cluster[0], fmt.Sprintf("10.244.5.%d", 10+i)))
	}
	t2 := editPort(t, t1, webHTTP, setCluster(slices.Clone(eps)...))
	b, recs, fakes := recordingBackend(t, nil)
	rec, fake := recs[model.IPv4], fakes[model.IPv4]
	step(t, b, rec, nil, t2)
	prev := t2
	for i := range 20 {
		// Alternate between the lowest and the highest address, so that the new one
		// sorts first or last.
		k := (i * 7) % len(eps)
		if i%2 == 0 {
			eps[k] = remoteEP(eps[k], fmt.Sprintf("10.244.4.%d", i))
		} else {
			eps[k] = remoteEP(eps[k], fmt.Sprintf("10.244.6.%d", i))
		}
		next := editPort(t, prev, webHTTP, setCluster(slices.Clone(eps)...))
		tx := step(t, b, rec, prev, next)
		if tx.ops != 2 {
			t.Errorf("change %d: %d operations to replace one endpoint, want 2:\n%s", i, tx.ops, tx.text)
		}
		checkConsistent(t, fake)
		prev = next
	}
	// Removing one and adding one at once still costs little.
	eps = append(eps[1:], remoteEP(eps[0], "10.244.7.1"))
	next := editPort(t, prev, webHTTP, setCluster(slices.Clone(eps)...))
	if tx := step(t, b, rec, prev, next); tx.ops != 2 {
		t.Errorf("%d operations for one endpoint out and one in, want 2:\n%s", tx.ops, tx.text)
	}
	// One fewer (same size class): the rule is rewritten (4 operations), the last slot's
	// endpoint moves into the hole (2) and the last slot goes (1).
	next2 := editPort(t, next, webHTTP, setCluster(slices.Concat(eps[:4], eps[5:])...))
	if tx := step(t, b, rec, next, next2); tx.ops > 7 {
		t.Errorf("%d operations to remove one endpoint of 10:\n%s", tx.ops, tx.text)
	}
	assertSameBehaviour(t, fake, next2)
}

// TestPendingWorkAfterDeletion: the backend tells the proxier that a deletion left work
// for the next transaction, and that an empty-diff sync finishes it.
func TestPendingWorkAfterDeletion(t *testing.T) {
	b, recs, _ := recordingBackend(t, nil)
	rec := recs[model.IPv4]
	full := everyKind(t)
	step(t, b, rec, nil, full)
	if b.PendingWork(model.IPv4) {
		t.Fatal("pending work right after a clean full sync")
	}
	var victim model.ServicePortName
	for _, n := range full.Names() {
		victim = n
		break
	}
	without := full.Update(full.Node(), nil, []model.ServicePortName{victim})
	step(t, b, rec, full, without)
	if !b.PendingWork(model.IPv4) {
		t.Fatalf("deleting %s left no pending work (its chains must be deleted by the next transaction)", victim)
	}
	tx := stepDiff(t, b, rec, without, model.Diff{})
	if !strings.Contains(tx.text, "delete chain") {
		t.Errorf("the follow-up transaction deletes no chain:\n%s", tx.text)
	}
	if b.PendingWork(model.IPv4) {
		t.Error("work still pending after the follow-up sync")
	}
}
