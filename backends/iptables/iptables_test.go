package iptables

import (
	"flag"
	"path/filepath"
	"testing"

	"github.com/portico-dev/portico/backends/backendtest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// TestGoldenEveryKindOfService renders the test kit's every-kind scenario under each node
// variant and compares the tables and sets with the golden files.
func TestGoldenEveryKindOfService(t *testing.T) {
	for _, tc := range backendtest.NodeVariants {
		t.Run(tc.Name, func(t *testing.T) {
			b, k := fakeBackend(t)
			backendtest.SyncAll(t, b, nil, backendtest.Compile(t, tc.Tweak, backendtest.ObjectFiles...))
			backendtest.CheckGolden(t, filepath.Join("testdata", tc.Name+".golden"), k.dump(), *update)
		})
	}
}
