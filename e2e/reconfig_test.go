//go:build e2e

package e2e

import (
	"context"
	"testing"
	"time"
)

// Tests that run portico with another configuration (the flow table's scenarios with a
// config of their own) restart it (SIGTERM, new KubeProxyConfiguration, start) and restore
// the default configuration when they end.

// restartPortico stops portico, replaces its configuration overrides and starts it again
// (Start waits until it is healthy, i.e. synced once).
func restartPortico(ctx context.Context, t *testing.T, overrides map[string]any) {
	t.Helper()
	if err := suite.Portico.Stop(); err != nil {
		t.Fatalf("stopping portico: %v", err)
	}
	suite.Portico.Reconfigure(overrides)
	if err := suite.Portico.Start(ctx); err != nil {
		t.Fatalf("starting portico with %v: %v", overrides, err)
	}
}

// restoreDefaultConfig makes the test put portico back on its default configuration when
// it ends, whatever configuration it ran last.
func restoreDefaultConfig(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := suite.Portico.Stop(); err != nil {
			t.Errorf("restoring the default configuration: stopping portico: %v", err)
		}
		suite.Portico.Reconfigure(nil)
		if err := suite.Portico.Start(ctx); err != nil {
			t.Errorf("restoring the default configuration: starting portico: %v", err)
		}
	})
}

// harnessSection returns the harness's own keys of the configuration's section (e.g.
// "nftables": its minSyncPeriod): overrides replace top-level keys, so a test that
// overrides a section must carry them over. It never returns nil.
func harnessSection(section string) map[string]any {
	base, _ := suite.Portico.BaseDocument()[section].(map[string]any)
	if base == nil {
		return map[string]any{}
	}
	return base
}
