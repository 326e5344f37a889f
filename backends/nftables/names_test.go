package nftables

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/portico-dev/portico/model"
)

// Names at the API's limits: a namespace and a Service name of 63 characters (DNS-1123
// and DNS-1035 labels) and a port name of 15 (IANA_SVC_NAME).
var (
	longNS   = "ns-" + strings.Repeat("n", 59) + "9"
	longName = "svc-" + strings.Repeat("s", 58) + "9"
	longPort = "port-" + strings.Repeat("p", 9) + "9"
)

func TestAPILimitNames(t *testing.T) {
	for what, errs := range map[string][]string{
		"namespace": validation.IsDNS1123Label(longNS),
		"name":      validation.IsDNS1035Label(longName),
		"port name": validation.IsValidPortName(longPort),
	} {
		if len(errs) > 0 {
			t.Errorf("the test's %s is not valid in the API: %v", what, errs)
		}
	}
	if len(longNS) != 63 || len(longName) != 63 || len(longPort) != 15 {
		t.Fatalf("lengths %d, %d, %d; want 63, 63, 15", len(longNS), len(longName), len(longPort))
	}
}

// everyPrefix lists the prefixes of per-port chain names.
var everyPrefix = []string{prefixCluster, prefixLocal, prefixService, prefixExternal}

func TestPrefixClusterIsTheLongest(t *testing.T) {
	for _, p := range everyPrefix {
		if len(p) > len(prefixCluster) {
			t.Errorf("prefix %q is longer than %q, which maxSuffixLen assumes is the longest", p, prefixCluster)
		}
	}
}

// At the API's limits a port suffix is kept as it is: every chain name built from it is
// an nft identifier of at most 255 bytes.
func TestPortSuffixAtAPILimits(t *testing.T) {
	for _, p := range []model.Protocol{model.TCP, model.UDP, model.SCTP} {
		for _, port := range []string{longPort, ""} {
			n := spn(longNS, longName, port, p)
			want := longNS + "/" + longName + "/" + proto(p)
			if port != "" {
				want += "/" + port
			}
			got := portSuffix(n)
			if got != want {
				t.Errorf("portSuffix(%s) = %q, want it unchanged: %q", n, got, want)
			}
			for _, prefix := range everyPrefix {
				if err := checkName(prefix + got); err != nil {
					t.Errorf("chain name of %s: %v", n, err)
				}
			}
		}
	}
}

// Suffixes beyond the limits, or with bytes that no API name holds, are shortened to
// identifiers that fit, stably and distinctly.
func TestPortSuffixShortened(t *testing.T) {
	long := strings.Repeat("a", 300)
	cases := []model.ServicePortName{
		spn(long, "web", "http", model.TCP),
		spn(long, "web", "dns", model.TCP),
		spn("default", long, "", model.UDP),
		spn(`a"b`, "web", "", model.TCP),
		spn("a;flush ruleset;", "web", "", model.TCP),
		spn("default", "wéb", "", model.TCP),
		spn("default", "web\nadd", "", model.TCP),
		spn("Default", "web", "", model.TCP),
		spn("default", "web", "http", model.Protocol(9)),
		spn("default", "web_x", "", model.TCP),
	}
	seen := map[string]model.ServicePortName{}
	for _, n := range cases {
		got := portSuffix(n)
		if got != portSuffix(n) {
			t.Errorf("portSuffix(%q) is not stable", n)
		}
		if len(got) > maxSuffixLen || !strings.Contains(got, "_") {
			t.Errorf("portSuffix(%q) = %q (%d bytes), want it shortened to at most %d with a hash", n, got, len(got), maxSuffixLen)
		}
		if err := checkName(prefixCluster + got); err != nil {
			t.Errorf("portSuffix(%q): %v", n, err)
		}
		if other, dup := seen[got]; dup {
			t.Errorf("%q and %q have the same suffix %q", n, other, got)
		}
		seen[got] = n
	}
}

// A port's comment fits nft's 128 bytes: unchanged when it does already, else shortened,
// stably and distinctly (ports that differ only in their port name or protocol keep
// different comments).
func TestPortComment(t *testing.T) {
	short := spn("default", "web", "http", model.TCP)
	if got := portComment(short); got != short.String() {
		t.Errorf("portComment(%s) = %q, want it unchanged", short, got)
	}
	seen := map[string]model.ServicePortName{}
	for _, p := range []model.Protocol{model.TCP, model.UDP, model.SCTP} {
		for _, port := range []string{longPort, "port-ppppppppp8", ""} {
			n := spn(longNS, longName, port, p)
			got := portComment(n)
			if err := checkComment(got); err != nil {
				t.Errorf("portComment(%s): %v", n, err)
			}
			if !strings.HasPrefix(got, longNS+"/") {
				t.Errorf("portComment(%s) = %q, want it to start with the namespace", n, got)
			}
			if got != portComment(n) {
				t.Errorf("portComment(%s) is not stable", n)
			}
			if other, dup := seen[got]; dup {
				t.Errorf("%s and %s have the same comment %q", n, other, got)
			}
			seen[got] = n
		}
	}
}

