//go:build e2e

package e2e

import (
	"os"
	"testing"
	"time"
)

// TestHold keeps the environment up for manual inspection when PORTICO_E2E_HOLD is set
// to a duration (e.g. 10m); it prints the namespace prefix. It does nothing otherwise.
func TestHold(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("PORTICO_E2E_HOLD"))
	if err != nil {
		return
	}
	t.Logf("holding the environment %s for %s (kubeconfig %s)", suite.Topo.Prefix(), d, suite.Cluster.Kubeconfig())
	time.Sleep(d)
}
