//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/portico-dev/portico/e2e/harness/cluster"
	"github.com/portico-dev/portico/e2e/harness/netns"
	"github.com/portico-dev/portico/e2e/harness/proc"
)

// kpMode is a mode upstream kube-proxy runs in here, with the iptables variant its plain
// iptables commands reach in iptables mode.
type kpMode struct{ mode, variant string }

func (m kpMode) String() string {
	if m.variant == "" {
		return m.mode
	}
	return m.mode + "-" + m.variant
}

// kubeletChains are chains kubelet (and an operator) own, per table, as this test
// creates them before the removal: they must survive it.
var kubeletChains = [][2]string{{"filter", "KUBE-FIREWALL"}, {"nat", "KUBE-KUBELET-CANARY"}, {"mangle", "KUBE-IPTABLES-HINT"}, {"filter", "OPERATOR-SSH"}}

// TestCleanupKubeProxy is the migration's last step on one node: upstream kube-proxy
// v1.37.2 ran in node-a beside portico (iptables mode on iptables-nft, then on
// iptables-legacy, then nftables mode), was killed without its own cleanup, and
// `portico cleanup --kube-proxy` removes what it left — every chain, table and set of
// kube-proxy's, while kubelet's chains, an operator's chain and portico's own rules stay,
// and portico still serves.
func TestCleanupKubeProxy(t *testing.T) {
	root, err := cluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	kp := filepath.Join(root, ".cache", "bin", "kube-proxy")
	if _, err := os.Stat(kp); err != nil {
		t.Fatalf("kube-proxy is not built (make cluster-bins): %v", err)
	}
	keepSysctls(t, "/proc/sys/net/ipv4/conf/all/route_localnet", "/proc/sys/net/ipv4/ip_forward")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	sc := Scenario{Name: "CleanupKubeProxy", Services: []ServiceSetup{{Svc: service("kpc"), Backends: ready(a1)}}}
	svcs := apply(ctx, t, sc)
	flow := Flow{Name: "client to the ClusterIP", From: client, To: "kpc", Expect: pods(a1)}
	runFlow(ctx, t, svcs, flow)
	clusterIP := svcs["kpc"].Spec.ClusterIP
	for _, m := range []kpMode{{"iptables", "nft"}, {"iptables", "legacy"}, {"nftables", ""}} {
		t.Run(m.String(), func(t *testing.T) {
			before := dumpRules(ctx, t, "portico's rules before")
			variant := m.variant
			if variant == "" {
				variant = "nft"
			}
			addOwnChains(ctx, t, variant)
			t.Cleanup(func() { // whatever happened, leave no kube-proxy rule to the next tests
				if kubeProxyLeftovers(context.Background(), t) != "" {
					_, _ = suite.Portico.Command(context.Background(), "cleanup", "--kube-proxy")
				}
			})
			runKubeProxy(ctx, t, kp, m, clusterIP)
			if left := kubeProxyLeftovers(ctx, t); left == "" {
				t.Fatal("kube-proxy left nothing to remove; the test would prove nothing")
			}
			out, err := suite.Portico.Command(ctx, "cleanup", "--kube-proxy")
			if err != nil {
				t.Fatalf("portico cleanup --kube-proxy: %v", err)
			}
			t.Logf("portico cleanup --kube-proxy:\n%s", out)
			if left := kubeProxyLeftovers(ctx, t); left != "" {
				t.Errorf("kube-proxy's leftovers after portico cleanup --kube-proxy:\n%s", left)
			}
			checkOwnChains(ctx, t, variant)
			if after := dumpRules(ctx, t, "portico's rules after"); after != before {
				t.Errorf("portico's rules changed:\n--- before\n%s--- after\n%s", before, after)
			}
			runFlow(ctx, t, svcs, flow)
		})
	}
}

// iptIn runs an iptables tool ("iptables", "ip6tables-save", ...) of a variant in node-a.
func iptIn(ctx context.Context, variant, tool string, args ...string) (string, error) {
	argv := append([]string{strings.Replace(tool, "tables", "tables-"+variant, 1)}, args...)
	out, err := suite.Topo.Exec(ctx, netns.NodeA, argv...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, out)
	}
	return string(out), nil
}

