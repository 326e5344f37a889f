package proc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTailFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	var b strings.Builder
	for i := 0; i < 5000; i++ {
		b.WriteString("line\n")
	}
	b.WriteString("last one\n")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	got := TailFile(path, 2)
	if got != "line\nlast one" {
		t.Errorf("tail = %q", got)
	}
}
