package nfttrace_test

import (
	"context"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/backends/nftables/nfttrace"
	"github.com/portico-dev/portico/model"
)

// chainSpec is a chain of a hand-built table: a base chain when hook is set.
type chainSpec struct {
	name  string
	typ   knftables.BaseChainType
	hook  knftables.BaseChainHook
	prio  knftables.BaseChainPriority
	rules []string
}

// base returns a base chain spec.
func base(name string, typ knftables.BaseChainType, hook knftables.BaseChainHook, prio knftables.BaseChainPriority, rules ...string) chainSpec {
	return chainSpec{name: name, typ: typ, hook: hook, prio: prio, rules: rules}
}

// regular returns a regular chain spec.
func regular(name string, rules ...string) chainSpec { return chainSpec{name: name, rules: rules} }

// handBuilt returns a tracer over an "ip portico" table holding the chains of specs.
func handBuilt(t *testing.T, specs ...chainSpec) backendtest.Tracer {
	t.Helper()
	fake := knftables.NewFake(knftables.IPv4Family, "portico")
	tx := fake.NewTransaction()
	tx.Add(&knftables.Table{})
	for _, c := range specs {
		ch := &knftables.Chain{Name: c.name}
		if c.hook != "" {
			ch.Type, ch.Hook, ch.Priority = &c.typ, &c.hook, &c.prio
		}
		tx.Add(ch)
	}
	for _, c := range specs {
		for _, r := range c.rules {
			tx.Add(&knftables.Rule{Chain: c.name, Rule: r})
		}
	}
	if err := fake.Run(context.Background(), tx); err != nil {
		t.Fatal(err)
	}
	return nfttrace.New(fake, model.IPv4, host)
}

const (
	filter = knftables.FilterType
	nat    = knftables.NATType
	pre    = knftables.PreroutingHook
	input  = knftables.InputHook
	output = knftables.OutputHook
)

// TestJumpGotoReturn checks that a goto replaces the chain that went (its later rules
// never run) and that a return there leads back to the rule after the jump.
func TestJumpGotoReturn(t *testing.T) {
	tr := handBuilt(t,
		base("pre", filter, pre, "filter", "jump a", "ip saddr 10.0.0.1 drop"),
		regular("a", "goto b", "reject"),
		regular("b", "ip daddr 10.0.0.2 return", "meta mark set 0x1"),
	)
	runCases(t, tr, []traceCase{
		{"return in the chain gone to", pkt(model.TCP, "10.0.0.1", "10.0.0.2:80", "eth0"), drop},
		{"end of the chain gone to", pkt(model.TCP, "10.0.0.1", "10.0.0.3:80", "eth0"), drop},
		{"no rule stops the packet", pkt(model.TCP, "10.0.0.9", "10.0.0.3:80", "eth0"), accept},
	})
}

// TestPriorities checks that base chains run in priority order, symbolic priorities
// included, and that accept only ends its own base chain.
func TestPriorities(t *testing.T) {
	tr := handBuilt(t,
		base("late", filter, pre, "dstnat+10", "ip saddr 10.0.0.1 drop"),
		base("early", filter, pre, "raw", "ip saddr 10.0.0.1 reject", "accept"),
		base("later", filter, pre, "10", "drop"),
	)
	runCases(t, tr, []traceCase{
		{"the earliest chain decides", pkt(model.TCP, "10.0.0.1", "10.0.0.2:80", "eth0"), reject},
		{"accept goes on to the next chain", pkt(model.TCP, "10.0.0.9", "10.0.0.2:80", "eth0"), drop},
	})
}

// TestLoopback checks that node-a's packets to itself come back through the filter
// chains of prerouting and input on "lo", but not through the NAT chains again.
func TestLoopback(t *testing.T) {
	tr := handBuilt(t,
		base("nat-pre", nat, pre, "dstnat", "meta l4proto tcp dnat ip to 10.9.9.9:8080"),
		base("filter-in", filter, input, "filter", `iifname "lo" th dport 22 drop`),
	)
	runCases(t, tr, []traceCase{
		{"arriving: DNATed in prerouting", pkt(model.TCP, "192.168.50.100", "192.168.50.10:80", "eth0"), dnat(false, "10.9.9.9:8080")},
		{"from node-a to itself: no second NAT", pkt(model.TCP, "192.168.50.10", "192.168.50.10:80", ""), accept},
		{"from node-a to itself: the input chain runs", pkt(model.TCP, "192.168.50.10", "192.168.50.10:22", ""), drop},
	})
}

// TestNumgenComparisons checks that a random comparison is followed both ways and a
// numgen DNAT over every slot.
func TestNumgenComparisons(t *testing.T) {
	tr := handBuilt(t,
		base("nat-out", nat, output, "dstnat",
			"numgen random mod 3 == 0 meta l4proto tcp dnat ip to 10.1.0.1:80",
			"numgen random mod 2 offset 5 != 5 meta l4proto tcp dnat ip to 10.1.0.2",
			"meta l4proto tcp dnat ip to 10.1.0.3:8080"),
	)
	runCases(t, tr, []traceCase{
		{"every branch", pkt(model.TCP, "192.168.50.10", "10.96.0.1:443", ""), dnat(false, "10.1.0.1:80", "10.1.0.2:443", "10.1.0.3:8080")},
	})
}

// TestTraceErrors checks that rules the tracer cannot run faithfully are errors that name
// the chain and the rule.
func TestTraceErrors(t *testing.T) {
	cases := []struct {
		name  string
		specs []chainSpec
		want  string
	}{
		{"unknown expression", []chainSpec{base("pre", filter, pre, "filter", "meta skuid 0 drop")}, `chain pre, rule "meta skuid 0 drop"`},
		{"other family", []chainSpec{base("pre", filter, pre, "filter", "ip6 daddr ::1 drop")}, `"ip6 daddr ::1 drop"`},
		{"source port", []chainSpec{base("pre", filter, pre, "filter", "tcp sport 80 drop")}, `"tcp sport 80 drop"`},
		{"anonymous verdict map", []chainSpec{base("pre", filter, pre, "filter", "ip daddr vmap { 10.0.0.2 : drop }")}, "anonymous maps"},
		{"statement after a verdict", []chainSpec{base("pre", filter, pre, "filter", "drop accept")}, `"drop accept"`},
		{"dnat in a filter chain", []chainSpec{base("pre", filter, pre, "filter", "dnat ip to 10.0.0.3")}, "nat chains"},
		{"jump to a base chain", []chainSpec{base("pre", filter, pre, "filter", "jump in"), base("in", filter, input, "filter")}, `base chain "in"`},
		{"loop of chains", []chainSpec{base("pre", filter, pre, "filter", "jump a"), regular("a", "jump b"), regular("b", "jump a")}, "loop"},
		{"paths ending differently", []chainSpec{base("pre", filter, pre, "filter", "numgen random mod 2 == 0 drop", "reject")}, "end differently"},
		{"unmodelled hook", []chainSpec{base("in", filter, knftables.IngressHook, "filter")}, "not modelled"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := handBuilt(t, tc.specs...).Trace(pkt(model.TCP, "10.0.0.1", "10.0.0.2:80", "eth0"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Trace = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
