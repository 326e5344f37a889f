//go:build e2e

package harness_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/portico-dev/portico/e2e/harness/cluster"
	"github.com/portico-dev/portico/e2e/harness/netns"
	"github.com/portico-dev/portico/e2e/harness/traffic"
)

const probeTimeout = 2 * time.Second

// TestHarness checks the harness itself: topology and traffic, the control plane with a
// restart of the apiserver, and that teardown leaves nothing behind.
func TestHarness(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the e2e harness self-test needs root (it creates network namespaces, links and " +
			"processes): run `sudo go test -tags e2e ./e2e/harness/...`")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 85*time.Second)
	defer cancel()
	if removed, err := netns.CleanupStale(); err != nil || len(removed) > 0 {
		t.Logf("stale namespaces removed: %v (error: %v)", removed, err)
	}
	if removed, err := cluster.CleanupStale(""); err != nil || len(removed) > 0 {
		t.Logf("stale cluster directories removed: %v (error: %v)", removed, err)
	}
	topo := netns.New(netns.DefaultSpec(""))
	t.Cleanup(func() { _ = topo.Destroy() })
	start := time.Now()
	if err := topo.Create(ctx); err != nil {
		t.Fatalf("create topology: %v", err)
	}
	t.Logf("topology %s created in %v", topo.Prefix(), time.Since(start).Round(time.Millisecond))
	if ok, why := traffic.SCTPSupported(); !ok {
		t.Logf("SCTP not supported here: %s", why)
	}

	t.Run("PartialCreate", testPartialCreate)
	t.Run("Routing", func(t *testing.T) { testRouting(ctx, t, topo) })
	t.Run("Refused", func(t *testing.T) { testRefused(ctx, t, topo) })
	t.Run("TimeoutAndUnreachable", func(t *testing.T) { testTimeout(ctx, t, topo) })

	var failedPIDs []int
	t.Run("FailedStart", func(t *testing.T) { failedPIDs = testFailedStart(ctx, t, topo) })
	c := cluster.New(cluster.Options{
		Topology: topo,
		Users:    []cluster.User{{Name: "nobody"}},
	})
	t.Cleanup(func() { _ = c.Stop() })
	t.Run("ControlPlane", func(t *testing.T) { testControlPlane(ctx, t, topo, c) })
	t.Run("Teardown", func(t *testing.T) { testTeardown(t, topo, c, failedPIDs) })
}

var (
	tcpPort = traffic.PortSpec{Port: 8080, Protocol: traffic.TCP}
	udpPort = traffic.PortSpec{Port: 5353, Protocol: traffic.UDP}
)

// testPartialCreate makes Create fail halfway (a route through an unreachable gateway)
// and checks that Destroy still removes everything.
func testPartialCreate(t *testing.T) {
	spec := netns.DefaultSpec("")
	spec.Client.Routes = append(spec.Client.Routes, netns.Route{
		Dst: netip.MustParsePrefix("10.200.0.0/16"), Via: netip.MustParseAddr("10.9.9.9"),
	})
	topo := netns.New(spec)
	if err := topo.Create(context.Background()); err == nil {
		t.Error("create with an unreachable gateway succeeded")
	}
	if err := topo.Destroy(); err != nil {
		t.Errorf("destroy after a failed create: %v", err)
	}
	if left, err := netns.Leftovers(topo.Prefix()); err != nil || len(left) > 0 {
		t.Errorf("namespaces left after a failed create: %v (%v)", left, err)
	}
}

