package variant

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Version is what `iptables --version` prints, e.g. "iptables v1.8.9 (nf_tables)".
type Version struct {
	// Major, Minor and Patch are the release numbers.
	Major, Minor, Patch int
	// Mode is the word in brackets: "nf_tables", "legacy", or "" before iptables 1.8.
	Mode string
}

// String prints the version as iptables does, without the program name.
func (v Version) String() string {
	s := fmt.Sprintf("v%d.%d.%d", v.Major, v.Minor, v.Patch)
	if v.Mode != "" {
		s += " (" + v.Mode + ")"
	}
	return s
}

// Variant returns the variant the mode names; false when it names none.
func (v Version) Variant() (Variant, bool) {
	switch v.Mode {
	case "nf_tables":
		return NFT, true
	case "legacy":
		return Legacy, true
	}
	return "", false
}

// AtLeast reports whether v is major.minor.patch or newer.
func (v Version) AtLeast(major, minor, patch int) bool {
	if v.Major != major {
		return v.Major > major
	}
	if v.Minor != minor {
		return v.Minor > minor
	}
	return v.Patch >= patch
}

var versionRE = regexp.MustCompile(`v(\d+)\.(\d+)\.(\d+)(?:\s+\(([^)]*)\))?`)

// ParseVersion reads the output of `iptables --version`.
func ParseVersion(out string) (Version, error) {
	m := versionRE.FindStringSubmatch(out)
	if m == nil {
		return Version{}, fmt.Errorf("no iptables version in %q", strings.TrimSpace(out))
	}
	var n [3]int
	for i := range n {
		x, err := strconv.Atoi(m[i+1])
		if err != nil {
			return Version{}, fmt.Errorf("iptables version %q: %w", m[0], err)
		}
		n[i] = x
	}
	return Version{Major: n[0], Minor: n[1], Patch: n[2], Mode: m[4]}, nil
}

// DetectVersion runs `command --version` (command is a Commands.Iptables) and parses it.
func DetectVersion(ctx context.Context, run Runner, command string) (Version, error) {
	out, err := run.Run(ctx, command, []string{"--version"}, nil)
	if err != nil {
		return Version{}, fmt.Errorf("iptables version: %w", err)
	}
	v, err := ParseVersion(string(out))
	if err != nil {
		return Version{}, fmt.Errorf("%s --version: %w", command, err)
	}
	return v, nil
}
