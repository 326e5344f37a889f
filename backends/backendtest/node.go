package backendtest

import (
	"context"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/e2e/harness/netns"
	"github.com/portico-dev/portico/model"
	"github.com/portico-dev/portico/proxier/compile"
)

// NodeName is the node every test compiles for: node-a of the e2e topology.
const NodeName = netns.NodeA

// Topology is the e2e topology that the flow table and the fixtures describe (the run
// prefix does not matter to addresses).
func Topology() netns.Spec { return netns.DefaultSpec("pc000000") }

// NodeAddrs returns the addresses node-a's interfaces hold in the e2e topology, as portico
// reads them there (link-local IPv6 addresses excepted): eth0, the pod bridge, the link
// to the API server and loopback.
func NodeAddrs() []netip.Addr {
	spec := Topology()
	out := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback(), spec.API.NodeAddr.Addr()}
	for _, n := range spec.Nodes {
		if n.Name == NodeName {
			out = append(out, n.IPv4.Addr(), n.IPv6.Addr(), n.BridgeIPv4.Addr(), n.BridgeIPv6.Addr())
		}
	}
	return out
}

// ClusterCIDRs are the pod ranges of the e2e cluster (its clusterCIDR setting).
var ClusterCIDRs = []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:244::/44")}

// NodeA returns the compile settings of node-a as the e2e harness configures portico:
// both families, NodePorts on the primary addresses, pods recognised by clusterCIDR.
func NodeA() compile.NodeConfig {
	return compile.NodeConfig{
		Name:         NodeName,
		Families:     []model.Family{model.IPv4, model.IPv6},
		NodePorts:    compile.NodePortSelector{Primary: true},
		LocalTraffic: compile.LocalTrafficConfig{Mode: "ClusterCIDR", ClusterCIDRs: ClusterCIDRs},
	}
}

// NodeVariant is a change of node-a's settings that the every-kind scenario also runs
// under.
type NodeVariant struct {
	// Name names the variant (and its golden files).
	Name string
	// Tweak changes the settings; nil keeps NodeA's.
	Tweak func(*compile.NodeConfig)
}

// NodeVariants are the node settings every backend renders the every-kind scenario under.
var NodeVariants = []NodeVariant{
	{Name: "all"},
	{Name: "all-nodeports-masquerade-all", Tweak: func(c *compile.NodeConfig) {
		c.NodePorts = compile.NodePortSelector{All: true}
		c.MasqueradeAll = true
	}},
	{Name: "bridge-detect", Tweak: func(c *compile.NodeConfig) {
		c.LocalTraffic = compile.LocalTrafficConfig{Mode: "BridgeInterface", BridgeInterface: "cni0"}
	}},
	{Name: "no-detect-localhost-nodeports", Tweak: func(c *compile.NodeConfig) {
		c.LocalTraffic = compile.LocalTrafficConfig{}
		c.NodePorts = compile.NodePortSelector{}
		c.LocalhostNodePorts = true
	}},
}

// Compile compiles the fixture files (node.yaml first) for node-a with its settings
// changed by tweak (nil for none).
func Compile(t testing.TB, tweak func(*compile.NodeConfig), files ...string) *model.State {
	t.Helper()
	objs, err := LoadObjects(files...)
	if err != nil {
		t.Fatal(err)
	}
	cfg := NodeA()
	if tweak != nil {
		tweak(&cfg)
	}
	state, _ := CompileObjects(cfg, objs)
	return state
}

// CompileObjects compiles every Service of objs for the node cfg describes, with node-a's
// addresses, the first Node object of objs and the ServiceCIDRs of objs, and returns the
// compiler's problems beside the state.
func CompileObjects(cfg compile.NodeConfig, objs *Objects) (*model.State, []error) {
	var node *corev1.Node
	if len(objs.Nodes) > 0 {
		node = objs.Nodes[0]
	}
	info := compile.ResolveNode(cfg, node, NodeAddrs(), objs.ServiceCIDRPrefixes())
	var names []model.ServiceName
	for _, s := range objs.Services {
		names = append(names, model.ServiceName{Namespace: s.Namespace, Name: s.Name})
	}
	return compile.NewCompiler().Update(info, names, func(n model.ServiceName) (*corev1.Service, []*discoveryv1.EndpointSlice) {
		return objs.Service(n.Namespace, n.Name), objs.SlicesFor(n.Namespace, n.Name)
	})
}

// SyncAll syncs every table of next into b, each with the Diff from prev's table of its
// family (nil prev: a first sync), and fails the test on an error.
func SyncAll(t testing.TB, b backends.Backend, prev, next *model.State) {
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
