package portico

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCheckVariant(t *testing.T) {
	for v, ok := range map[string]bool{"": true, "nft": true, "legacy": true, "iptables-nft": false, "NFT": false} {
		if err := CheckVariant(v); (err == nil) != ok {
			t.Errorf("CheckVariant(%q) = %v, want ok=%v", v, err, ok)
		}
	}
}

// line is what portico logs once it has picked a variant.
func line(v string) string {
	return `I1204 12:49:19.937951   27837 backend.go:99] "Using the iptables variant" variant="` + v +
		`" reason="using iptables-` + v + `: kubelet's hint chain is there"` + "\n"
}

func appendTo(path, text string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(text)
	return err
}

// TestWaitVariantLogged: only the lines written since the start count, and a line that
// comes after the call is waited for.
func TestWaitVariantLogged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "portico.log")
	if err := appendTo(path, "=== portico starting\n"+line("nft")); err != nil {
		t.Fatal(err)
	}
	offset := fileSize(path)
	if err := appendTo(path, "=== portico starting\nI1204 other line\n"); err != nil {
		t.Fatal(err)
	}
	written := make(chan error, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		written <- appendTo(path, line("legacy"))
	}()
	got, err := waitVariantLogged(context.Background(), path, offset)
	if werr := <-written; werr != nil {
		t.Fatal(werr)
	}
	if err != nil || got != "legacy" {
		t.Fatalf("waitVariantLogged = %q, %v; want legacy", got, err)
	}

	// Nothing logged since the start: an error, not the earlier start's variant.
	offset = fileSize(path)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if got, err := waitVariantLogged(ctx, path, offset); err == nil || !strings.Contains(err.Error(), "Using the iptables variant") {
		t.Fatalf("waitVariantLogged with nothing new = %q, %v; want an error naming the line", got, err)
	}
}
