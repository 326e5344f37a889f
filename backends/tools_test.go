package backends

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// pathOf returns a LookPath that finds only the programs named.
func pathOf(programs ...string) func(string) (string, error) {
	return func(file string) (string, error) {
		for _, p := range programs {
			if p == file {
				return "/usr/sbin/" + file, nil
			}
		}
		return "", &exec.Error{Name: file, Err: exec.ErrNotFound}
	}
}

// moduleRoot returns a root whose kernel has module ip_vs loaded, installed or neither.
func moduleRoot(t *testing.T, how string) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{"proc/sys/kernel/osrelease": "6.1.0-test\n"}
	switch how {
	case "loaded":
		files["sys/module/ip_vs/refcnt"] = "0\n"
	case "installed":
		files["lib/modules/6.1.0-test/modules.dep"] = "kernel/net/netfilter/ipvs/ip_vs.ko.xz: kernel/net/netfilter/nf_conntrack.ko.xz\n"
	case "builtin":
		files["lib/modules/6.1.0-test/modules.builtin"] = "kernel/net/netfilter/ipvs/ip_vs.ko\n"
	case "other":
		files["lib/modules/6.1.0-test/modules.dep"] = "kernel/net/netfilter/ipvs/ip_vs_rr.ko.xz: kernel/net/netfilter/ipvs/ip_vs.kofoo\n"
	}
	for path, content := range files {
		full := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

var allModes = []string{"iptables", "nftables", "ipvs"}

func TestToolProbeMissingNft(t *testing.T) {
	probe := ToolProbe{LookPath: pathOf("iptables-restore", "iptables-save", "ipset"), Root: moduleRoot(t, "loaded")}
	err := probe.Check("nftables", allModes, []string{"nftables"})
	var mt *MissingToolError
	if !errors.As(err, &mt) || !IsNotInstalled(err) || !errors.Is(err, exec.ErrNotFound) {
		t.Fatalf("Check: %v, want a MissingToolError wrapping exec.ErrNotFound", err)
	}
	want := "nftables mode needs the nft binary (Debian: apt-get install nftables), which is not installed " +
		`(exec: "nft": executable file not found in $PATH); ` +
		"modes that would work here: iptables (not in this build)"
	if err.Error() != want {
		t.Errorf("error\n%s\nwant\n%s", err, want)
	}
	if err := probe.Check("iptables", allModes, []string{"nftables", "iptables"}); err != nil {
		t.Errorf("iptables with its programs: %v", err)
	}
}

func TestToolProbeWorkingModes(t *testing.T) {
	// iptables mode without ipset: the error lists the other modes that would work, ipvs
	// depending on its kernel module (and nft).
	for _, tc := range []struct {
		name     string
		programs []string
		module   string
		want     string
	}{
		{"nothing", nil, "none", "modes that would work here: none"},
		{"nftables", []string{"nft"}, "none", "modes that would work here: nftables"},
		{"ipvs without its module", []string{"nft", "iptables-restore"}, "other", "modes that would work here: nftables"},
		{"ipvs module installed", []string{"nft"}, "installed", "modes that would work here: nftables, ipvs (not in this build)"},
		{"ipvs module built in", []string{"nft"}, "builtin", "modes that would work here: nftables, ipvs (not in this build)"},
		{"ipvs without nft", []string{"iptables-restore", "iptables-save"}, "loaded", "modes that would work here: none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probe := ToolProbe{LookPath: pathOf(tc.programs...), Root: moduleRoot(t, tc.module)}
			err := probe.Check("iptables", allModes, []string{"nftables", "iptables"})
			if err == nil || !strings.HasSuffix(err.Error(), tc.want) {
				t.Errorf("Check: %v, want it to end in %q", err, tc.want)
			}
		})
	}
}

func TestToolProbeMissingModule(t *testing.T) {
	probe := ToolProbe{LookPath: pathOf("iptables-restore", "iptables-save", "ipset", "nft"), Root: moduleRoot(t, "none")}
	err := probe.Check("ipvs", allModes, []string{"nftables"})
	want := "ipvs mode needs the ip_vs kernel module (Debian: modprobe ip_vs; the module ships with Debian's kernel), " +
		"which is not installed (kernel module ip_vs for kernel 6.1.0-test: neither loaded nor found in modules.builtin " +
		"or modules.dep); modes that would work here: iptables (not in this build), nftables"
	if err == nil || err.Error() != want || !IsNotInstalled(err) {
		t.Errorf("Check: %v\nwant %s", err, want)
	}
	if err := probe.Check("kernelspace", allModes, nil); err != nil {
		t.Errorf("a mode without known needs: %v", err)
	}
}

func TestIsNotInstalled(t *testing.T) {
	_, lookErr := exec.LookPath("portico-no-such-program")
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("nft: transaction failed"), false},
		{fmt.Errorf("nftables is not usable: could not find nftables binary: %w", lookErr), true},
		{fmt.Errorf("wrapped: %w", &MissingToolError{Mode: "ipvs", Err: errNoModule}), true},
		{fmt.Errorf("could not run nftables command: %w", &exec.ExitError{}), false},
	} {
		if got := IsNotInstalled(tc.err); got != tc.want {
			t.Errorf("IsNotInstalled(%v) = %t, want %t", tc.err, got, tc.want)
		}
	}
}
