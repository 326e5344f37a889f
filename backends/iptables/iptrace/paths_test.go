package iptrace

import (
	"testing"

	"github.com/portico-dev/portico/model"
)

// balance is a nat table whose service chain S DNATs to ep1, ep2, ep3 with the given
// --probability values of the first two rules (the third is unconditional).
func balance(p1, p2 string) string {
	return nat(":S - [0:0]", "-A PREROUTING -d 10.96.0.21/32 -p tcp -m tcp --dport 80 -j S",
		"-A S -p tcp -m comment --comment \"ns/web:http\" -m statistic --mode random --probability "+p1+" -j DNAT --to-destination "+ep1,
		"-A S -p tcp -m statistic --mode random --probability "+p2+" -j DNAT --to-destination "+ep2,
		"-A S -p tcp -j DNAT --to-destination "+ep3)
}

// sticky is the backend's affinity layout for ep1 and ep2: an --update rule per endpoint,
// then the random rules with --set. update names the list the --update of ep1 checks
// and updateTo the endpoint it DNATs to.
func sticky(update, updateTo string) string {
	const mask = " --mask 255.255.255.255 --rsource"
	return nat(":S - [0:0]", "-A PREROUTING -j S",
		"-A S -p tcp -m recent --update --seconds 10800 --reap --name "+update+mask+" -j DNAT --to-destination "+updateTo,
		"-A S -p tcp -m recent --update --seconds 10800 --reap --name EP2"+mask+" -j DNAT --to-destination "+ep2,
		"-A S -p tcp -m statistic --mode random --probability 0.5000000000 -m recent --set --name EP1"+mask+" -j DNAT --to-destination "+ep1,
		"-A S -p tcp -m recent --set --name EP2"+mask+" -j DNAT --to-destination "+ep2)
}

// TestRandomAndSticky checks that every random choice is followed, that the endpoints of
// a chain must be equally likely, and session affinity.
func TestRandomAndSticky(t *testing.T) {
	p := pkt(client, svc, "eth0")
	runCases(t, []traceCase{
		{name: "1/3, 1/2, then unconditional is uniform", rules: balance("0.33333333349", "0.50000000000"), p: p, want: dnat(false, ep1, ep2, ep3)},
		{name: "the backend's format", rules: balance("0.3333333333", "0.5000000000"), p: p, want: dnat(false, ep1, ep2, ep3)},
		{name: "1/3, 1/3 is caught", rules: balance("0.3333333333", "0.3333333333"), p: p, err: "check --probability"},
		{name: "1/2, 1/2 is caught", rules: balance("0.5", "0.5"), p: p, err: "share"},
		{name: "a probability of 1 starves the rest", rules: balance("1", "0.5"), p: p, err: "check --probability"},
		{name: "paths ending differently", p: p, err: "end differently",
			rules: filter("-A FORWARD -m statistic --mode random --probability 0.5 -j DROP")},
		{name: "sticky", rules: sticky("EP1", ep1), p: p, want: dnat(true, ep1, ep2)},
		{name: "an --update of another list is not sticky", rules: sticky("EPX", ep1), p: p, want: dnat(false, ep1, ep2)},
		{name: "an --update to another endpoint is not sticky", rules: sticky("EP1", ep3), p: p, want: dnat(false, ep1, ep2)},
		{name: "--set without --update is not sticky", p: p, want: dnat(false, ep1),
			rules: nat("-A PREROUTING -p tcp -m recent --set --name EP1 --mask 255.255.255.255 --rsource -j DNAT --to-destination " + ep1)},
		{name: "--rcheck after --update is not sticky", p: p, want: dnat(false, ep1),
			rules: nat("-A PREROUTING -p tcp -m recent --set --name EP1 --mask 255.255.255.255 --rsource -j DNAT --to-destination "+ep1,
				"-A PREROUTING -p tcp -m recent --rcheck --name EP1 --mask 255.255.255.255 --rsource -j DNAT --to-destination "+ep1)},
		{name: "--rcheck matches what the path --set", p: p, want: drop,
			rules: mangle("-A PREROUTING -m recent --set --name X --rsource", "-A PREROUTING -m recent --rcheck --name X --rsource -j DROP")},
		{name: "--rcheck of another address does not", p: p, want: dnat(false, ep1),
			rules: mangle("-A PREROUTING -m recent --set --name X --rdest") + nat("-A PREROUTING -j DNAT --to-destination "+ep1) +
				filter("-A FORWARD -m recent --rcheck --name X --rdest -j DROP")},
		{name: "--rcheck of the other side does not", p: p, want: accept,
			rules: mangle("-A PREROUTING -m recent --set --name X --rsource", "-A PREROUTING -m recent --rcheck --name X --rdest -j DROP")},
	})
}

