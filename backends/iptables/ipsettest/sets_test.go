package ipsettest

import (
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/portico-dev/portico/model"
)

// lines joins input lines.
func lines(l ...string) string { return strings.Join(l, "\n") + "\n" }

// mustRestore applies input and fails the test on error.
func mustRestore(t *testing.T, s *Sets, input string) {
	t.Helper()
	if err := s.Restore(input); err != nil {
		t.Fatalf("restore: %v", err)
	}
}

// TestRestoreAndSave checks the commands, -exist semantics, normalisation and Save.
func TestRestoreAndSave(t *testing.T) {
	var s Sets
	mustRestore(t, &s, lines("# the backend's sets", "",
		"create b hash:ip,port family inet hashsize 1000 maxelem 100",
		"create a hash:ip", "add a 10.96.0.2", "add a 10.96.0.1", "add a 10.96.0.1",
		"add b 10.96.0.1,TCP:80", "add b 10.96.0.1,udp:53", "add b 10.96.0.9,53", "del b 10.96.0.9,tcp:53", "del b 10.96.0.7,tcp:1",
		"create c hash:ip,port,ip family inet", "add c 10.244.1.10,tcp:8080,10.244.1.10",
		"create d hash:ip,port,net family inet", "add d 192.168.60.20,tcp:80,192.168.50.7/24", "add d 192.168.60.20,sctp:80,192.168.50.8/32",
		"create e hash:ip,port family inet6 timeout 30", "add e FD00:96::1,tcp:80",
		"create b hash:ip,port family inet6 hashsize 64 maxelem 100", // same type, maxelem, timeout: kept as is
		"create x hash:ip", "add x 1.1.1.1", "destroy x", "create y hash:ip", "add y 2.2.2.2", "flush y"))
	want := lines(
		"create a hash:ip family inet hashsize 1024 maxelem 65536", "add a 10.96.0.1", "add a 10.96.0.2",
		"create b hash:ip,port family inet hashsize 1024 maxelem 100", "add b 10.96.0.1,tcp:80", "add b 10.96.0.1,udp:53",
		"create c hash:ip,port,ip family inet hashsize 1024 maxelem 65536", "add c 10.244.1.10,tcp:8080,10.244.1.10",
		"create d hash:ip,port,net family inet hashsize 1024 maxelem 65536",
		"add d 192.168.60.20,sctp:80,192.168.50.8", "add d 192.168.60.20,tcp:80,192.168.50.0/24",
		"create e hash:ip,port family inet6 hashsize 1024 maxelem 65536 timeout 30", "add e fd00:96::1,tcp:80",
		"create y hash:ip family inet hashsize 1024 maxelem 65536")
	if got := s.Save(); got != want {
		t.Errorf("Save:\n%s\nwant:\n%s", got, want)
	}
	if got := s.Names(); !slices.Equal(got, []string{"a", "b", "c", "d", "e", "y"}) {
		t.Errorf("Names = %q", got)
	}
	if got, ok := s.Entries("b"); !ok || !slices.Equal(got, []string{"10.96.0.1,tcp:80", "10.96.0.1,udp:53"}) {
		t.Errorf("Entries(b) = %q, %t", got, ok)
	}
	if _, ok := s.Entries("x"); ok {
		t.Errorf("destroyed set x still exists")
	}
}

// TestSwapFlushDestroyAll checks swap and the forms without a set name.
func TestSwapFlushDestroyAll(t *testing.T) {
	var s Sets
	mustRestore(t, &s, lines("create a hash:ip", "create a-new hash:ip", "add a 1.1.1.1", "add a-new 2.2.2.2", "swap a-new a", "destroy a-new"))
	if got, _ := s.Entries("a"); !slices.Equal(got, []string{"2.2.2.2"}) {
		t.Errorf("after swap a holds %q, want 2.2.2.2", got)
	}
	mustRestore(t, &s, lines("create b hash:ip", "add b 3.3.3.3", "flush"))
	if got := s.Save(); got != lines("create a hash:ip family inet hashsize 1024 maxelem 65536", "create b hash:ip family inet hashsize 1024 maxelem 65536") {
		t.Errorf("after flush:\n%s", got)
	}
	mustRestore(t, &s, "destroy\n")
	if got := s.Names(); len(got) != 0 {
		t.Errorf("after destroy: %q", got)
	}
}

