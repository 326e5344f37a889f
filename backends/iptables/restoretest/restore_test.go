package restoretest

import (
	"slices"
	"strings"
	"testing"
)

// mustRestore applies input and fails the test on an error.
func mustRestore(t *testing.T, r *Ruleset, input string, noflush bool) {
	t.Helper()
	if err := r.Restore(input, noflush); err != nil {
		t.Fatalf("Restore(noflush=%v): %v\ninput:\n%s", noflush, err, input)
	}
}

// lines joins lines with a trailing newline.
func lines(l ...string) string { return strings.Join(l, "\n") + "\n" }

const base = `*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:A - [0:0]
:B - [0:0]
-A INPUT -j A
-A A -s 10.0.0.1/32 -j ACCEPT
-A A -j B
-A B -j DROP
-A OUTPUT -d 1.2.3.4/32 -j ACCEPT
COMMIT
`

func TestSaveOrderAndEmptyTable(t *testing.T) {
	var r Ruleset
	mustRestore(t, &r, base, false)
	want := lines("*filter",
		":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]", ":A - [0:0]", ":B - [0:0]",
		"-A INPUT -j A", "-A OUTPUT -d 1.2.3.4/32 -j ACCEPT",
		"-A A -s 10.0.0.1/32 -j ACCEPT", "-A A -j B", "-A B -j DROP", "COMMIT")
	if got := r.Save("filter"); got != want {
		t.Errorf("Save(filter):\n%s\nwant:\n%s", got, want)
	}
	wantNat := lines("*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
		":POSTROUTING ACCEPT [0:0]", "COMMIT")
	if got := r.Save("nat"); got != wantNat {
		t.Errorf("Save(nat) of an untouched table:\n%s\nwant:\n%s", got, wantNat)
	}
	if got := r.Save("bogus"); got != "" {
		t.Errorf("Save(bogus) = %q, want empty", got)
	}
	if all := r.Save(""); !strings.HasPrefix(all, "*raw\n") || !strings.HasSuffix(all, want) {
		t.Errorf("Save(\"\") does not list raw first and filter last:\n%s", all)
	}
}

func TestNoflushDeclarations(t *testing.T) {
	var r Ruleset
	mustRestore(t, &r, base, false)
	// Real tools: a declared built-in chain takes the policy and keeps its rules; a
	// declared user chain is flushed; undeclared chains are untouched.
	mustRestore(t, &r, lines("*filter", ":INPUT DROP [0:0]", ":A - [0:0]", "-A A -j RETURN", "COMMIT"), true)
	in, _ := r.Chain("filter", "INPUT")
	if in.Policy != "DROP" || len(in.Rules) != 1 {
		t.Errorf("INPUT after noflush declaration = %+v, want policy DROP and its rule kept", in)
	}
	if got := specs(r.Rules("filter", "A")); !slices.Equal(got, []string{"-j RETURN"}) {
		t.Errorf("A = %q, want only the new rule", got)
	}
	if got := specs(r.Rules("filter", "B")); !slices.Equal(got, []string{"-j DROP"}) {
		t.Errorf("B = %q, want untouched", got)
	}
	s := r.LastStats()
	want := Stats{Tables: []string{"filter"}, ChainsDeclared: 2, ChainsFlushed: 1, RulesWritten: 1,
		Touched: []string{"filter/A", "filter/INPUT"}}
	if !statsEqual(s, want) {
		t.Errorf("stats = %+v, want %+v", s, want)
	}
}

func TestFullRestoreReplacesTable(t *testing.T) {
	var r Ruleset
	mustRestore(t, &r, base, false)
	mustRestore(t, &r, lines("*filter", ":INPUT ACCEPT [0:0]", ":C - [0:0]", "COMMIT"), false)
	if got := r.Chains("filter"); !slices.Equal(got, []string{"INPUT", "FORWARD", "OUTPUT", "C"}) {
		t.Errorf("chains = %q, want the built-ins and C only", got)
	}
	// iptables-nft: an undeclared built-in chain is reset to ACCEPT.
	if fw, _ := r.Chain("filter", "FORWARD"); fw.Policy != "ACCEPT" || len(fw.Rules) != 0 {
		t.Errorf("FORWARD = %+v, want empty with policy ACCEPT", fw)
	}
	if s := r.LastStats(); s.TablesReplaced != 1 || s.ChainsCreated != 1 {
		t.Errorf("stats = %+v, want 1 table replaced, 1 chain created", s)
	}
}

