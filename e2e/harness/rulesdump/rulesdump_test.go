package rulesdump

import (
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
)

// removalDump is `portico dump --no-conntrack` of an iptables-mode node with Services
// removal/deleted, removal/renamed and default/kubernetes.
func removalDump(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("testdata/removal.dump")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestServiceChains(t *testing.T) {
	dump := removalDump(t)
	for mark, want := range map[string][]string{
		"removal/deleted:":    {"PORTICO-C-3K7MCWKFIV6AUTGJ"},
		"removal/renamed:":    {"PORTICO-C-F565WL2BSNBOYEDI"},
		"default/kubernetes:": {"PORTICO-C-GM33CFLSPGVRT3MS"},
		"removal/other:":      nil,
	} {
		got := slices.Sorted(maps.Keys(ServiceChains(dump, mark)))
		if !slices.Equal(got, want) {
			t.Errorf("ServiceChains(%q) = %v, want %v", mark, got, want)
		}
	}
}

func TestTreePath(t *testing.T) {
	dump := removalDump(t)
	for mark, want := range map[string][]string{
		"default/kubernetes:": {"PORTICO-A-1", "PORTICO-A-1-0"},
		"removal/deleted:":    {"PORTICO-A-2", "PORTICO-A-2-D"},
		// The per-port chains carry the comment too, but are not in the tree.
		"removal/renamed:": {"PORTICO-A-7", "PORTICO-A-7-7"},
		"removal/other:":   nil,
	} {
		got := TreePath(dump, mark)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("TreePath(%q) = %v, want %v", mark, got, want)
		}
	}
}

func TestAddrPattern(t *testing.T) {
	for _, tc := range []struct {
		ip, line string
		want     bool
	}{
		{"10.96.0.1", "add PORTICO-4-CLUSTER-IPS 10.96.0.1", true},
		{"10.96.0.1", "add PORTICO-4-EMPTY-REJECT 10.96.0.1,tcp:443", true},
		{"10.96.0.1", "-A PORTICO-A-1-0 -d 10.96.0.1/32 -p tcp", true},
		{"10.96.0.1", "10.96.0.1 . tcp . 443 : goto", true},
		{"10.96.0.1", "--to-destination 10.96.0.1:443", true},
		{"10.96.0.1", "add PORTICO-4-CLUSTER-IPS 10.96.0.10", false},
		{"10.96.0.1", "add PORTICO-4-CLUSTER-IPS 110.96.0.1", false},
		{"10.96.0.1", "add PORTICO-4-CLUSTER-IPS 10.96.0.1.5", false},
		{"fd00:96::1", "add PORTICO-6-CLUSTER-IPS fd00:96::1", true},
		{"fd00:96::1", "-d fd00:96::1/128", true},
		{"fd00:96::1", "add PORTICO-6-CLUSTER-IPS fd00:96::10", false},
	} {
		if got := AddrPattern(tc.ip).MatchString(tc.line); got != tc.want {
			t.Errorf("AddrPattern(%q) on %q = %v, want %v", tc.ip, tc.line, got, tc.want)
		}
	}
}

func TestMentionsAny(t *testing.T) {
	chains := map[string]bool{"PORTICO-A-1": true}
	for line, want := range map[string]bool{
		":PORTICO-A-1 - [0:0]":                                           true,
		"-A PORTICO-A-1 -d 0.0.0.1/0.0.0.255 -j PORTICO-A-1-0":           true,
		"-A PORTICO-SERVICES -d 0.0.0.1/0.0.0.15 -j PORTICO-A-1":         true,
		":PORTICO-A-1-0 - [0:0]":                                         false,
		"-A PORTICO-A-1-0 -d 10.96.0.1/32 -j PORTICO-C-GM33CFLSPGVRT3MS": false,
	} {
		if got := MentionsAny(line, chains); got != want {
			t.Errorf("MentionsAny(%q) = %v, want %v", line, got, want)
		}
	}
}

func TestEmptyTables(t *testing.T) {
	save, err := os.ReadFile("testdata/host.save")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]", "COMMIT",
		"*filter", ":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]", "COMMIT",
		"*mangle", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]", "COMMIT",
	}, "\n") + "\n"
	if got := EmptyTables(string(save)); got != want {
		t.Errorf("EmptyTables:\n%s\nwant:\n%s", got, want)
	}
}
