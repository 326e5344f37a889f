package iptrace

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/backends/iptables/ipsettest"
	"github.com/portico-dev/portico/backends/iptables/restoretest"
	"github.com/portico-dev/portico/model"
)

// host is node-a: 192.168.50.10 and fd00:50::10.
var host = backendtest.Host{LocalAddrs: []netip.Addr{netip.MustParseAddr("192.168.50.10"), netip.MustParseAddr("fd00:50::10")}}

// lines joins lines into restore input.
func lines(l ...string) string { return strings.Join(l, "\n") + "\n" }

// nat is a nat table block holding the given chain declarations and rules.
func nat(l ...string) string { return block("nat", l...) }

// filter is a filter table block.
func filter(l ...string) string { return block("filter", l...) }

// mangle is a mangle table block.
func mangle(l ...string) string { return block("mangle", l...) }

// block is a table block of restore input.
func block(table string, l ...string) string {
	return lines(append(append([]string{"*" + table}, l...), "COMMIT")...)
}

// newTracer loads rules (restore input, applied with --noflush) and sets (ipset restore
// input) into the fakes and returns a tracer of family f over them.
func newTracer(t *testing.T, f model.Family, rules, sets string) backendtest.Tracer {
	t.Helper()
	var rs restoretest.Ruleset
	if err := rs.Restore(rules, true); err != nil {
		t.Fatalf("restore: %v", err)
	}
	var ss ipsettest.Sets
	if err := ss.Restore(sets); err != nil {
		t.Fatalf("ipset restore: %v", err)
	}
	return New(&rs, &ss, f, host)
}

// pkt is a TCP packet arriving on iif ("" when node-a sends it).
func pkt(src, dst, iif string) backendtest.Packet {
	return backendtest.Packet{Proto: model.TCP, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddrPort(dst), InIface: iif}
}

// dnat is the result of a DNAT to the given endpoints ("!" suffix: masqueraded).
func dnat(sticky bool, eps ...string) backendtest.Result {
	r := backendtest.Result{Verdict: backendtest.VerdictDNAT, Sticky: sticky}
	for _, e := range eps {
		m := strings.HasSuffix(e, "!")
		r.Targets = append(r.Targets, backendtest.Target{Endpoint: netip.MustParseAddrPort(strings.TrimSuffix(e, "!")), Masquerade: m})
	}
	return r
}

var (
	accept = backendtest.Result{Verdict: backendtest.VerdictAccept}
	drop   = backendtest.Result{Verdict: backendtest.VerdictDrop}
	reject = backendtest.Result{Verdict: backendtest.VerdictReject}
)

// traceCase is one packet through one ruleset.
type traceCase struct {
	name  string
	fam   model.Family // 0: IPv4
	rules string
	sets  string
	p     backendtest.Packet
	want  backendtest.Result
	err   string // a substring of the expected error
}

// run traces each case and checks its result or error.
func runCases(t *testing.T, cases []traceCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fam := tc.fam
			if fam == 0 {
				fam = model.IPv4
			}
			got, err := newTracer(t, fam, tc.rules, tc.sets).Trace(tc.p)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Trace = %s, %v; want an error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Trace: %v", err)
			}
			if got.Verdict != tc.want.Verdict || got.Sticky != tc.want.Sticky || !slices.Equal(got.Targets, tc.want.Targets) {
				t.Errorf("Trace = %s %+v, want %s %+v", got, got.Targets, tc.want, tc.want.Targets)
			}
		})
	}
}

const (
	client = "192.168.50.1"
	svc    = "10.96.0.21:80"
	ep1    = "10.244.1.10:8080"
	ep2    = "10.244.2.10:8080"
	ep3    = "10.244.2.11:8080"
)

// TestJumpGotoReturn checks the chain semantics: a jump returns to the next rule, a goto
// returns to the caller of the chain that held it, RETURN and the end of a chain return,
// and a built-in chain's end meets its policy.
func TestJumpGotoReturn(t *testing.T) {
	twoLevels := func(via string) string {
		return nat(":A - [0:0]", ":B - [0:0]",
			"-A PREROUTING -j A", "-A PREROUTING -j DNAT --to-destination "+ep2,
			"-A A "+via+" B", "-A A -j DNAT --to-destination "+ep1,
			"-A B -d 10.96.0.21/32 -j RETURN", "-A B -j DNAT --to-destination "+ep3)
	}
	runCases(t, []traceCase{
		{name: "jump returns to the next rule", rules: twoLevels("-j"), p: pkt(client, svc, "eth0"), want: dnat(false, ep1)},
		{name: "goto returns to the caller's caller", rules: twoLevels("-g"), p: pkt(client, svc, "eth0"), want: dnat(false, ep2)},
		{name: "no RETURN: the chain's rule runs", rules: twoLevels("-g"), p: pkt(client, "10.96.0.22:80", "eth0"), want: dnat(false, ep3)},
		{name: "goto from a built-in chain ends in its policy", p: pkt(client, svc, "eth0"), want: drop,
			rules: filter(":FORWARD DROP [0:0]", ":A - [0:0]", "-A FORWARD -g A", "-A FORWARD -j ACCEPT", "-A A -j RETURN")},
		{name: "RETURN in a built-in chain ends in its policy", p: pkt(client, svc, "eth0"), want: drop,
			rules: filter(":FORWARD DROP [0:0]", "-A FORWARD -j RETURN", "-A FORWARD -j ACCEPT")},
		{name: "ACCEPT ends the table, not the packet", p: pkt(client, svc, "eth0"), want: reject,
			rules: mangle("-A PREROUTING -j ACCEPT", "-A PREROUTING -j DROP") + filter("-A FORWARD -j REJECT --reject-with icmp-port-unreachable")},
		{name: "policy ACCEPT", p: pkt(client, svc, "eth0"), want: accept, rules: filter(":FORWARD ACCEPT [0:0]")},
		{name: "a rule without target goes on", p: pkt(client, svc, "eth0"), want: dnat(false, ep1),
			rules: nat("-A PREROUTING -d 10.96.0.21/32", "-A PREROUTING -j DNAT --to-destination "+ep1)},
		{name: "DNAT ends the nat chain", p: pkt(client, svc, "eth0"), want: dnat(false, ep1),
			rules: nat("-A PREROUTING -j DNAT --to-destination "+ep1, "-A PREROUTING -j DNAT --to-destination "+ep2)},
		{name: "DNAT without a port keeps it", p: pkt(client, svc, "eth0"), want: dnat(false, "10.244.1.10:80"),
			rules: nat("-A PREROUTING -j DNAT --to-destination 10.244.1.10")},
		{name: "loop", p: pkt(client, svc, "eth0"), err: "nested chains",
			rules: nat(":A - [0:0]", ":B - [0:0]", "-A PREROUTING -j A", "-A A -j B", "-A B -j A")},
	})
}
