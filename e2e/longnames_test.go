//go:build e2e

package e2e

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/portico-dev/portico/e2e/harness/rulesdump"
)

// Names at the API's limits: a 63-character namespace (DNS-1123 label) and Service name
// (DNS-1035 label), 15-character port names (IANA_SVC_NAME). Their port name
// "<namespace>/<name>:<port>/TCP" has 147 characters, more than the 128 nft takes in a
// comment.
var (
	longNamespace = "longnames-ns-" + strings.Repeat("n", 63-len("longnames-ns-"))
	longService   = "longnames-svc-" + strings.Repeat("s", 63-len("longnames-svc-"))
	longTCPPort   = "tcp-port-name15"
	longUDPPort   = "udp-port-name15"
)

// nftComment matches a comment in nft's listing.
var nftComment = regexp.MustCompile(`comment "([^"]*)"`)

// TestLongNames: a dual-stack NodePort Service with session affinity whose namespace,
// name and port names are at the API's limits gets rules and serves, TCP and UDP, over
// its ClusterIPs and NodePort; its rules carry comments that nft took (shortened to 128
// bytes). While it exists, other Services keep updating: a Service created after it is
// programmed and serves, a change of its endpoints and of the long-named Service's own
// reaches the kernel, and no sync fails or skips a port.
func TestLongNames(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	checkAPINames(t)
	errorsBefore := syncProblems(ctx, t)

	long := service(longService, nodePort(), dualStack(), affinity(600),
		ports(tcp(longTCPPort, 80), udp(longUDPPort, 53)))
	svcs := apply(ctx, t, Scenario{Name: longNamespace, Services: []ServiceSetup{{Svc: long, Backends: ready(a1, b1)}}})
	longFlows := func(step string, eps ...string) {
		t.Helper()
		for _, f := range []Flow{
			{Name: step + ": ClusterIP IPv4 TCP", From: client, To: longService, Expect: pods(eps...), Sticky: true},
			{Name: step + ": ClusterIP IPv6 TCP", From: client, To: longService, Family: "IPv6", Expect: pods(eps...), Sticky: true},
			{Name: step + ": NodePort IPv4 TCP", From: client, To: longService, Via: viaNodePort, Expect: pods(eps...), Sticky: true},
			{Name: step + ": ClusterIP IPv4 UDP", From: client, To: longService, Proto: "UDP", Expect: pods(eps...), Sticky: true},
		} {
			runFlow(ctx, t, svcs, f)
		}
	}
	longFlows("created", a1, b1)
	checkLongRules(ctx, t)

	// Another Service, created while the long-named one exists: programmed and served,
	// and so is a change of its endpoints.
	others := apply(ctx, t, Scenario{Name: "LongNamesOthers", Services: []ServiceSetup{{Svc: service("after"), Backends: ready(a2)}}})
	runFlow(ctx, t, others, Flow{Name: "a Service created after it", From: client, To: "after", Expect: pods(a2)})
	setBackends(ctx, t, others["after"], ready(b1))
	runFlow(ctx, t, others, Flow{Name: "its endpoints changed", From: client, To: "after", Expect: pods(b1)})

	// The long-named Service's own endpoints change (a partial sync of its port).
	setBackends(ctx, t, svcs[longService], ready(b2))
	longFlows("endpoints changed", b2)

	if after := syncProblems(ctx, t); after != errorsBefore {
		t.Errorf("sync errors and skipped Service ports went from %v to %v while the long-named Service existed", errorsBefore, after)
	}
	if t.Failed() {
		t.Logf("portico's log:\n%s", suite.Portico.LogTail(40))
	}
}

// checkAPINames fails the test if the names are not at the API's limits or not valid (the
// API server would refuse them anyway; this says why).
func checkAPINames(t *testing.T) {
	t.Helper()
	errs := append(validation.IsDNS1123Label(longNamespace), validation.IsDNS1035Label(longService)...)
	errs = append(errs, validation.IsValidPortName(longTCPPort)...)
	errs = append(errs, validation.IsValidPortName(longUDPPort)...)
	if len(errs) > 0 || len(longNamespace) != 63 || len(longService) != 63 || len(longTCPPort) != 15 || len(longUDPPort) != 15 {
		t.Fatalf("the names are not valid names at the API's limits: %v", errs)
	}
}

// problems counts what shows a Service breaking the sync: failed syncs and Service ports
// the backend skipped.
type problems struct {
	syncErrors, skippedPorts float64
}

func syncProblems(ctx context.Context, t *testing.T) problems {
	t.Helper()
	m, err := suite.Portico.Scrape(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return problems{
		syncErrors:   m["portico_sync_errors_total{backend="+mode()+"}"],
		skippedPorts: m["portico_invalid_objects_total{kind=serviceport}"],
	}
}

// checkLongRules checks portico's dump. nftables mode: the long-named Service has chains,
// its rules, elements and affinity sets have comments (shortened: its name is longer than
// nft allows), and every comment has at most 128 bytes. iptables mode:
// checkLongRulesIPTables.
func checkLongRules(ctx context.Context, t *testing.T) {
	t.Helper()
	switch mode() {
	case "iptables":
		checkLongRulesIPTables(t, dumpRules(ctx, t, "dumping the rules"))
		return
	case "nftables":
	default:
		t.Logf("mode %s: no reader for its dump; rules checked by traffic only", mode())
		return
	}
	dump, err := suite.Portico.Command(ctx, "dump", "--no-conntrack")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"tcp/" + longTCPPort, "udp/" + longUDPPort} {
		if chains := chainsNamed(dump, longNamespace+"/"+longService+"/"+p); len(chains) == 0 {
			t.Errorf("no chain of Service port %s/%s %s in the dump", longNamespace, longService, p)
		}
	}
	ours := 0
	for _, m := range nftComment.FindAllStringSubmatch(dump, -1) {
		if len(m[1]) > 128 {
			t.Errorf("comment of %d bytes in the kernel: %q", len(m[1]), m[1])
		}
		if strings.HasPrefix(m[1], longNamespace+"/") {
			ours++
		}
	}
	// Rules and map elements of both ports, both families; affinity sets of two endpoints.
	if ours < 2*2*3 {
		t.Errorf("%d comments name the long-named Service, want those of its rules, elements and affinity sets:\n%s", ours, matching(dump, longNamespace))
	}
}

// iptComment is a comment in iptables-save output.
var iptComment = regexp.MustCompile(`--comment "([^"]*)"`)

// checkLongRulesIPTables checks an iptables-mode dump: iptables takes comments of up to
// 255 bytes, so each port of the long-named Service carries its whole name, in both
// families, and leads to per-port chains; no comment is longer.
func checkLongRulesIPTables(t *testing.T, dump string) {
	t.Helper()
	for _, p := range []string{longTCPPort + "/TCP", longUDPPort + "/UDP"} {
		c := longNamespace + "/" + longService + ":" + p
		if n := strings.Count(dump, `--comment "`+c+`"`); n < 2 {
			t.Errorf("%d rules carry the comment %q, want its frontends in both families:\n%s", n, c, matching(dump, longNamespace))
		}
		if len(rulesdump.ServiceChains(dump, c)) == 0 {
			t.Errorf("no chain of Service port %s in the dump:\n%s", c, matching(dump, longNamespace))
		}
	}
	for _, m := range iptComment.FindAllStringSubmatch(dump, -1) {
		if len(m[1]) > 255 {
			t.Errorf("comment of %d bytes in the kernel: %q", len(m[1]), m[1])
		}
	}
}