// TestRestoreErrors checks each failure: the reason, the line number and text, and what
// stays applied (as ipset v7.17 does): the lines before the failing one, except the run
// of adds to one set just before it when the line fails to parse; nothing after it.
func TestRestoreErrors(t *testing.T) {
	cases := []struct {
		name, bad string
		want      error
		kernel    bool // refused by the kernel: the pending run of adds was applied
	}{
		{"unknown command", "bogus a", ErrSyntax, false},
		{"add to a missing set", "add nope 1.1.1.1", ErrNoSet, false},
		{"del from a missing set", "del nope 1.1.1.1", ErrNoSet, false},
		{"flush a missing set", "flush nope", ErrNoSet, true},
		{"destroy a missing set", "destroy nope", ErrNoSet, true},
		{"swap with a missing set", "swap base nope", ErrNoSet, true},
		{"swap of other types", "swap base ports", ErrSwap, true},
		{"swap of other families", "swap base six", ErrSwap, true},
		{"create with another type", "create base hash:ip,port", ErrSetExists, true},
		{"create with another maxelem", "create base hash:ip maxelem 10", ErrSetExists, true},
		{"create with a timeout", "create base hash:ip timeout 5", ErrSetExists, true},
		{"unknown set type", "create n hash:net,net", ErrUnsupported, false},
		{"unknown create option", "create n hash:ip counters", ErrSyntax, false},
		{"unsupported create option", "create n hash:ip bucketsize 12", ErrUnsupported, false},
		{"bad family", "create n hash:ip family ipx", ErrSyntax, false},
		{"IPv6 in an inet set", "add base fd00::1", ErrFamily, false},
		{"IPv4 in an inet6 set", "add six 10.0.0.1", ErrFamily, false},
		{"bad address", "add base 10.0.0.300", ErrSyntax, false},
		{"zone", "add six fe80::1%eth0", ErrSyntax, false},
		{"CIDR in hash:ip", "add base 10.0.0.0/30", ErrUnsupported, false},
		{"missing port", "add ports 10.0.0.1", ErrSyntax, false},
		{"too many components", "add ports 10.0.0.1,tcp:5,10.0.0.1", ErrSyntax, false},
		{"port out of range", "add ports 10.0.0.1,tcp:70000", ErrSyntax, false},
		{"port with a leading zero", "add ports 10.0.0.1,tcp:080", ErrSyntax, false},
		{"port range", "add ports 10.0.0.1,tcp:5-7", ErrUnsupported, false},
		{"icmp", "add ports 10.0.0.1,icmp:8", ErrUnsupported, false},
		{"CIDR as a plain IP", "add ipi 10.0.0.1,tcp:5,10.0.0.0/24", ErrSyntax, false},
		{"prefix 0", "add net 10.0.0.1,tcp:5,0.0.0.0/0", ErrSyntax, false},
		{"entry timeout", "add base 10.0.0.1 timeout 5", ErrUnsupported, false},
		{"full", "add small 10.0.0.2", ErrFull, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var s Sets
			mustRestore(t, &s, lines("create base hash:ip", "create ports hash:ip,port", "create six hash:ip family inet6",
				"create ipi hash:ip,port,ip", "create net hash:ip,port,net", "create small hash:ip maxelem 1", "add small 10.0.0.1"))
			err := s.Restore(lines("add base 9.9.9.9", "create other hash:ip", "add base 7.7.7.7", "# comment",
				"add base 6.6.6.6", "  "+tc.bad, "add base 8.8.8.8"))
			var re *RestoreError
			if !errors.As(err, &re) || !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want a *RestoreError wrapping %v", err, tc.want)
			}
			if re.Line != 6 || re.Text != "  "+tc.bad || !strings.Contains(err.Error(), "Error in line 6: ") ||
				!strings.Contains(err.Error(), strconv.Quote(re.Text)) {
				t.Errorf("error %q (line %d, text %q) does not name line 6 and its text", err, re.Line, re.Text)
			}
			want := []string{"9.9.9.9"}
			if tc.kernel {
				want = []string{"6.6.6.6", "7.7.7.7", "9.9.9.9"}
			}
			if got, _ := s.Entries("base"); !slices.Equal(got, want) {
				t.Errorf("base holds %q, want %q", got, want)
			}
		})
	}
}

