//go:build e2e

package variant

import (
	"context"
	"strings"
	"testing"

	"github.com/portico-dev/portico/backends/backendtest"
)

// allTools are the commands the kernel tests run.
var allTools = []string{
	"iptables-legacy", "iptables-legacy-save", "ip6tables-legacy-save", "iptables-legacy-restore",
	"iptables-nft", "iptables-nft-save", "ip6tables-nft-save", "iptables-nft-restore",
}

// addRule adds one rule to a new chain of the filter table with variant v's restore
// command, in the namespace of the calling thread.
func addRule(t *testing.T, v Variant) {
	t.Helper()
	input := "*filter\n:PORTICO-VARIANT-TEST - [0:0]\n-A PORTICO-VARIANT-TEST -j RETURN\nCOMMIT\n"
	cmd := v.Commands(IPv4).Restore
	if _, err := (ExecRunner{}).Run(context.Background(), cmd, RestoreArgs(DefaultLockSeconds), strings.NewReader(input)); err != nil {
		t.Fatalf("adding a rule with %s: %v", cmd, err)
	}
}

// detectIn runs Detect and checks its answer and the version of the chosen command.
func detectIn(t *testing.T, want Variant, reason string) Result {
	t.Helper()
	ctx := context.Background()
	got, err := Detect(ctx, ExecRunner{})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(got.Reason)
	if got.Variant != want || !strings.Contains(got.Reason, reason) {
		t.Fatalf("Detect = %s (%s), want %s because %q", got.Variant, got.Reason, want, reason)
	}
	ver, err := DetectVersion(ctx, ExecRunner{}, got.Commands(IPv4).Iptables)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := ver.Variant(); !ok || v != want {
		t.Errorf("%s --version says %v, want the %s variant", got.Commands(IPv4).Iptables, ver, want)
	}
	return got
}

func TestKernelLegacyWins(t *testing.T) {
	defer backendtest.EnterFreshNetns(t, allTools...)()
	addRule(t, Legacy)
	detectIn(t, Legacy, "more rules")
}

func TestKernelNFTWins(t *testing.T) {
	defer backendtest.EnterFreshNetns(t, allTools...)()
	addRule(t, NFT)
	detectIn(t, NFT, "more rules")
}

func TestKernelDefault(t *testing.T) {
	defer backendtest.EnterFreshNetns(t, allTools...)()
	detectIn(t, NFT, "default")
}

// TestKernelRules checks go-iptables on the detected variant's command: the jump goes in
// once, at the top, and the chain checks see what the kernel holds.
func TestKernelRules(t *testing.T) {
	defer backendtest.EnterFreshNetns(t, allTools...)()
	addRule(t, Legacy)
	res := detectIn(t, Legacy, "more rules")
	r, err := NewRules(res.Variant, IPv4, DefaultLockSeconds)
	if err != nil {
		t.Fatal(err)
	}
	missing, err := MissingChains(r, "filter", "PORTICO-VARIANT-TEST", "PORTICO-NOT-THERE")
	if err != nil || len(missing) != 1 || missing[0] != "PORTICO-NOT-THERE" {
		t.Fatalf("MissingChains = %q, %v", missing, err)
	}
	for i, want := range []bool{true, false} {
		added, err := EnsureJump(r, "filter", "INPUT", "-j", "PORTICO-VARIANT-TEST")
		if err != nil || added != want {
			t.Fatalf("EnsureJump %d = %v, %v; want %v", i, added, err, want)
		}
	}
	out, err := (ExecRunner{}).Run(context.Background(), "iptables-legacy-save", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(out), "-A INPUT -j PORTICO-VARIANT-TEST\n"); n != 1 {
		t.Errorf("iptables-legacy-save shows the jump %d times, want once:\n%s", n, out)
	}
	nft, _ := (ExecRunner{}).Run(context.Background(), "iptables-nft-save", nil, nil)
	if strings.Contains(string(nft), "PORTICO-VARIANT-TEST") {
		t.Errorf("the legacy jump landed in nft:\n%s", nft)
	}
}

// TestKernelKubeletHint checks that kubelet's hint chain in legacy beats more nft rules.
func TestKernelKubeletHint(t *testing.T) {
	defer backendtest.EnterFreshNetns(t, allTools...)()
	hint := "*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n"
	if _, err := (ExecRunner{}).Run(context.Background(), "iptables-legacy-restore",
		RestoreArgs(DefaultLockSeconds), strings.NewReader(hint)); err != nil {
		t.Fatal(err)
	}
	addRule(t, NFT)
	detectIn(t, Legacy, "kubelet")
}