// TestRoutingAndMasquerade checks the hooks a packet traverses and masquerading.
func TestRoutingAndMasquerade(t *testing.T) {
	const mark = "0x4000/0x4000"
	post := nat(":POST - [0:0]", ":S - [0:0]", "-A POSTROUTING -j POST",
		"-A POST -m mark ! --mark "+mark+" -j RETURN", "-A POST -j MARK --set-xmark 0x0/0x4000", "-A POST -j MASQUERADE --random-fully",
		"-A PREROUTING -j S", "-A OUTPUT -j S",
		"-A S ! -s 10.244.0.0/16 -j MARK --set-xmark "+mark, "-A S -d 10.96.0.21/32 -j DNAT --to-destination "+ep1,
		"-A S -d 10.96.0.22/32 -j DNAT --to-destination 192.168.50.10:8080")
	runCases(t, []traceCase{
		{name: "marked: masqueraded", rules: post, p: pkt(client, svc, "eth0"), want: dnat(false, ep1+"!")},
		{name: "unmarked: not masqueraded", rules: post, p: pkt("10.244.1.5", svc, "cni0"), want: dnat(false, ep1)},
		{name: "from node-a: OUTPUT and POSTROUTING", rules: post, p: pkt("192.168.50.10", svc, ""), want: dnat(false, ep1+"!")},
		{name: "DNAT to node-a goes to INPUT, not FORWARD", p: pkt(client, "10.96.0.22:80", "eth0"), want: reject,
			rules: post + filter(":FORWARD DROP [0:0]", "-A INPUT -j REJECT")},
		{name: "DNAT away from node-a goes to FORWARD", p: pkt(client, svc, "eth0"), want: drop,
			rules: post + filter(":FORWARD DROP [0:0]", "-A INPUT -j REJECT")},
		{name: "node-a to itself comes back on lo into INPUT", p: pkt("192.168.50.10", "192.168.50.10:22", ""), want: reject,
			rules: filter("-A INPUT -i lo -j REJECT --reject-with tcp-reset")},
		{name: "node-a's own packets see filter OUTPUT", p: pkt("192.168.50.10", "10.96.0.99:80", ""), want: drop,
			rules: filter("-A OUTPUT -d 10.96.0.0/16 -j DROP")},
		{name: "IPv6 DNAT", fam: model.IPv6, p: pkt("fd00:50::1", "[fd00:96::21]:80", "eth0"), want: dnat(false, "[fd00:244::10]:8080"),
			rules: nat("-A PREROUTING -d fd00:96::21/128 -p tcp -m tcp --dport 80 -j DNAT --to-destination [fd00:244::10]:8080")},
	})
}

// TestErrors checks that what the tracer does not model is an error naming the rule.
func TestErrors(t *testing.T) {
	p := pkt(client, svc, "eth0")
	runCases(t, []traceCase{
		{name: "unknown match", rules: filter("-A FORWARD -m limit --limit 5/sec -j ACCEPT"), p: p, err: `table filter chain FORWARD rule 1 "-m limit --limit 5/sec -j ACCEPT": match module "limit"`},
		{name: "unknown option", rules: filter("-A FORWARD -m tcp --dport 1 -j ACCEPT"), p: p, err: "-m tcp without -p tcp"},
		{name: "source port", rules: filter("-A FORWARD -p tcp -m tcp --sport 1 -j ACCEPT"), p: p, err: "--sport"},
		{name: "output interface", rules: filter("-A FORWARD -o eth0 -j ACCEPT"), p: p, err: `option "-o"`},
		{name: "unknown target", rules: filter("-A FORWARD -j LOG"), p: p, err: "LOG is neither"},
		{name: "unknown target option", rules: nat("-A POSTROUTING -j MASQUERADE --to-ports 5"), p: p, err: "not modelled"},
		{name: "DROP in nat", rules: nat("-A PREROUTING -j DROP"), p: p, err: "table nat"},
		{name: "REJECT in PREROUTING", rules: mangle("-A PREROUTING -j REJECT"), p: p, err: "REJECT reached from PREROUTING"},
		{name: "DNAT outside nat", rules: mangle("-A PREROUTING -j DNAT --to-destination " + ep1), p: p, err: "DNAT in mangle"},
		{name: "MASQUERADE outside POSTROUTING", rules: nat("-A PREROUTING -j MASQUERADE"), p: p, err: "MASQUERADE in nat PREROUTING"},
		{name: "DNAT of the other family", rules: nat("-A PREROUTING -j DNAT --to-destination [fd00::1]:80"), p: p, err: "--to-destination"},
		{name: "address of the other family", rules: filter("-A FORWARD -d fd00::/8 -j DROP"), p: p, err: "not an IPv4 address"},
		{name: "ctstate unknown", rules: filter("-A FORWARD -m conntrack --ctstate FOO -j DROP"), p: p, err: "--ctstate FOO"},
		{name: "addrtype other than LOCAL", rules: filter("-A FORWARD -m addrtype --dst-type UNICAST -j DROP"), p: p, err: "LOCAL only"},
		{name: "statistic nth", rules: filter("-A FORWARD -m statistic --mode nth --every 2 -j DROP"), p: p, err: "--mode nth"},
		{name: "negated statistic", rules: filter("-A FORWARD -m statistic --mode random ! --probability 0.5 -j DROP"), p: p, err: "! before --probability"},
		{name: "trailing !", rules: filter("-A FORWARD -j DROP !"), p: p, err: `target options ["!"] of DROP`},
		{name: "packet of the other family", rules: filter(), p: pkt("fd00::1", "[fd00::2]:80", "eth0"), err: "not IPv4"},
	})
}
