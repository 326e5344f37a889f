package nftables

import (
	"context"
	"errors"
	"flag"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/model"
	"github.com/portico-dev/portico/proxier/compile"
	"github.com/portico-dev/portico/proxier/fixture"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// fixtures are the compile package's fixtures: one scenario holding every kind of Service.
var fixtures = []string{
	"clusterip.yaml", "nodeport.yaml", "loadbalancer.yaml", "externalips.yaml",
	"skipped.yaml", "policies.yaml", "dualstack.yaml", "malformed.yaml",
}

const compileTestdata = "../../proxier/compile/testdata"

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

// scenario compiles the named fixture files (paths relative to the compile testdata)
// with the given node config tweak.
func scenario(t *testing.T, tweak func(*compile.NodeConfig), files ...string) *model.State {
	t.Helper()
	paths := []string{filepath.Join(compileTestdata, "node.yaml")}
	for _, f := range files {
		if !strings.Contains(f, "/") {
			f = filepath.Join(compileTestdata, f)
		}
		paths = append(paths, f)
	}
	objs, err := fixture.Load(paths...)
	if err != nil {
		t.Fatal(err)
	}
	cfg := compile.NodeConfig{
		Name:      "node-a",
		Families:  []model.Family{model.IPv4, model.IPv6},
		NodePorts: compile.NodePortSelector{Primary: true},
		LocalTraffic: compile.LocalTrafficConfig{Mode: "ClusterCIDR", ClusterCIDRs: []netip.Prefix{
			netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:244::/44")}},
	}
	if tweak != nil {
		tweak(&cfg)
	}
	node := compile.ResolveNode(cfg, objs.Nodes[0], []netip.Addr{netip.MustParseAddr("192.168.50.10"), netip.MustParseAddr("fd00:50::10")})
	var names []model.ServiceName
	for _, s := range objs.Services {
		names = append(names, model.ServiceName{Namespace: s.Namespace, Name: s.Name})
	}
	state, _ := compile.NewCompiler().Update(node, names, func(n model.ServiceName) (*corev1.Service, []*discoveryv1.EndpointSlice) {
		return objs.Service(n.Namespace, n.Name), objs.SlicesFor(n.Namespace, n.Name)
	})
	return state
}

func syncAll(t *testing.T, b *Backend, prev, next *model.State) {
	t.Helper()
	for _, tbl := range next.Tables {
		var before *model.Table
		if prev != nil {
			before = prev.Table(tbl.Family())
		}
		if err := b.Sync(context.Background(), tbl, model.Compare(before, tbl)); err != nil {
			t.Fatalf("sync %s: %v", tbl.Family(), err)
		}
	}
}

// nodeVariants are the node settings every-kind-of-Service scenarios run under (the golden
// files here, the real kernel in kernel_test.go).
var nodeVariants = []struct {
	name  string
	tweak func(*compile.NodeConfig)
}{
	{"all", nil},
	{"all-nodeports-masquerade-all", func(c *compile.NodeConfig) {
		c.NodePorts = compile.NodePortSelector{All: true}
		c.MasqueradeAll = true
	}},
	{"bridge-detect", func(c *compile.NodeConfig) {
		c.LocalTraffic = compile.LocalTrafficConfig{Mode: "BridgeInterface", BridgeInterface: "cni0"}
	}},
}

func TestGoldenEveryKindOfService(t *testing.T) {
	for _, tc := range nodeVariants {
		t.Run(tc.name, func(t *testing.T) {
			b, fakes := fakeBackend(t)
			syncAll(t, b, nil, scenario(t, tc.tweak, fixtures...))
			got := "# ip\n" + fakes[model.IPv4].Dump() + "# ip6\n" + fakes[model.IPv6].Dump()
			fixture.CheckGolden(t, filepath.Join("testdata", tc.name+".golden"), got, *update)
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
