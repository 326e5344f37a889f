package iptrace

import (
	"testing"

	"github.com/portico-dev/portico/model"
)

// dnatIf is a nat table that DNATs to ep1 the packets matching spec.
func dnatIf(spec string) string {
	return nat("-A PREROUTING " + spec + " -j DNAT --to-destination " + ep1)
}

// TestMatches checks each match against a packet that matches and one that does not.
func TestMatches(t *testing.T) {
	hit, miss := dnat(false, ep1), accept
	runCases(t, []traceCase{
		{name: "prefix", rules: dnatIf("-d 10.96.0.0/16"), p: pkt(client, svc, "eth0"), want: hit},
		{name: "prefix, other net", rules: dnatIf("-d 10.97.0.0/16"), p: pkt(client, svc, "eth0"), want: miss},
		{name: "host", rules: dnatIf("-d 10.96.0.21/32"), p: pkt(client, svc, "eth0"), want: hit},
		{name: "no mask is a host", rules: dnatIf("-s 192.168.50.1"), p: pkt(client, svc, "eth0"), want: hit},
		{name: "non-contiguous mask", rules: dnatIf("-d 0.0.0.5/0.0.0.15"), p: pkt(client, "10.96.0.21:80", "eth0"), want: hit},
		{name: "non-contiguous mask, other low bits", rules: dnatIf("-d 0.0.0.5/0.0.0.15"), p: pkt(client, "10.96.0.22:80", "eth0"), want: miss},
		{name: "non-contiguous mask, second level", rules: dnatIf("-d 0.0.0.21/0.0.0.255"), p: pkt(client, "10.96.1.21:80", "eth0"), want: hit},
		{name: "IPv6 non-contiguous mask", fam: model.IPv6, rules: nat("-A PREROUTING -d ::5/::f -j DNAT --to-destination [fd00:244::10]:8080"),
			p: pkt("fd00:50::1", "[fd00:96::15]:80", "eth0"), want: dnat(false, "[fd00:244::10]:8080")},
		{name: "IPv6 non-contiguous mask, miss", fam: model.IPv6, rules: nat("-A PREROUTING -d ::5/::f -j DNAT --to-destination [fd00:244::10]:8080"),
			p: pkt("fd00:50::1", "[fd00:96::16]:80", "eth0"), want: miss},
		{name: "negated address", rules: dnatIf("! -d 127.0.0.0/8"), p: pkt(client, svc, "eth0"), want: hit},
		{name: "negated address, miss", rules: dnatIf("! -s 192.168.50.0/24"), p: pkt(client, svc, "eth0"), want: miss},
		{name: "interface", rules: dnatIf("-i cni0"), p: pkt(client, svc, "cni0"), want: hit},
		{name: "interface, other", rules: dnatIf("-i cni0"), p: pkt(client, svc, "eth0"), want: miss},
		{name: "interface wildcard", rules: dnatIf("-i veth+"), p: pkt(client, svc, "veth12ab"), want: hit},
		{name: "interface wildcard, miss", rules: dnatIf("-i veth+"), p: pkt(client, svc, "eth0"), want: miss},
		{name: "negated interface", rules: dnatIf("! -i eth0"), p: pkt(client, svc, "eth1"), want: hit},
		{name: "protocol and port", rules: dnatIf("-p tcp -m tcp --dport 80"), p: pkt(client, svc, "eth0"), want: hit},
		{name: "other port", rules: dnatIf("-p tcp -m tcp --dport 81"), p: pkt(client, svc, "eth0"), want: miss},
		{name: "other protocol", rules: dnatIf("-p udp -m udp --dport 80"), p: pkt(client, svc, "eth0"), want: miss},
		{name: "port range", rules: dnatIf("-p tcp -m tcp --dport 30000:30099"), p: pkt(client, "192.168.50.10:30099", "eth0"), want: hit},
		{name: "port range, miss", rules: dnatIf("-p tcp -m tcp --dport 30000:30099"), p: pkt(client, "192.168.50.10:30100", "eth0"), want: miss},
		{name: "negated port", rules: dnatIf("-p tcp -m tcp ! --dport 81"), p: pkt(client, svc, "eth0"), want: hit},
		{name: "comment", rules: dnatIf(`-p tcp -m comment --comment "ns/web:http \"quoted\"" -m tcp --dport 80`), p: pkt(client, svc, "eth0"), want: hit},
		{name: "local destination", rules: dnatIf("-m addrtype --dst-type LOCAL"), p: pkt(client, "192.168.50.10:30001", "eth0"), want: hit},
		{name: "loopback is local", rules: nat("-A OUTPUT -m addrtype --dst-type LOCAL -j DNAT --to-destination " + ep1), p: pkt("127.0.0.1", "127.0.0.1:30001", ""), want: hit},
		{name: "remote destination", rules: dnatIf("-m addrtype --dst-type LOCAL"), p: pkt(client, svc, "eth0"), want: miss},
		{name: "local source", rules: nat("-A OUTPUT -m addrtype --src-type LOCAL -j DNAT --to-destination " + ep1), p: pkt("192.168.50.10", svc, ""), want: hit},
		{name: "negated local source", rules: dnatIf("-m addrtype ! --src-type LOCAL"), p: pkt(client, svc, "eth0"), want: hit},
		{name: "ctstate NEW", rules: dnatIf("-m conntrack --ctstate NEW"), p: pkt(client, svc, "eth0"), want: hit},
		{name: "ctstate ESTABLISHED", rules: dnatIf("-m conntrack --ctstate RELATED,ESTABLISHED"), p: pkt(client, svc, "eth0"), want: miss},
		{name: "ctstate DNAT after DNAT", p: pkt(client, svc, "eth0"), want: drop,
			rules: nat("-A PREROUTING -j DNAT --to-destination "+ep1) + filter("-A FORWARD -m conntrack --ctstate DNAT -j DROP")},
		{name: "ctstate DNAT without DNAT", p: pkt(client, svc, "eth0"), want: accept,
			rules: filter("-A FORWARD -m conntrack --ctstate DNAT -j DROP")},
		{name: "mark", p: pkt(client, svc, "eth0"), want: hit,
			rules: mangle("-A PREROUTING -j MARK --set-xmark 0x4001/0xffffffff") + dnatIf("-m mark --mark 0x4000/0x4000")},
		{name: "mark, cleared bit", p: pkt(client, svc, "eth0"), want: miss,
			rules: mangle("-A PREROUTING -j MARK --set-xmark 0x4001/0xffffffff", "-A PREROUTING -j MARK --set-xmark 0x0/0x4000") + dnatIf("-m mark --mark 0x4000/0x4000")},
		{name: "xmark toggles", p: pkt(client, svc, "eth0"), want: hit,
			rules: mangle("-A PREROUTING -j MARK --set-xmark 0x5/0x0", "-A PREROUTING -j MARK --set-xmark 0x1/0x0") + dnatIf("-m mark --mark 0x4")},
		{name: "negated mark", p: pkt(client, svc, "eth0"), want: hit, rules: dnatIf("-m mark ! --mark 0x4000/0x4000")},
	})
}

