package nftables

import (
	"context"
	"errors"
	"flag"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/model"
	"github.com/portico-dev/portico/proxier/compile"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// fixtures hold every kind of Service (the test kit's every-kind scenario).
var fixtures = backendtest.ObjectFiles

// fakeBackend returns a backend over two knftables.Fake tables.
func fakeBackend(t *testing.T) (*Backend, map[model.Family]*knftables.Fake) {
	t.Helper()
	fakes := map[model.Family]*knftables.Fake{
		model.IPv4: knftables.NewFake(knftables.IPv4Family, tableName),
		model.IPv6: knftables.NewFake(knftables.IPv6Family, tableName),
	}
	b := New(backends.Options{MasqueradeBit: 14, Families: []model.Family{model.IPv4, model.IPv6}},
		WithInterfaces(
			func(f model.Family) (knftables.Interface, error) { return fakes[f], nil },
			func(_ context.Context, f model.Family) (string, error) { return fakes[f].Dump(), nil },
		))
	return b, fakes
}

// scenario compiles the named fixture files for node-a with the given settings tweak.
func scenario(t *testing.T, tweak func(*compile.NodeConfig), files ...string) *model.State {
	t.Helper()
	return backendtest.Compile(t, tweak, files...)
}

func syncAll(t *testing.T, b backends.Backend, prev, next *model.State) {
	t.Helper()
	backendtest.SyncAll(t, b, prev, next)
}

func TestGoldenEveryKindOfService(t *testing.T) {
	for _, tc := range backendtest.NodeVariants {
		t.Run(tc.Name, func(t *testing.T) {
			b, fakes := fakeBackend(t)
			syncAll(t, b, nil, scenario(t, tc.Tweak, fixtures...))
			got := "# ip\n" + fakes[model.IPv4].Dump() + "# ip6\n" + fakes[model.IPv6].Dump()
			backendtest.CheckGolden(t, filepath.Join("testdata", tc.Name+".golden"), got, *update)
		})
	}
}

// TestPrepare checks that Prepare sets up every configured family without touching the
// tables, and reports a family it cannot set up.
func TestPrepare(t *testing.T) {
	var asked []model.Family
	b := New(backends.Options{Families: []model.Family{model.IPv4, model.IPv6}},
		WithInterfaces(func(f model.Family) (knftables.Interface, error) {
			asked = append(asked, f)
			if f == model.IPv6 {
				return nil, errors.New("no ip6 support")
			}
			return knftables.NewFake(knftFamily(f), tableName), nil
		}, nil))
	err := b.Prepare(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no ip6 support") {
		t.Fatalf("Prepare = %v, want the IPv6 error", err)
	}
	if len(asked) != 2 {
		t.Fatalf("interfaces requested for %v, want both families", asked)
	}
	fs, ok := b.fams[model.IPv4]
	if !ok {
		t.Fatal("IPv4 family not prepared")
	}
	if tx := fs.nft.(*knftables.Fake).LastTransaction; tx != nil {
		t.Errorf("Prepare ran a transaction: %s", tx)
	}
	// The first Sync reuses the prepared family.
	if _, err := b.family(model.IPv4); err != nil || len(asked) != 2 {
		t.Errorf("family(IPv4) = %v after %v requests, want the prepared one", err, asked)
	}
}
