package portico

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"time"

	"github.com/portico-dev/portico/config"
)

// The iptables variants: the back ends of the iptables 1.8 tools, named as in their
// programs (iptables-nft, iptables-legacy).
const (
	// VariantNFT is iptables-nft.
	VariantNFT = "nft"
	// VariantLegacy is iptables-legacy.
	VariantLegacy = "legacy"
)

// CheckVariant returns an error unless v names an iptables variant ("" is allowed: the
// host decides).
func CheckVariant(v string) error {
	switch v {
	case "", VariantNFT, VariantLegacy:
		return nil
	}
	return fmt.Errorf("iptables variant %q: want %q or %q", v, VariantNFT, VariantLegacy)
}

// variantLogged matches the line portico logs once it has picked the iptables variant,
// e.g. `"Using the iptables variant" variant="legacy" reason="..."`.
var variantLogged = regexp.MustCompile(`"Using the iptables variant" variant="([a-z]+)"`)

// IPTablesVariant returns the iptables variant portico logged at its last start ("" when
// it runs another mode).
func (p *Portico) IPTablesVariant() string { return p.variant }

// iptablesMode reports whether portico runs in iptables mode (an empty mode is iptables
// mode, as in kube-proxy).
func (p *Portico) iptablesMode() bool {
	m, _ := p.ConfigDocument()["mode"].(string)
	return m == config.ModeIPTables || m == ""
}

// variantLogWait bounds how long checkVariant waits for the line: /healthz may answer
// before the backend has logged its choice.
const variantLogWait = 10 * time.Second

// checkVariant reads, in the part of the log written since offset (this start), which
// iptables variant portico picked, remembers it and fails when it is not the one
// Options.IPTablesVariant asks for. Outside iptables mode it only forgets the last one.
func (p *Portico) checkVariant(ctx context.Context, logPath string, offset int64) error {
	p.variant = ""
	if !p.iptablesMode() {
		return nil
	}
	v, err := waitVariantLogged(ctx, logPath, offset)
	if err != nil {
		return fmt.Errorf("portico (iptables mode) did not log which iptables variant it uses (want %q): %w; log tail:\n%s",
			p.opts.IPTablesVariant, err, p.proc.Tail(30))
	}
	p.variant = v
	if want := p.opts.IPTablesVariant; want != "" && v != want {
		return fmt.Errorf("portico picked iptables variant %q, want %q (kubelet's hint chain is in iptables-%s); log tail:\n%s",
			v, want, want, p.proc.Tail(30))
	}
	return nil
}

// waitVariantLogged polls the log from offset on until it holds the variant line, and
// returns the variant of the last one.
func waitVariantLogged(ctx context.Context, logPath string, offset int64) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, variantLogWait)
	defer cancel()
	for {
		text, err := readFrom(logPath, offset)
		if err != nil {
			return "", fmt.Errorf("reading %s: %w", logPath, err)
		}
		if m := variantLogged.FindAllStringSubmatch(text, -1); len(m) > 0 {
			return m[len(m)-1][1], nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no %q line in %s after %v: %w", "Using the iptables variant", logPath, variantLogWait, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// fileSize returns the size of the file at path, 0 if it does not exist.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readFrom returns the content of the file at path from offset on.
func readFrom(path string, offset int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return "", fmt.Errorf("seeking to %d: %w", offset, err)
	}
	b, err := io.ReadAll(f)
	return string(b), err
}