// testRouting sends TCP and UDP, v4 and v6, from pod-a1 and from node-a to pod-b1.
func testRouting(ctx context.Context, t *testing.T, topo *netns.Topology) {
	srv, err := traffic.Serve(topo, netns.PodB1, nil, []traffic.PortSpec{tcpPort, udpPort})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, fam := range netns.Families {
		for _, p := range []traffic.PortSpec{tcpPort, udpPort} {
			dst := netip.AddrPortFrom(topo.PodIP(netns.PodB1, fam), p.Port)
			for _, from := range []struct{ ns, src string }{{netns.PodA1, "pod"}, {netns.NodeA, "node"}} {
				want := topo.PodIP(from.ns, fam)
				if from.src == "node" {
					want = topo.NodeIP(from.ns, fam)
				}
				r := traffic.Probe(ctx, topo, from.ns, netip.Addr{}, dst, p.Protocol, probeTimeout)
				if r.Outcome != traffic.OK || r.Server != dst || r.SeenPeer.Addr() != want {
					t.Errorf("%s %s %s -> %s: %+v, want OK from %s seen as %s", fam, p.Protocol, from.ns, dst, r, dst, want)
				}
			}
			st := traffic.ProbeN(ctx, topo, netns.PodA1, netip.Addr{}, dst, p.Protocol, probeTimeout, 5)
			if st.OK() != 5 || st.Servers[dst] != 5 || st.Peers[topo.PodIP(netns.PodA1, fam)] != 5 {
				t.Errorf("%s %s ProbeN: %s", fam, p.Protocol, st)
			}
		}
	}
	if hits := srv.Hits(); len(hits) != 4 {
		t.Errorf("server hits %v, want 4 listening addresses answered", hits)
	}
}

// testRefused probes a closed port of node-a from the client: TCP RST and ICMP port
// unreachable must both read as Refused, quickly.
func testRefused(ctx context.Context, t *testing.T, topo *netns.Topology) {
	for _, fam := range netns.Families {
		for _, proto := range []string{traffic.TCP, traffic.UDP} {
			for _, src := range topo.ClientIPs(fam) {
				dst := netip.AddrPortFrom(topo.NodeIP(netns.NodeA, fam), 9)
				r := traffic.Probe(ctx, topo, netns.Client, src, dst, proto, probeTimeout)
				if r.Outcome != traffic.Refused || r.Elapsed > time.Second {
					t.Errorf("%s %s client(%s) -> %s: %+v, want Refused", fam, proto, src, dst, r)
				}
				if r.Local.IsValid() && r.Local.Addr() != src {
					t.Errorf("%s probe bound to %s, want source %s", proto, r.Local, src)
				}
			}
		}
	}
}

// testTimeout checks dropped traffic reads as Timeout (an nft drop rule in pod-b2, and
// a blackhole route on node-b) and an unroutable destination as Unreachable.
func testTimeout(ctx context.Context, t *testing.T, topo *netns.Topology) {
	rules := "add table inet harness\n" +
		"add chain inet harness in { type filter hook input priority 0; policy accept; }\n" +
		"add rule inet harness in tcp dport 7777 drop\n" +
		"add rule inet harness in udp dport 7777 drop\n"
	cmd := topo.Exec(ctx, netns.PodB2, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in pod-b2: %v: %s", err, out)
	}
	blackholes := map[netns.Family]netip.Prefix{
		netns.IPv4: netip.MustParsePrefix("10.244.2.99/32"),
		netns.IPv6: netip.MustParsePrefix("fd00:244:2::99/128"),
	}
	if err := addBlackholes(topo, netns.NodeB, blackholes); err != nil {
		t.Fatal(err)
	}
	const short = 600 * time.Millisecond
	for _, fam := range netns.Families {
		dsts := []netip.AddrPort{
			netip.AddrPortFrom(topo.PodIP(netns.PodB2, fam), 7777),
			netip.AddrPortFrom(blackholes[fam].Addr(), 80),
		}
		for _, dst := range dsts {
			for _, proto := range []string{traffic.TCP, traffic.UDP} {
				r := traffic.Probe(ctx, topo, netns.PodA1, netip.Addr{}, dst, proto, short)
				if r.Outcome != traffic.Timeout || r.Elapsed < short || r.Elapsed > short+time.Second {
					t.Errorf("%s %s -> %s: %+v, want Timeout after %v", fam, proto, dst, r, short)
				}
			}
		}
		unrouted := map[netns.Family]netip.AddrPort{
			netns.IPv4: netip.MustParseAddrPort("10.99.0.1:80"),
			netns.IPv6: netip.MustParseAddrPort("[fd00:99::1]:80"),
		}[fam]
		// The nodes have a default route (through the client); the client has none.
		r := traffic.Probe(ctx, topo, netns.Client, netip.Addr{}, unrouted, traffic.TCP, probeTimeout)
		if r.Outcome != traffic.Unreachable {
			t.Errorf("%s TCP -> %s (no route in the client): %+v, want Unreachable", fam, unrouted, r)
		}
	}
}