// Bytes that would break the quoted comment, or that Go's %q would rewrite, never reach
// it: whatever a ServicePortName holds, the comment is printable ASCII without '"' or '\'.
func TestCommentsEscaped(t *testing.T) {
	ep := model.Endpoint{Addr: netip.MustParseAddr("fd00::1"), Port: 8080}
	for _, n := range []model.ServicePortName{
		spn(`quo"te`, "web", "", model.TCP),
		spn("new\nline", "web", "", model.TCP),
		spn("back\\slash", "web", "", model.TCP),
		spn("ünïcödé", "wéb", "ポート", model.TCP),
		spn("nul\x00", "tab\t", "", model.TCP),
		spn(strings.Repeat(`"`, 200), "web", "", model.TCP),
	} {
		for what, c := range map[string]string{"port": portComment(n), "affinity": affinityComment(n, ep)} {
			if err := checkComment(c); err != nil {
				t.Errorf("%s comment of %q: %v", what, n, err)
			}
		}
	}
}

// An affinity set's comment keeps the endpoint whole and shortens the port's name.
func TestAffinityComment(t *testing.T) {
	ep := model.Endpoint{Addr: netip.MustParseAddr("fd00:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), Port: 65535}
	n := spn(longNS, longName, longPort, model.SCTP)
	got := affinityComment(n, ep)
	if err := checkComment(got); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(got, " -> "+ep.String()) {
		t.Errorf("affinityComment = %q, want it to end with the endpoint %s", got, ep)
	}
	short := spn("default", "web", "", model.TCP)
	if got, want := affinityComment(short, ep), short.String()+" -> "+ep.String(); got != want {
		t.Errorf("affinityComment = %q, want %q", got, want)
	}
	if a, b := affinitySetName("c", ep, time.Hour), affinitySetName("c", ep, time.Minute); a == b || checkName(a) != nil {
		t.Errorf("affinity set names %q, %q: want distinct identifiers", a, b)
	}
}

func TestCheckNameAndComment(t *testing.T) {
	for _, bad := range []string{"", "1abc", "a b", `a"b`, "a;b", "a\nb", "ab{", strings.Repeat("a", maxNameLen+1)} {
		if checkName(bad) == nil {
			t.Errorf("checkName(%q) accepted it", bad)
		}
	}
	for _, good := range []string{"cluster-default/web/tcp/http", "affinity-0123abcd", "a_b.c", strings.Repeat("a", maxNameLen)} {
		if err := checkName(good); err != nil {
			t.Errorf("checkName(%q): %v", good, err)
		}
	}
	for _, bad := range []string{`a"b`, "a\\b", "a\nb", "é", strings.Repeat("a", maxCommentLen+1)} {
		if checkComment(bad) == nil {
			t.Errorf("checkComment(%q) accepted it", bad)
		}
	}
	if err := checkComment(strings.Repeat("a", maxCommentLen)); err != nil {
		t.Error(err)
	}
}

func TestOutermost(t *testing.T) {
	pp := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	for _, tc := range []struct{ in, want []netip.Prefix }{
		{pp("10.0.0.0/8", "10.1.0.0/16", "10.1.2.3/32"), pp("10.0.0.0/8")},
		{pp("192.168.60.71/32", "192.168.60.0/24", "10.0.0.0/8"), pp("10.0.0.0/8", "192.168.60.0/24")},
		{pp("10.0.0.0/24", "10.0.1.0/24"), pp("10.0.0.0/24", "10.0.1.0/24")},
		{pp("10.1.2.3/8", "10.0.0.0/8"), pp("10.0.0.0/8")},
		{pp("fd00::/64", "fd00::5/128", "fd01::/64"), pp("fd00::/64", "fd01::/64")},
		{nil, nil},
	} {
		got := outermost(tc.in)
		if len(got) != len(tc.want) {
			t.Errorf("outermost(%v) = %v, want %v", tc.in, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("outermost(%v) = %v, want %v", tc.in, got, tc.want)
				break
			}
		}
	}
}
