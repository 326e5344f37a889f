//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// initOnlySysctls are the per-network-namespace conntrack sysctls that the configuration
// of TestInitOnly sets, with the values it asks for: each differs from a new namespace's
// default, so a run that set nothing fails.
var initOnlySysctls = map[string]string{
	"nf_conntrack_tcp_timeout_established": "7200",
	"nf_conntrack_tcp_timeout_close_wait":  "30",
	"nf_conntrack_tcp_be_liberal":          "1",
	"nf_conntrack_udp_timeout":             "40",
	"nf_conntrack_udp_timeout_stream":      "150",
}

// globalConntrack are the conntrack settings shared by every namespace: a test must not
// change them, and portico must leave them alone when they are already large enough.
var globalConntrack = []string{"/proc/sys/net/netfilter/nf_conntrack_max", "/sys/module/nf_conntrack/parameters/hashsize"}

// inFreshNetns runs portico with args in a network namespace of its own (unshare --net:
// the namespace goes with the process) and then prints, from that namespace, "exit=<code>",
// each sysctl of initOnlySysctls as name=value, and `nft list tables`. env is the
// environment of portico alone.
func inFreshNetns(ctx context.Context, t *testing.T, env []string, args ...string) string {
	t.Helper()
	script := `env -i "$@"; echo "exit=$?"
cd /proc/sys/net/netfilter
for s in ` + strings.Join(sortedKeys(initOnlySysctls), " ") + `; do echo "$s=$(cat $s)"; done
echo tables:; nft list tables`
	argv := append([]string{"--net", "--", "sh", "-c", script, "sh"}, env...)
	argv = append(argv, suite.Portico.Bin())
	argv = append(argv, args...)
	out, err := exec.CommandContext(ctx, "unshare", argv...).CombinedOutput()
	if err != nil {
		t.Fatalf("unshare --net: %v: %s", err, out)
	}
	return string(out)
}

func sortedKeys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// readInts reads integer files.
func readInts(t *testing.T, paths ...string) []int {
	t.Helper()
	out := make([]int, len(paths))
	for i, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("this test needs nf_conntrack loaded: %v", err)
		}
		if out[i], err = strconv.Atoi(strings.TrimSpace(string(data))); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestInitOnly runs `portico --init-only` in a network namespace the test creates, with
// every conntrack field set: it exits 0 having set the namespace's conntrack sysctls,
// programs no table, contacts no API server, and leaves the machine's own namespace and
// the global nf_conntrack_max and hash table size alone (they are already as large as the
// configuration asks, so portico, as kube-proxy, does not write them). Without nft on the
// PATH (nor any other program) it exits 1 saying what to install.
func TestInitOnly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rootBefore := readInts(t, rootSysctlPaths()...)
	global := readInts(t, globalConntrack...)
	// maxPerCore × CPUs stays under min, and min under what the kernel already has.
	floor := min(global[0], 4*global[1])
	doc := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: %s
conntrack:
  maxPerCore: 1
  min: %d
  tcpEstablishedTimeout: 2h
  tcpCloseWaitTimeout: 30s
  tcpBeLiberal: true
  udpTimeout: 40s
  udpStreamTimeout: 150s
`, mode(), floor)
	cfg := filepath.Join(t.TempDir(), "config.conf")
	if err := os.WriteFile(cfg, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--init-only", "--config=" + cfg, "--hostname-override=" + nodeA, "--master=https://192.0.2.1:6443", "-v=2"}

	fresh := inFreshNetns(ctx, t, nil, "--version")
	for name, want := range initOnlySysctls {
		if strings.Contains(fresh, name+"="+want+"\n") {
			t.Fatalf("a new namespace already has %s=%s; the test would prove nothing:\n%s", name, want, fresh)
		}
	}

	out := inFreshNetns(ctx, t, []string{"PATH=" + os.Getenv("PATH")}, args...)
	if !strings.Contains(out, "exit=0\n") {
		t.Fatalf("portico --init-only did not exit 0:\n%s", out)
	}
	for name, want := range initOnlySysctls {
		if !strings.Contains(out, name+"="+want+"\n") {
			t.Errorf("%s is not %s in portico's namespace", name, want)
		}
	}
	if _, tables, _ := strings.Cut(out, "tables:\n"); strings.TrimSpace(tables) != "" {
		t.Errorf("--init-only programmed tables: %s", tables)
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
	if after := readInts(t, rootSysctlPaths()...); fmt.Sprint(after) != fmt.Sprint(rootBefore) {
		t.Errorf("the machine's own namespace changed: %v, was %v", after, rootBefore)
	}
	if after := readInts(t, globalConntrack...); fmt.Sprint(after) != fmt.Sprint(global) {
		t.Errorf("nf_conntrack_max and hashsize changed: %v, were %v", after, global)
	}

	out = inFreshNetns(ctx, t, []string{"PATH=" + t.TempDir()}, args...)
	if !strings.Contains(out, "exit=1\n") || !strings.Contains(out, mode()+" mode needs the ") || !strings.Contains(out, "(Debian: ") {
		t.Errorf("without nft: want exit 1 saying what to install, got:\n%s", out)
	}
}

// rootSysctlPaths are initOnlySysctls in the test's own namespace.
func rootSysctlPaths() []string {
	var out []string
	for _, name := range sortedKeys(initOnlySysctls) {
		out = append(out, "/proc/sys/net/netfilter/"+name)
	}
	return out
}
