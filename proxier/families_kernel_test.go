//go:build e2e

package proxier

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/backends/nftables"
	"github.com/portico-dev/portico/model"
)

// ipv4OnlyChild marks the process that TestIPv4OnlyNodeKernel runs in a network namespace
// of its own.
const ipv4OnlyChild = "PORTICO_TEST_IPV4_ONLY_CHILD"

// TestIPv4OnlyNodeKernel runs a Proxier with the nftables backend on a node whose IPv6 is
// disabled (net.ipv6.conf.all.disable_ipv6=1): it must program IPv4 only, with no error.
// Every goroutine of a Proxier may start nft, so the test runs in a child process that is
// wholly inside a new network namespace (unshare --net): nothing reaches the machine's own.
func TestIPv4OnlyNodeKernel(t *testing.T) {
	if os.Getenv(ipv4OnlyChild) == "1" {
		ipv4OnlyNode(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Fatal("this kernel test must run as root: it creates a network namespace and programs nftables in it")
	}
	for _, tool := range []string{"unshare", "nft", "ip", "sysctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("this kernel test needs %s: %v", tool, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--net", os.Args[0], "-test.run=^TestIPv4OnlyNodeKernel$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), ipv4OnlyChild+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestIPv4OnlyNodeKernel") {
		t.Fatalf("the IPv4-only node (in its own network namespace): %v\n%s", err, out)
	}
	t.Logf("child:\n%s", lastLines(string(out), 6))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// ipv4OnlyNode is the child's part: it checks that it is in a fresh namespace, disables
// IPv6 there, runs the Proxier until it has synced and checks the kernel.
func ipv4OnlyNode(t *testing.T) {
	if out := run(t, "nft", "list", "tables"); strings.TrimSpace(out) != "" {
		t.Fatalf("the child's network namespace already has nftables tables; refusing to go on:\n%s", out)
	}
	run(t, "sysctl", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	run(t, "ip", "link", "set", "lo", "up")
	run(t, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
	run(t, "ip", "addr", "add", "192.168.50.10/24", "dev", "eth0")
	run(t, "ip", "link", "set", "eth0", "up")

	dual := newService("dual", "10.96.0.61", svcPort("dns", corev1.ProtocolUDP, 53))
	dual.Spec.ClusterIPs = []string{"10.96.0.61", "fd00:96::61"}
	dual.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	client := fake.NewClientset(newNode(), dual,
		newSlice("dual-1", "dual", epPort("dns", corev1.ProtocolUDP, 5353), "10.244.2.61"))
	be := nftables.New(backends.Options{MasqueradeBit: 14, Families: []model.Family{model.IPv4, model.IPv6}})
	rec := newFakeRecorder()
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.BufferLogs(true)))
	ctx, cancel := context.WithCancel(klog.NewContext(context.Background(), logger))
	p := New(clientsetSources(client, nodeName), be, Options{
		Node: testNodeConfig(), MinSyncPeriod: fastSync, SyncPeriod: time.Hour, Recorder: rec,
	})
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	eventually(t, "the first sync", func() bool { return rec.Generation() > 0 }, nil)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	tables := run(t, "nft", "list", "tables")
	if strings.TrimSpace(tables) != "table ip portico" {
		t.Errorf("tables %q, want the IPv4 table only", tables)
	}
	if rules := run(t, "nft", "list", "table", "ip", "portico"); !strings.Contains(rules, "10.96.0.61") || !strings.Contains(rules, "10.244.2.61") {
		t.Errorf("the Service's IPv4 rules are missing:\n%s", rules)
	}
	logs := logger.GetSink().(ktesting.Underlier).GetBuffer().String()
	if strings.Contains(logs, "ERROR") {
		t.Errorf("errors logged:\n%s", logs)
	}
	if !strings.Contains(logs, "Not programming an IP family") {
		t.Errorf("IPv6 was not reported as missing:\n%s", logs)
	}
	if n := rec.SyncErrors(model.IPv4) + rec.SyncErrors(model.IPv6); n != 0 {
		t.Errorf("%d sync errors", n)
	}
	run(t, "nft", "delete", "table", "ip", "portico")
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
