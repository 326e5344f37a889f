package variant

import (
	"errors"
	"io/fs"
	"os/exec"
	"strings"
	"testing"

	"github.com/portico-dev/portico/backends"
)

func lookPathWithout(missing string, err error) func(string) (string, error) {
	return func(name string) (string, error) {
		if name == missing {
			return "", err
		}
		return "/usr/sbin/" + name, nil
	}
}

func TestToolsAllThere(t *testing.T) {
	if err := Tools(NFT, lookPathWithout("", nil), IPv4, IPv6); err != nil {
		t.Errorf("Tools = %v", err)
	}
}

func TestToolsMissing(t *testing.T) {
	for _, missing := range []string{"iptables-legacy-restore", "iptables-legacy-save", "iptables-legacy", "ip6tables-legacy-restore"} {
		for _, lookErr := range []error{&exec.Error{Name: missing, Err: exec.ErrNotFound}, fs.ErrPermission} {
			err := Tools(Legacy, lookPathWithout(missing, lookErr), IPv4, IPv6)
			if err == nil || !backends.IsNotInstalled(err) {
				t.Fatalf("%s missing (%v): err = %v, want one IsNotInstalled holds for", missing, lookErr, err)
			}
			for _, want := range []string{missing, "apt-get install iptables", "iptables-legacy"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if !errors.Is(err, lookErr) {
				t.Errorf("error %q does not wrap the lookup's %v", err, lookErr)
			}
		}
	}
}

func TestToolsOnlyAskedFamilies(t *testing.T) {
	if err := Tools(NFT, lookPathWithout("ip6tables-nft-restore", exec.ErrNotFound), IPv4); err != nil {
		t.Errorf("IPv4 only: %v", err)
	}
}
