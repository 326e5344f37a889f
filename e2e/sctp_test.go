//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/portico-dev/portico/e2e/harness/env"
	"github.com/portico-dev/portico/e2e/harness/netns"
	"github.com/portico-dev/portico/e2e/harness/traffic"
)

// TestSCTP checks SCTP Services. Without SCTP sockets (no CONFIG_IP_SCTP) nothing can
// answer an SCTP connection, so the test checks what does not need them: portico
// programs the Service (its dump holds the ClusterIP with an sctp rule), and one raw
// SCTP INIT sent from the client to the ClusterIP is DNATed by node-a to the endpoint's
// IP and port (node-a's conntrack table shows it: conntrack and NAT handle SCTP even when
// the kernel has no SCTP sockets).
func TestSCTP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if ok, why := traffic.SCTPSupported(); !ok {
		msg := "SCTP SOCKETS ARE NOT SUPPORTED BY THIS KERNEL (" + why + "): no SCTP connection can be " +
			"made end to end; this test only checks the programmed rules and the DNAT of a raw SCTP INIT " +
			"packet in node-a's conntrack table"
		t.Log("WARNING: " + msg)
		fmt.Fprintln(os.Stderr, "e2e: WARNING: TestSCTP: "+msg)
	}
	sctp := corev1.ServicePort{Name: "sctp", Port: 7777, Protocol: corev1.ProtocolSCTP, TargetPort: intstr.FromInt32(env.ServerPort)}
	svcs := apply(ctx, t, Scenario{
		Name:     "SCTP",
		Services: []ServiceSetup{{Svc: service("assoc", ports(sctp)), Backends: ready(a1)}},
	})
	svc := svcs["assoc"]
	clusterIP := netip.MustParseAddr(svc.Spec.ClusterIP)
	dst := netip.AddrPortFrom(clusterIP, 7777)
	endpoint := netip.AddrPortFrom(suite.Topo.PodIP(a1, netns.IPv4), env.ServerPort)

	t.Run("portico programs the SCTP Service", func(t *testing.T) {
		out, err := suite.Portico.Command(ctx, "dump", "--no-conntrack")
		if err != nil {
			t.Fatal(err)
		}
		if !nftDump() {
			if !strings.Contains(out, clusterIP.String()) || !strings.Contains(strings.ToLower(out), "sctp") {
				t.Errorf("dump mentions no SCTP rule for the ClusterIP %s; dump:\n%s", clusterIP, out)
			}
			return
		}
		want := fmt.Sprintf("%s . sctp . 7777", clusterIP)
		if !strings.Contains(out, want) {
			t.Errorf("dump has no frontend %q for the SCTP ClusterIP; dump:\n%s", want, out)
		}
		// The DNAT rule picks the endpoint from a map whose elements read "<ip> . <port>".
		target := fmt.Sprintf("%s . %d", endpoint.Addr(), endpoint.Port())
		if !strings.Contains(out, "meta l4proto sctp dnat") || !strings.Contains(out, target) {
			t.Errorf("dump has no sctp DNAT rule to %s (element %q); dump:\n%s", endpoint, target, out)
		}
	})

	t.Run("a raw SCTP INIT to the ClusterIP is DNATed to the endpoint", func(t *testing.T) {
		src := suite.Topo.ClientIPs(netns.IPv4)[0]
		const srcPort = 40123
		var entries []ctEntry
		deadline := time.Now().Add(3 * time.Second)
		for attempt := 1; ; attempt++ {
			if err := traffic.SendSCTPInit(suite.Topo, client, src, srcPort, dst, 0x1234abcd); err != nil {
				t.Fatalf("the raw approach does not work here: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
			var err error
			entries, err = conntrackEntries(nodeA, "sctp")
			if err != nil {
				t.Fatalf("reading node-a's conntrack table: %v", err)
			}
			for _, e := range entries {
				if e.origSrc == netip.AddrPortFrom(src, srcPort) && e.origDst == dst {
					if e.replySrc != endpoint {
						t.Fatalf("SCTP INIT %s -> %s: conntrack reply source %s, want the endpoint %s (DNAT); entry: %s",
							e.origSrc, dst, e.replySrc, endpoint, e.line)
					}
					t.Logf("attempt %d: node-a conntrack: %s", attempt, e.line)
					return
				}
			}
			if time.Now().After(deadline) {
				break
			}
		}
		t.Fatalf("no SCTP conntrack entry for %s:%d -> %s in node-a after 3s of INITs (a wrong checksum or a "+
			"missing rule would explain it); SCTP entries: %v", src, srcPort, dst, entries)
	})
}

// nftDump reports whether portico's dump is in nft syntax (nftables mode): checks that
// read rule syntax fall back to plain substrings in other modes.
func nftDump() bool { return mode() == "nftables" }

// ctEntry is one conntrack entry: the original and the reply tuples.
type ctEntry struct {
	origSrc, origDst, replySrc, replyDst netip.AddrPort
	line                                 string
}

// conntrackEntries reads the conntrack entries of protocol proto (as /proc names it:
// tcp, udp, sctp) inside namespace ns. It reads /proc/thread-self/net/nf_conntrack on a
// thread switched into ns, because vishvananda/netlink does not parse SCTP ports.
func conntrackEntries(ns, proto string) ([]ctEntry, error) {
	var data []byte
	err := suite.Topo.Do(ns, func() error {
		var err error
		data, err = os.ReadFile("/proc/thread-self/net/nf_conntrack")
		return err
	})
	if err != nil {
		return nil, err
	}
	var out []ctEntry
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[2] != proto {
			continue
		}
		var vals []map[string]string
		for _, kv := range f {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			if k == "src" {
				vals = append(vals, map[string]string{})
			}
			if len(vals) > 0 {
				vals[len(vals)-1][k] = v
			}
		}
		if len(vals) < 2 {
			continue
		}
		e := ctEntry{line: line}
		e.origSrc, e.origDst = tuple(vals[0], "src", "sport"), tuple(vals[0], "dst", "dport")
		e.replySrc, e.replyDst = tuple(vals[1], "src", "sport"), tuple(vals[1], "dst", "dport")
		out = append(out, e)
	}
	return out, nil
}

func tuple(m map[string]string, addr, port string) netip.AddrPort {
	a, err := netip.ParseAddr(m[addr])
	if err != nil {
		return netip.AddrPort{}
	}
	var p uint16
	_, _ = fmt.Sscan(m[port], &p)
	return netip.AddrPortFrom(a, p)
}