// addBlackholes adds blackhole routes inside a namespace: forwarded packets to them are
// discarded silently.
func addBlackholes(topo *netns.Topology, ns string, prefixes map[netns.Family]netip.Prefix) error {
	handle := topo.NS(ns)
	if !handle.IsOpen() { // netlink would fall back to the root namespace
		return fmt.Errorf("namespace %s not created", ns)
	}
	h, err := netlink.NewHandleAt(handle)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", ns, err)
	}
	defer h.Close()
	for _, p := range prefixes {
		if err := h.RouteAdd(&netlink.Route{Dst: netns.IPNet(p), Type: syscall.RTN_BLACKHOLE}); err != nil {
			return fmt.Errorf("blackhole %s in %s: %w", p, ns, err)
		}
	}
	return nil
}

// testFailedStart checks that a Start that fails reports the failing process's log and
// that Stop cleans up after it. It returns the PIDs the failed cluster ran.
func testFailedStart(ctx context.Context, t *testing.T, topo *netns.Topology) []int {
	c := cluster.New(cluster.Options{Topology: topo, ExtraAPIServerFlags: []string{"--no-such-flag"}})
	defer c.Stop()
	err := c.Start(ctx)
	if err == nil || !strings.Contains(err.Error(), "unknown flag: --no-such-flag") {
		t.Errorf("start with a bad apiserver flag: %v, want an error quoting the apiserver's log", err)
	}
	t.Logf("failed start reported: %.600s", err)
	if running := c.Running(); len(running) > 0 {
		t.Errorf("still running after a failed start: %v", running)
	}
	dir := c.Dir()
	if err := c.Stop(); err != nil {
		t.Errorf("stop after a failed start: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("work dir %s not removed (%v)", dir, err)
	}
	return c.PIDs()
}

// testControlPlane starts the cluster, creates Nodes and a Service, and restarts the
// apiserver.
func testControlPlane(ctx context.Context, t *testing.T, topo *netns.Topology, c *cluster.Cluster) {
	start := time.Now()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Logf("control plane ready in %v (logs: %v)", time.Since(start).Round(time.Millisecond), c.Logs())
	checkExe(t, c.PIDs()[1], "kube-apiserver")
	cs := c.Client()
	if err := c.CreateNodes(ctx); err != nil {
		t.Fatal(err)
	}
	node, err := cs.CoreV1().Nodes().Get(ctx, netns.NodeA, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(node.Status.Addresses) != 3 || strings.Join(node.Spec.PodCIDRs, ",") != "10.244.1.0/24,fd00:244:1::/64" ||
		node.Labels[cluster.LabelZone] != "zone-a" {
		t.Errorf("node-a: addresses %v, podCIDRs %v, labels %v", node.Status.Addresses, node.Spec.PodCIDRs, node.Labels)
	}
	svc := createService(ctx, t, cs)
	checkForbidden(ctx, t, c)
	checkKubectlFromNode(ctx, t, topo, c)

	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	down, cancel := context.WithTimeout(ctx, time.Second)
	_, err = cs.CoreV1().Services("default").Get(down, svc.Name, metav1.GetOptions{})
	cancel()
	if err == nil {
		t.Error("service readable while the apiserver is stopped")
	}
	start = time.Now()
	if err := c.StartAPIServer(ctx); err != nil {
		t.Fatalf("restart: %v", err)
	}
	t.Logf("apiserver restarted in %v", time.Since(start).Round(time.Millisecond))
	again, err := cs.CoreV1().Services("default").Get(ctx, svc.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("read service after restart: %v", err)
	}
	if strings.Join(again.Spec.ClusterIPs, ",") != strings.Join(svc.Spec.ClusterIPs, ",") {
		t.Errorf("cluster IPs changed across restart: %v -> %v", svc.Spec.ClusterIPs, again.Spec.ClusterIPs)
	}
}

// createService creates a dual-stack Service and checks its allocated cluster IPs.
func createService(ctx context.Context, t *testing.T, cs kubernetes.Interface) *corev1.Service {
	t.Helper()
	policy := corev1.IPFamilyPolicyRequireDualStack
	in := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "harness-check"},
		Spec: corev1.ServiceSpec{
			IPFamilyPolicy: &policy,
			Ports:          []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
	if _, err := cs.CoreV1().Services("default").Create(ctx, in, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create service: %v", err)
	}
	svc, err := cs.CoreV1().Services("default").Get(ctx, in.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("read service: %v", err)
	}
	cidrs := []netip.Prefix{netip.MustParsePrefix("10.96.0.0/16"), netip.MustParsePrefix("fd00:96::/112")}
	if len(svc.Spec.ClusterIPs) != 2 {
		t.Fatalf("cluster IPs %v, want two", svc.Spec.ClusterIPs)
	}
	for i, ip := range svc.Spec.ClusterIPs {
		if a, err := netip.ParseAddr(ip); err != nil || !cidrs[i].Contains(a) {
			t.Errorf("cluster IP %s not in %s", ip, cidrs[i])
		}
	}
	return svc
}

// checkForbidden checks that a token user without bindings is authenticated but denied.
func checkForbidden(ctx context.Context, t *testing.T, c *cluster.Cluster) {
	cfg, err := c.RESTConfigFor("nobody")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = cs.CoreV1().Services("default").List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("user nobody listing services: %v, want Forbidden (RBAC)", err)
	}
}

// checkKubectlFromNode uses the admin kubeconfig from node-a's namespace, as the proxy will.
func checkKubectlFromNode(ctx context.Context, t *testing.T, topo *netns.Topology, c *cluster.Cluster) {
	root, err := cluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	kubectl := filepath.Join(root, ".cache", "bin", "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		t.Logf("skipping the kubectl check: %v", err)
		return
	}
	out, err := topo.Exec(ctx, netns.NodeA, kubectl, "--kubeconfig", c.Kubeconfig(),
		"get", "nodes", "-o", "name").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "node/node-a") {
		t.Errorf("kubectl from node-a: %v: %s", err, out)
	}
}

// checkExe checks that a PID is the named binary itself (ip netns exec execs in place).
func checkExe(t *testing.T, pid int, name string) {
	t.Helper()
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || filepath.Base(exe) != name {
		t.Errorf("pid %d is %q (%v), want %s", pid, exe, err, name)
	}
}

// testTeardown stops everything and checks nothing is left.
func testTeardown(t *testing.T, topo *netns.Topology, c *cluster.Cluster, morePIDs []int) {
	pids, dir := append(c.PIDs(), morePIDs...), c.Dir()
	if err := c.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second stop: %v", err)
	}
	if err := topo.Destroy(); err != nil {
		t.Errorf("destroy: %v", err)
	}
	if err := topo.Destroy(); err != nil {
		t.Errorf("second destroy: %v", err)
	}
	if left, err := netns.Leftovers(topo.Prefix()); err != nil || len(left) > 0 {
		t.Errorf("namespaces left: %v (%v)", left, err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still exists (kill 0: %v)", pid, err)
		}
	}
	if dir != "" {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("work dir %s not removed (%v)", dir, err)
		}
	}
	if _, err := os.Stat(filepath.Join(netns.StateDir, topo.Prefix()+".pid")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid record of %s not removed (%v)", topo.Prefix(), err)
	}
}