// addOwnChains creates kubelet's chains (those the harness has not created already) and
// an operator's chain with a jump to it in node-a, and removes what it created when the
// test ends.
func addOwnChains(ctx context.Context, t *testing.T, variant string) {
	t.Helper()
	var created [][2]string
	t.Cleanup(func() { removeOwnChains(variant, created) })
	for _, c := range kubeletChains {
		out, err := iptIn(ctx, variant, "iptables", "-w", "-t", c[0], "-N", c[1])
		if err != nil && !strings.Contains(out, "already exists") {
			t.Fatal(err)
		}
		if err == nil {
			created = append(created, c)
		}
	}
	for _, rule := range [][]string{
		{"-A", "KUBE-FIREWALL", "!", "-s", "127.0.0.0/8", "-d", "127.0.0.0/8", "-j", "DROP"},
		{"-A", "OPERATOR-SSH", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"},
		{"-A", "INPUT", "-j", "OPERATOR-SSH"},
	} {
		if _, err := iptIn(ctx, variant, "iptables", append([]string{"-w", "-t", "filter"}, rule...)...); err != nil {
			t.Fatal(err)
		}
	}
}

// removeOwnChains removes the chains addOwnChains created, with the jumps to them (kube-
// proxy's iptables mode also jumps to KUBE-FIREWALL from INPUT and OUTPUT).
func removeOwnChains(variant string, created [][2]string) {
	ctx := context.Background()
	for _, jump := range [][2]string{{"INPUT", "OPERATOR-SSH"}, {"INPUT", "KUBE-FIREWALL"}, {"OUTPUT", "KUBE-FIREWALL"}} {
		for i := 0; i < 3; i++ {
			if _, err := iptIn(ctx, variant, "iptables", "-w", "-t", "filter", "-D", jump[0], "-j", jump[1]); err != nil {
				break
			}
		}
	}
	for _, c := range created {
		_, _ = iptIn(ctx, variant, "iptables", "-w", "-t", c[0], "-F", c[1])
		_, _ = iptIn(ctx, variant, "iptables", "-w", "-t", c[0], "-X", c[1])
	}
}

// checkOwnChains checks that kubelet's and the operator's chains, their rules and the
// jump to the operator's chain are still there.
func checkOwnChains(ctx context.Context, t *testing.T, variant string) {
	t.Helper()
	save, err := iptIn(ctx, variant, "iptables-save")
	if err != nil {
		t.Fatal(err)
	}
	// kube-proxy's iptables mode rewrites KUBE-FIREWALL's rule (it shares the chain with
	// kubelet), so only its start is checked there.
	for _, want := range []string{":KUBE-FIREWALL", ":KUBE-KUBELET-CANARY", ":KUBE-IPTABLES-HINT", ":OPERATOR-SSH",
		"-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 ", "-A OPERATOR-SSH -p tcp -m tcp --dport 22 -j ACCEPT", "-A INPUT -j OPERATOR-SSH"} {
		if !strings.Contains(save, want) {
			t.Errorf("%q is gone from iptables-%s:\n%s", want, variant, save)
		}
	}
}

// runKubeProxy runs kube-proxy in node-a in mode m until its rules hold clusterIP, then
// kills it (SIGKILL: no cleanup of its own, as when a node's kube-proxy pod is deleted).
func runKubeProxy(ctx context.Context, t *testing.T, bin string, m kpMode, clusterIP string) {
	t.Helper()
	dir := t.TempDir()
	cfg := map[string]any{
		"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
		"mode": m.mode, "clusterCIDR": "10.244.0.0/16,fd00:244::/44", "hostnameOverride": netns.NodeA,
		"metricsBindAddress": "127.0.0.1:10349", "healthzBindAddress": "127.0.0.1:10356",
		"clientConnection": map[string]any{"kubeconfig": suite.Cluster.Kubeconfig()},
		"conntrack":        map[string]any{"maxPerCore": 0},
	}
	body, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, body, 0o644); err != nil {
		t.Fatal(err)
	}
	argv := []string{"env", "PATH=" + variantPath(t, dir, m.variant) + ":" + os.Getenv("PATH"), bin, "--config=" + path, "-v=2"}
	p := proc.New("kube-proxy", suite.Topo.Name(netns.NodeA), filepath.Join(dir, "kube-proxy.log"), argv)
	if _, err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Kill(5 * time.Second) }()
	deadline := time.Now().Add(90 * time.Second)
	for !kubeProxyHolds(ctx, m, clusterIP) {
		select {
		case <-p.Exited():
			t.Fatalf("kube-proxy exited: %v\n%s", p.ExitErr(), p.Tail(30))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-proxy (%s) did not program %s in 90 s:\n%s", m, clusterIP, p.Tail(30))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// variantPath returns a directory whose iptables commands are the variant's (kube-proxy
// runs the plain names, as on a host whose alternatives point there); "" for none.
func variantPath(t *testing.T, dir, variant string) string {
	t.Helper()
	if variant == "" {
		return dir
	}
	for _, base := range []string{"iptables", "ip6tables"} {
		for _, suffix := range []string{"", "-save", "-restore"} {
			real, err := exec.LookPath(fmt.Sprintf("%s-%s%s", base, variant, suffix))
			if err != nil {
				t.Fatalf("iptables-%s is not installed: %v", variant, err)
			}
			if err := os.Symlink(real, filepath.Join(dir, base+suffix)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

// kubeProxyHolds reports whether node-a's kernel has kube-proxy's rules for clusterIP.
func kubeProxyHolds(ctx context.Context, m kpMode, clusterIP string) bool {
	if m.mode == "nftables" {
		out, err := suite.Topo.Exec(ctx, netns.NodeA, "nft", "list", "table", "ip", "kube-proxy").CombinedOutput()
		return err == nil && strings.Contains(string(out), clusterIP)
	}
	out, err := iptIn(ctx, m.variant, "iptables-save", "-t", "nat")
	return err == nil && strings.Contains(out, clusterIP+"/32") && strings.Contains(out, ":KUBE-SERVICES")
}

// kubeProxyLeftovers lists what node-a holds of kube-proxy's: KUBE- chains other than
// kubelet's in both variants and families, kube-proxy tables, KUBE- ipsets.
func kubeProxyLeftovers(ctx context.Context, t *testing.T) string {
	t.Helper()
	kubelet := map[string]bool{}
	for _, c := range kubeletChains {
		kubelet[c[0]+" "+c[1]] = true
	}
	var left []string
	for _, v := range []string{"nft", "legacy"} {
		for _, cmd := range []string{"iptables", "ip6tables"} {
			save, err := iptIn(ctx, v, cmd+"-save")
			if err != nil {
				t.Fatal(err)
			}
			table := ""
			for _, line := range strings.Split(save, "\n") {
				if strings.HasPrefix(line, "*") {
					table = line[1:]
				}
				if name, _, _ := strings.Cut(strings.TrimPrefix(line, ":"), " "); strings.HasPrefix(line, ":KUBE-") && !kubelet[table+" "+name] {
					left = append(left, fmt.Sprintf("%s-%s %s %s", cmd, v, table, name))
				}
			}
		}
	}
	if out, err := suite.Topo.Exec(ctx, netns.NodeA, "nft", "list", "tables").CombinedOutput(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasSuffix(line, " kube-proxy") {
				left = append(left, line)
			}
		}
	}
	if out, err := suite.Topo.Exec(ctx, netns.NodeA, "ipset", "list", "-n").CombinedOutput(); err == nil {
		for _, name := range strings.Fields(string(out)) {
			if strings.HasPrefix(name, "KUBE-") {
				left = append(left, "ipset "+name)
			}
		}
	}
	return strings.Join(left, "\n")
}

// keepSysctls restores node-a's sysctls (paths under /proc/sys) when the test ends:
// kube-proxy sets route_localnet, for one, which the rest of the suite must not inherit.
// One that does not exist in the namespace is skipped.
func keepSysctls(t *testing.T, paths ...string) {
	t.Helper()
	saved := map[string][]byte{}
	_ = suite.Topo.Do(netns.NodeA, func() error {
		for _, p := range paths {
			if b, err := os.ReadFile(p); err == nil {
				saved[p] = b
			}
		}
		return nil
	})
	t.Cleanup(func() {
		err := suite.Topo.Do(netns.NodeA, func() error {
			for p, b := range saved {
				if err := os.WriteFile(p, b, 0o644); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Errorf("restoring node-a's sysctls: %v", err)
		}
	})
}
