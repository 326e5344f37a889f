package variant

import (
	"context"
	"strings"
	"testing"

	"github.com/portico-dev/portico/backends"
)

func TestExecRunner(t *testing.T) {
	ctx := context.Background()
	out, err := ExecRunner{}.Run(ctx, "sh", []string{"-c", "cat; echo out"}, strings.NewReader("in\n"))
	if err != nil || string(out) != "in\nout\n" {
		t.Errorf("Run = %q, %v", out, err)
	}
	_, err = ExecRunner{}.Run(ctx, "sh", []string{"-c", "echo oops >&2; exit 3"}, nil)
	if err == nil || !strings.Contains(err.Error(), "oops") || !strings.Contains(err.Error(), "sh -c") {
		t.Errorf("failing command: err = %v, want the command and its stderr", err)
	}
	_, err = ExecRunner{}.Run(ctx, "portico-no-such-program", nil, nil)
	if !backends.IsNotInstalled(err) {
		t.Errorf("missing program: err = %v, want IsNotInstalled", err)
	}
}