// TestMatch checks the lookups of -m set for every type and flag combination.
func TestMatch(t *testing.T) {
	var s Sets
	mustRestore(t, &s, lines("create ips hash:ip", "add ips 10.96.0.1",
		"create ports hash:ip,port", "add ports 10.96.0.1,tcp:80",
		"create hairpin hash:ip,port,ip", "add hairpin 10.244.1.10,tcp:8080,10.244.1.10",
		"create fw hash:ip,port,net", "add fw 192.168.60.20,tcp:80,192.168.50.0/24",
		"create six hash:ip,port family inet6", "add six fd00:96::1,udp:53"))
	pkt := func(src, dst string, port uint16, p model.Protocol) PacketFields {
		return PacketFields{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), DstPort: port, Proto: p}
	}
	cases := []struct {
		set, flags string
		p          PacketFields
		want       bool
	}{
		{"ips", "dst", pkt("1.1.1.1", "10.96.0.1", 1, model.TCP), true},
		{"ips", "src", pkt("1.1.1.1", "10.96.0.1", 1, model.TCP), false},
		{"ips", "src", pkt("10.96.0.1", "1.1.1.1", 1, model.UDP), true},
		{"ports", "dst,dst", pkt("1.1.1.1", "10.96.0.1", 80, model.TCP), true},
		{"ports", "dst,dst", pkt("1.1.1.1", "10.96.0.1", 80, model.UDP), false},
		{"ports", "dst,dst", pkt("1.1.1.1", "10.96.0.1", 81, model.TCP), false},
		{"ports", "src,dst", pkt("10.96.0.1", "9.9.9.9", 80, model.TCP), true},
		{"hairpin", "dst,dst,src", pkt("10.244.1.10", "10.244.1.10", 8080, model.TCP), true},
		{"hairpin", "dst,dst,src", pkt("10.244.1.11", "10.244.1.10", 8080, model.TCP), false},
		{"fw", "dst,dst,src", pkt("192.168.50.200", "192.168.60.20", 80, model.TCP), true},
		{"fw", "dst,dst,src", pkt("192.168.51.1", "192.168.60.20", 80, model.TCP), false},
		{"fw", "dst,dst,dst", pkt("192.168.50.200", "192.168.60.20", 80, model.TCP), false},
		{"six", "dst,dst", pkt("fd00::5", "fd00:96::1", 53, model.UDP), true},
	}
	for _, tc := range cases {
		got, err := s.Match(tc.set, strings.Split(tc.flags, ","), tc.p)
		if err != nil || got != tc.want {
			t.Errorf("Match(%s %s, %+v) = %t, %v; want %t", tc.set, tc.flags, tc.p, got, err, tc.want)
		}
	}
}

// TestMatchErrors checks the lookups Match refuses.
func TestMatchErrors(t *testing.T) {
	var s Sets
	mustRestore(t, &s, lines("create ports hash:ip,port", "create six hash:ip family inet6"))
	p := PacketFields{Src: netip.MustParseAddr("1.1.1.1"), Dst: netip.MustParseAddr("2.2.2.2"), DstPort: 80, Proto: model.TCP}
	for _, tc := range []struct{ set, flags, want string }{
		{"nope", "dst", "does not exist"},
		{"ports", "dst", "want 2"},
		{"ports", "dst,src", "source port"},
		{"ports", "dst,both", "want src or dst"},
		{"six", "dst", "family inet6"},
	} {
		if _, err := s.Match(tc.set, strings.Split(tc.flags, ","), p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Match(%s %s) err = %v, want one containing %q", tc.set, tc.flags, err, tc.want)
		}
	}
}
