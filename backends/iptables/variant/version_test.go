package variant

import (
	"context"
	"errors"
	"os/exec"
	"slices"
	"testing"

	"github.com/portico-dev/portico/backends"
)

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in      string
		want    Version
		variant Variant
	}{
		{"iptables v1.8.9 (nf_tables)\n", Version{1, 8, 9, "nf_tables"}, NFT},
		{"iptables v1.8.7 (legacy)", Version{1, 8, 7, "legacy"}, Legacy},
		{"ip6tables v1.8.10 (nf_tables): blah", Version{1, 8, 10, "nf_tables"}, NFT},
		{"iptables v1.6.1", Version{1, 6, 1, ""}, ""},
	}
	for _, tt := range tests {
		got, err := ParseVersion(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseVersion(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		if v, _ := got.Variant(); v != tt.variant {
			t.Errorf("ParseVersion(%q).Variant() = %q, want %q", tt.in, v, tt.variant)
		}
	}
	if _, err := ParseVersion("command not found"); err == nil {
		t.Error("ParseVersion of garbage succeeded")
	}
	if s := (Version{1, 8, 9, "nf_tables"}).String(); s != "v1.8.9 (nf_tables)" {
		t.Errorf("String = %q", s)
	}
}

func TestAtLeast(t *testing.T) {
	v := Version{Major: 1, Minor: 8, Patch: 9}
	for _, c := range []struct {
		a, b, c int
		want    bool
	}{{1, 8, 9, true}, {1, 8, 10, false}, {1, 6, 2, true}, {1, 9, 0, false}, {2, 0, 0, false}, {0, 9, 9, true}} {
		if got := v.AtLeast(c.a, c.b, c.c); got != c.want {
			t.Errorf("%v.AtLeast(%d.%d.%d) = %v", v, c.a, c.b, c.c, got)
		}
	}
}

func TestDetectVersion(t *testing.T) {
	run := &fakeRunner{out: map[string]string{"iptables-legacy --version": "iptables v1.8.9 (legacy)\n"}}
	v, err := DetectVersion(context.Background(), run, "iptables-legacy")
	if err != nil || v != (Version{1, 8, 9, "legacy"}) {
		t.Errorf("DetectVersion = %+v, %v", v, err)
	}
	_, err = DetectVersion(context.Background(), run, "iptables-nft")
	if !errors.Is(err, exec.ErrNotFound) || !backends.IsNotInstalled(err) {
		t.Errorf("missing command: err = %v, want not installed", err)
	}
}

func TestLockArgs(t *testing.T) {
	if got := RestoreArgs(5); !slices.Equal(got, []string{"-w", "5", "--noflush"}) {
		t.Errorf("RestoreArgs = %q", got)
	}
	if got := IptablesArgs(7, "-t", "nat", "-S"); !slices.Equal(got, []string{"-w", "7", "-t", "nat", "-S"}) {
		t.Errorf("IptablesArgs = %q", got)
	}
}
