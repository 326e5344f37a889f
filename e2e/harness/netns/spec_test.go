package netns

import (
	"net/netip"
	"os"
	"strings"
	"testing"
)

func TestDefaultSpecValidates(t *testing.T) {
	topo := New(DefaultSpec(""))
	if err := topo.Spec().Validate(); err != nil {
		t.Fatal(err)
	}
	if !prefixPattern.MatchString(topo.Prefix()) {
		t.Fatalf("random prefix %q", topo.Prefix())
	}
	if got := len(topo.Namespaces()); got != 9 {
		t.Errorf("%d namespaces, want 9", got)
	}
	for _, n := range topo.Namespaces() {
		if p, ok := IsHarnessName(n); !ok || p != topo.Prefix() {
			t.Errorf("IsHarnessName(%q) = %q, %v", n, p, ok)
		}
	}
}

func TestValidateRejects(t *testing.T) {
	cases := map[string]func(*Spec){
		"bad prefix":       func(s *Spec) { s.Prefix = "xx" },
		"duplicate name":   func(s *Spec) { s.Client.Name = NodeA },
		"long name":        func(s *Spec) { s.Nodes[0].Name = "a-very-long-node-name" },
		"pod outside cidr": func(s *Spec) { s.Nodes[0].Pods[0].IPv4 = netip.MustParseAddr("10.1.1.1") },
		"unknown api node": func(s *Spec) { s.API.Node = "node-z" },
	}
	for name, mutate := range cases {
		s := DefaultSpec("pc000001")
		mutate(&s)
		if err := s.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestAccessors(t *testing.T) {
	topo := New(DefaultSpec("pcabcdef"))
	checks := map[string]string{
		topo.NodeIP(NodeA, IPv4).String():                    "192.168.50.10",
		topo.NodeIP("pcabcdef-node-b", IPv6).String():        "fd00:50::11",
		topo.PodIP(PodB2, IPv4).String():                     "10.244.2.11",
		topo.PodIP(PodA1, IPv6).String():                     "fd00:244:1::10",
		topo.APIServerIP().String():                          "10.0.255.1",
		topo.Path(NodeA):                                     "/var/run/netns/pcabcdef-node-a",
		topo.PodNode(PodB1):                                  NodeB,
		strings.Join(addrStrings(topo.ClientIPs(IPv4)), ","): "192.168.50.100,192.168.50.101,192.168.60.71",
		strings.Join(addrStrings(topo.Addrs(PodA2)), ","):    "10.244.1.11,fd00:244:1::11",
	}
	for got, want := range checks {
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
	if topo.NS(NodeA).IsOpen() {
		t.Error("NS open before Create")
	}
}

func addrStrings(as []netip.Addr) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.String())
	}
	return out
}

func TestOwnerRecord(t *testing.T) {
	rec, err := OwnerRecord()
	if err != nil {
		t.Fatal(err)
	}
	if !OwnerAlive(rec) {
		t.Errorf("own record %q not alive", rec)
	}
	parts := strings.Fields(rec)
	if OwnerAlive(parts[0] + " 1") {
		t.Error("record with a wrong start time counted as alive")
	}
	if OwnerAlive("garbage") {
		t.Error("malformed record counted as alive")
	}
	if _, err := processStart(os.Getpid()); err != nil {
		t.Error(err)
	}
}
