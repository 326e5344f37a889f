//go:build e2e

package env_test

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portico-dev/portico/e2e/harness/env"
)

// namespaces lists the named network namespaces (/run/netns).
func namespaces(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("/run/netns")
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// TestSetupFailureTearsDown: when Setup fails part way (here its context ends while the
// control plane starts), it returns the error and removes what it had built; it used to
// panic, tearing down through the nil *Env it was about to return.
func TestSetupFailureTearsDown(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: the environment creates network namespaces")
	}
	before := namespaces(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	e, err := env.Setup(ctx, env.Options{NoPortico: true})
	if err == nil {
		_ = e.Teardown()
		t.Fatal("Setup succeeded within 300 ms; the test needs it to fail part way")
	}
	t.Logf("Setup failed as intended: %v", err)
	after := namespaces(t)
	for _, n := range after {
		if !slices.Contains(before, n) {
			t.Errorf("namespace %s left behind by the failed Setup (before: %s)", n, strings.Join(before, " "))
		}
	}
}
