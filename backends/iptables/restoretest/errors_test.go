package restoretest

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// TestRestoreErrors checks each failure: the reason, the line number and text iptables-restore
// reports (checked against iptables-nft-restore and iptables-legacy-restore v1.8.9), and
// that the failed block left the ruleset as it was.
func TestRestoreErrors(t *testing.T) {
	cases := []struct {
		name  string
		input string
		want  error
		line  int
	}{
		{"jump to a missing chain", lines("*filter", ":T - [0:0]", "-A INPUT -j NOPE", "COMMIT"), ErrNoChain, 3},
		{"goto a missing chain", lines("*filter", "-A A -g NOPE", "COMMIT"), ErrNoChain, 2},
		{"jump to a built-in chain", lines("*filter", "-A A -j INPUT", "COMMIT"), ErrNoChain, 2},
		{"rule into a missing chain", lines("*filter", "-A NEVER -j ACCEPT", "COMMIT"), ErrNoChain, 2},
		{"delete a referenced chain", lines("*filter", "-F B", "-X B", "COMMIT"), ErrChainBusy, 3},
		{"delete a chain with rules", lines("*filter", ":C - [0:0]", "-A C -j ACCEPT", "-X C", "COMMIT"), ErrChainNotEmpty, 4},
		{"delete a missing chain", lines("*filter", "-X C", "COMMIT"), ErrNoChain, 2},
		{"delete a built-in chain", lines("*filter", "-X INPUT", "COMMIT"), ErrBuiltinChain, 2},
		{"delete every chain, one referenced", lines("*filter", "-F A", "-F B", "-X", "COMMIT"), ErrChainBusy, 4},
		{"flush a missing chain", lines("*filter", "-F NOPE", "COMMIT"), ErrNoChain, 2},
		{"new chain that exists", lines("*filter", ":Z - [0:0]", "-N Z", "COMMIT"), ErrChainExists, 3},
		{"unknown table", lines("*bogus", "COMMIT"), ErrUnknownTable, 1},
		{"missing COMMIT", lines("*filter", ":Q - [0:0]"), ErrNoCommit, 3},
		{"table before COMMIT", lines("# c", "", "*filter", "*nat", "COMMIT"), ErrNoCommit, 4},
		{"rule outside a table", lines("-A INPUT -j ACCEPT"), ErrOutsideTable, 1},
		{"COMMIT outside a table", lines("COMMIT"), ErrOutsideTable, 1},
		{"delete a missing rule", lines("*filter", "-D OUTPUT -d 9.9.9.9/32 -j ACCEPT", "COMMIT"), ErrNoMatch, 2},
		{"delete rule number too big", lines("*filter", "-D OUTPUT 5", "COMMIT"), ErrBadIndex, 2},
		{"insert past the end", lines("*filter", ":W - [0:0]", "-A W -j ACCEPT", "-I W 3 -j DROP", "COMMIT"), ErrBadIndex, 4},
		{"replace past the end", lines("*filter", ":W - [0:0]", "-A W -j ACCEPT", "-R W 2 -j DROP", "COMMIT"), ErrBadIndex, 4},
		{"bad built-in policy", lines("*filter", ":INPUT FOO [0:0]", "COMMIT"), ErrBadPolicy, 2},
		{"policy on a user chain", lines("*filter", ":Y ACCEPT [0:0]", "COMMIT"), ErrBadPolicy, 2},
		{"unknown command", lines("*filter", "-P INPUT DROP", "COMMIT"), ErrSyntax, 2},
		{"unterminated quote", lines("*filter", `-A A -m comment --comment "x -j ACCEPT`, "COMMIT"), ErrSyntax, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r Ruleset
			mustRestore(t, &r, base, false)
			before := r.Save("")
			err := r.Restore(tc.input, true)
			var re *RestoreError
			if !errors.As(err, &re) || !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want a *RestoreError wrapping %v", err, tc.want)
			}
			if re.Line != tc.line {
				t.Errorf("line = %d, want %d (%v)", re.Line, tc.line, err)
			}
			if re.Line <= strings.Count(tc.input, "\n") && (re.Text == "" || !strings.Contains(err.Error(), strconv.Quote(re.Text))) {
				t.Errorf("error %q does not name the line's text %q", err, re.Text)
			}
			if after := r.Save(""); after != before {
				t.Errorf("failed restore changed the ruleset:\n%s\nwas:\n%s", after, before)
			}
			if s := r.LastStats(); !statsEqual(s, Stats{}) {
				t.Errorf("stats of a failed restore = %+v, want zero", s)
			}
		})
	}
}

// TestFailedBlockKeepsEarlierBlocks checks what both real tools do: blocks committed
// before the failing one stay applied.
func TestFailedBlockKeepsEarlierBlocks(t *testing.T) {
	var r Ruleset
	mustRestore(t, &r, base, false)
	filter := r.Save("filter")
	err := r.Restore(lines("*nat", ":P - [0:0]", "COMMIT", "*filter", "-A INPUT -j NOPE", "COMMIT"), true)
	if !errors.Is(err, ErrNoChain) {
		t.Fatalf("err = %v, want ErrNoChain", err)
	}
	if _, ok := r.Chain("nat", "P"); !ok {
		t.Errorf("the committed nat block was rolled back")
	}
	if got := r.Save("filter"); got != filter {
		t.Errorf("the failed filter block changed filter:\n%s", got)
	}
	if s := r.LastStats(); !statsEqual(s, Stats{Tables: []string{"nat"}, ChainsDeclared: 1, ChainsCreated: 1, Touched: []string{"nat/P"}}) {
		t.Errorf("stats = %+v, want the nat block only", s)
	}
}

// TestPartialRestoreTouches shows the use in sequence tests: a noflush restore of one
// Service's chain touches that chain only.
func TestPartialRestoreTouches(t *testing.T) {
	var r Ruleset
	mustRestore(t, &r, lines("*nat", ":PREROUTING ACCEPT [0:0]", ":KUBE-SERVICES - [0:0]",
		":SVC-1 - [0:0]", ":SVC-2 - [0:0]",
		"-A PREROUTING -j KUBE-SERVICES",
		"-A KUBE-SERVICES -d 10.96.0.1/32 -j SVC-1", "-A KUBE-SERVICES -d 10.96.0.2/32 -j SVC-2",
		"-A SVC-1 -j DNAT --to-destination 10.244.0.1:80", "-A SVC-2 -j DNAT --to-destination 10.244.0.2:80",
		"COMMIT"), false)
	mustRestore(t, &r, lines("*nat", ":SVC-2 - [0:0]",
		"-A SVC-2 -j DNAT --to-destination 10.244.0.3:80", "COMMIT"), true)
	s := r.LastStats()
	if want := []string{"nat/SVC-2"}; strings.Join(s.Touched, ",") != strings.Join(want, ",") {
		t.Errorf("touched %q, want %q", s.Touched, want)
	}
	if s.ChainsFlushed != 1 || s.RulesWritten != 1 || s.ChainsCreated != 0 || s.TablesReplaced != 0 {
		t.Errorf("stats = %+v", s)
	}
	if got := r.Rules("nat", "SVC-1")[0].Spec; got != "-j DNAT --to-destination 10.244.0.1:80" {
		t.Errorf("SVC-1 changed: %q", got)
	}
}
