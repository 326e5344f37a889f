package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// run executes the portico command line in-process and returns its exit code and the
// error text main would print.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	return exitCode(err), msg, out.String()
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.conf")
	doc := "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n" + body
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestInvalidConfigurationExitsTwo(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"bad nodePortAddresses CIDR", "mode: nftables\nnodePortAddresses: [primary, 10.0.0.0/33]\n",
			`nodePortAddresses[1]: "10.0.0.0/33" is not a CIDR or one of primary, localhost, all`},
		{"userspace mode", "mode: userspace\n", `mode: "userspace"`},
		{"kernelspace mode", "mode: kernelspace\n", `mode: "kernelspace"`},
		{"typo in the mode", "mode: nftable\n", `mode: "nftable"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, msg, _ := run(t, "--config="+writeConfig(t, tc.body), "--hostname-override=node-a")
			if code != exitUsage {
				t.Errorf("exit code %d, want %d (error: %s)", code, exitUsage, msg)
			}
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not contain %q", msg, tc.want)
			}
		})
	}
}

// TestModeWithoutItsKernelModuleFailsClearly starts ipvs mode on a host without the ip_vs
// module (the test's host root has no modules): portico exits at start, naming the
// module, how to get it and the modes that would work.
func TestModeWithoutItsKernelModuleFailsClearly(t *testing.T) {
	code, msg, _ := run(t, "--config="+writeConfig(t, "mode: ipvs\n"), "--hostname-override=node-a")
	if code != exitError || !strings.Contains(msg, "ipvs mode needs the ip_vs kernel module") || !strings.Contains(msg, "modes that would work here: iptables, nftables") {
		t.Errorf("exit %d, error %q: want exit %d naming the module and the modes that would work", code, msg, exitError)
	}
}

func TestHelpListsEveryFlagAndSubcommand(t *testing.T) {
	code, _, out := run(t, "--help")
	if code != exitOK {
		t.Fatalf("--help exited %d", code)
	}
	for _, want := range []string{
		"--mode", "--proxy-mode", "--config", "--kubeconfig", "--master", "--hostname-override",
		"--cluster-cidr", "--nodeport-addresses", "--masquerade-all", "--detect-local-mode",
		"--healthz-bind-address", "--metrics-bind-address", "--iptables-sync-period",
		"--iptables-min-sync-period", "--ipvs-sync-period", "--ipvs-min-sync-period",
		"--config-sync-period", "--cleanup", "-v, --v",
		"dump", "cleanup", "version",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("--help does not mention %q", want)
		}
	}
}

func TestVersion(t *testing.T) {
	code, _, out := run(t, "version")
	if code != exitOK || !strings.HasPrefix(out, "portico ") {
		t.Errorf("version: exit %d, output %q", code, out)
	}
}