// TestSets checks -m set with each flag combination the backend uses.
func TestSets(t *testing.T) {
	sets := lines("create ips hash:ip", "add ips 10.96.0.21",
		"create ports hash:ip,port", "add ports 10.96.0.21,tcp:80",
		"create fw hash:ip,port,net", "add fw 10.96.0.21,tcp:80,192.168.50.0/28",
		"create hairpin hash:ip,port,ip", "add hairpin 10.244.1.10,tcp:8080,10.244.1.10")
	firewall := mangle("-A PREROUTING -m set --match-set ports dst,dst -m set ! --match-set fw dst,dst,src -j DROP")
	hairpin := nat("-A PREROUTING -j DNAT --to-destination "+ep1,
		"-A POSTROUTING -m conntrack --ctstate DNAT -m set --match-set hairpin dst,dst,src -j MASQUERADE --random-fully")
	runCases(t, []traceCase{
		{name: "dst", rules: filter("-A FORWARD -m set --match-set ips dst -j DROP"), sets: sets, p: pkt(client, svc, "eth0"), want: drop},
		{name: "src", rules: filter("-A FORWARD -m set --match-set ips src -j DROP"), sets: sets, p: pkt(client, svc, "eth0"), want: accept},
		{name: "firewall allows a source in the range", rules: firewall, sets: sets, p: pkt("192.168.50.15", svc, "eth0"), want: accept},
		{name: "firewall drops a source outside", rules: firewall, sets: sets, p: pkt("192.168.50.16", svc, "eth0"), want: drop},
		{name: "firewall ignores other ports", rules: firewall, sets: sets, p: pkt("192.168.50.16", "10.96.0.21:81", "eth0"), want: accept},
		{name: "hairpin masquerades the endpoint itself", rules: hairpin, sets: sets, p: pkt("10.244.1.10", svc, "cni0"), want: dnat(false, ep1+"!")},
		{name: "hairpin leaves other clients", rules: hairpin, sets: sets, p: pkt("10.244.1.11", svc, "cni0"), want: dnat(false, ep1)},
		{name: "missing set", rules: filter("-A FORWARD -m set --match-set nope dst -j DROP"), sets: sets, p: pkt(client, svc, "eth0"), err: "nope"},
		{name: "wrong flag count", rules: filter("-A FORWARD -m set --match-set ports dst -j DROP"), sets: sets, p: pkt(client, svc, "eth0"), err: "want 2"},
	})
}