func TestRulePositions(t *testing.T) {
	// The same sequence as iptables-legacy-restore in a namespace (iptables-nft 1.8.9
	// crashes on it), which left T = [2.2.2.2 ACCEPT, 5.5.5.5 DROP].
	var r Ruleset
	mustRestore(t, &r, lines("*filter", ":T - [0:0]",
		"-A T -s 1.1.1.1/32 -j ACCEPT",
		"-I T 2 -s 2.2.2.2/32 -j ACCEPT",
		"-I T 1 -s 3.3.3.3/32 -j ACCEPT",
		"-R T 1 -s 4.4.4.4/32 -j ACCEPT",
		"-D T -s 1.1.1.1/32 -j ACCEPT",
		"-A T -s 5.5.5.5/32 -j DROP",
		"-D T 1",
		"-A T -s 5.5.5.5/32 -j DROP",
		"-D T -s 5.5.5.5/32   -j DROP",
		"-I T -s 6.6.6.6/32 -j DROP",
		"COMMIT"), true)
	want := []string{"-s 6.6.6.6/32 -j DROP", "-s 2.2.2.2/32 -j ACCEPT", "-s 5.5.5.5/32 -j DROP"}
	if got := specs(r.Rules("filter", "T")); !slices.Equal(got, want) {
		t.Errorf("T = %q, want %q", got, want)
	}
	if s := r.LastStats(); s.RulesWritten != 7 || s.RulesDeleted != 3 {
		t.Errorf("stats = %+v, want 7 rules written, 3 deleted", s)
	}
}

func TestRuleFields(t *testing.T) {
	var r Ruleset
	mustRestore(t, &r, lines("*nat", ":KUBE-SVC - [0:0]", ":KUBE-SEP - [0:0]",
		`-A KUBE-SVC   -m comment --comment "ns/svc:http cluster IP" -d 10.96.0.1/32 -g KUBE-SEP`,
		`-A KUBE-SEP -p tcp -m tcp -j DNAT --to-destination 10.244.0.5:8080`,
		"COMMIT"), true)
	got := r.Rules("nat", "KUBE-SVC")[0]
	want := Rule{Spec: `-m comment --comment "ns/svc:http cluster IP" -d 10.96.0.1/32 -g KUBE-SEP`,
		Target: "KUBE-SEP", Goto: true, Comment: "ns/svc:http cluster IP"}
	if got != want {
		t.Errorf("rule = %+v, want %+v", got, want)
	}
	if got := r.Rules("nat", "KUBE-SEP")[0]; got.Target != "DNAT" || got.Goto {
		t.Errorf("DNAT rule = %+v", got)
	}
}

// specs returns the rules' Spec fields.
func specs(rules []Rule) []string {
	out := make([]string, len(rules))
	for i, r := range rules {
		out[i] = r.Spec
	}
	return out
}

// statsEqual compares two Stats field by field.
func statsEqual(a, b Stats) bool {
	return slices.Equal(a.Tables, b.Tables) && slices.Equal(a.Touched, b.Touched) &&
		a.TablesReplaced == b.TablesReplaced && a.ChainsDeclared == b.ChainsDeclared &&
		a.ChainsCreated == b.ChainsCreated && a.ChainsFlushed == b.ChainsFlushed &&
		a.ChainsDeleted == b.ChainsDeleted && a.RulesWritten == b.RulesWritten &&
		a.RulesDeleted == b.RulesDeleted
}

func TestDeleteChains(t *testing.T) {
	var r Ruleset
	mustRestore(t, &r, base, false)
	mustRestore(t, &r, lines("*filter", "-F A", "-F B", "-X B", "-N C", "COMMIT"), true)
	if got := r.Chains("filter"); !slices.Equal(got, []string{"INPUT", "FORWARD", "OUTPUT", "A", "C"}) {
		t.Errorf("chains = %q", got)
	}
	mustRestore(t, &r, lines("*filter", "-F", "-X", "-Z", "COMMIT"), true)
	if got := r.Chains("filter"); !slices.Equal(got, []string{"INPUT", "FORWARD", "OUTPUT"}) {
		t.Errorf("chains after -F, -X = %q, want the built-ins only", got)
	}
	if s := r.LastStats(); s.ChainsDeleted != 2 || s.ChainsFlushed != 5 {
		t.Errorf("stats = %+v, want 2 chains deleted, 5 flushed", s)
	}
}

func TestLegacyKeepsPolicies(t *testing.T) {
	r := Ruleset{Legacy: true}
	mustRestore(t, &r, base, false)
	mustRestore(t, &r, lines("*filter", ":INPUT DROP [0:0]", "COMMIT"), false)
	for chain, want := range map[string]string{"INPUT": "DROP", "FORWARD": "DROP", "OUTPUT": "ACCEPT"} {
		if c, _ := r.Chain("filter", chain); c.Policy != want || len(c.Rules) != 0 {
			t.Errorf("%s = %+v, want empty with policy %s", chain, c, want)
		}
	}
}
