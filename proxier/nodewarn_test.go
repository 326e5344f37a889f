package proxier

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"

	"github.com/portico-dev/portico/model"
	"github.com/portico-dev/portico/proxier/compile"
	"github.com/portico-dev/portico/proxier/health"
)

// problemKeys returns the keys of the problems of a node with cfg, node and the
// interface addresses addrs.
func problemKeys(cfg compile.NodeConfig, node *corev1.Node, addrs []netip.Addr) []string {
	info := compile.ResolveNode(cfg, node, addrs, nil)
	var keys []string
	for _, p := range nodeProblems(cfg, node, info) {
		keys = append(keys, p.key)
	}
	return keys
}

func TestNodeProblems(t *testing.T) {
	v4only := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback(), nodeIPv4, netip.MustParseAddr("fe80::1")}
	withCfg := func(change func(*compile.NodeConfig)) compile.NodeConfig {
		cfg := testNodeConfig()
		change(&cfg)
		return cfg
	}
	withNode := func(change func(*corev1.Node)) *corev1.Node {
		n := newNode()
		change(n)
		return n
	}
	noV6Address := func(n *corev1.Node) { n.Status.Addresses = n.Status.Addresses[:1] }
	for _, tc := range []struct {
		name  string
		cfg   compile.NodeConfig
		node  *corev1.Node
		addrs []netip.Addr
		want  []string
	}{
		{"all well", testNodeConfig(), newNode(), fakeAddresses2(), nil},
		{"no Node object", testNodeConfig(), nil, fakeAddresses2(), []string{"node"}},
		{"no IPv6 node address with primary", testNodeConfig(), withNode(noV6Address), fakeAddresses2(), []string{"address/IPv6"}},
		{"no IPv6 node address, primary not used", withCfg(func(c *compile.NodeConfig) { c.NodePorts = compile.NodePortSelector{} }),
			withNode(noV6Address), fakeAddresses2(), nil},
		{"no IPv6 node address, bindAddress is one", withCfg(func(c *compile.NodeConfig) { c.BindAddress = nodeIPv6 }),
			withNode(noV6Address), fakeAddresses2(), nil},
		{"no IPv6 node address on an IPv4 node", testNodeConfig(), withNode(noV6Address), v4only, nil},
		{"no node address at all", testNodeConfig(), withNode(func(n *corev1.Node) { n.Status.Addresses = nil }), fakeAddresses2(),
			[]string{"address/IPv4", "address/IPv6"}},
		{"empty clusterCIDR", withCfg(func(c *compile.NodeConfig) { c.LocalTraffic.ClusterCIDRs = nil }), newNode(), fakeAddresses2(),
			[]string{"local/IPv4", "local/IPv6"}},
		{"IPv4 clusterCIDR only", withCfg(func(c *compile.NodeConfig) { c.LocalTraffic.ClusterCIDRs = c.LocalTraffic.ClusterCIDRs[:1] }),
			newNode(), fakeAddresses2(), []string{"local/IPv6"}},
		{"IPv4 clusterCIDR only on an IPv4 node", withCfg(func(c *compile.NodeConfig) { c.LocalTraffic.ClusterCIDRs = c.LocalTraffic.ClusterCIDRs[:1] }),
			withNode(noV6Address), v4only, nil},
		{"NodeCIDR with pod CIDRs", withCfg(func(c *compile.NodeConfig) { c.LocalTraffic = compile.LocalTrafficConfig{Mode: "NodeCIDR"} }),
			newNode(), fakeAddresses2(), nil},
		{"NodeCIDR without pod CIDRs", withCfg(func(c *compile.NodeConfig) { c.LocalTraffic = compile.LocalTrafficConfig{Mode: "NodeCIDR"} }),
			withNode(func(n *corev1.Node) { n.Spec.PodCIDRs = nil }), fakeAddresses2(), []string{"local/IPv4", "local/IPv6"}},
		{"BridgeInterface", withCfg(func(c *compile.NodeConfig) {
			c.LocalTraffic = compile.LocalTrafficConfig{Mode: "BridgeInterface", BridgeInterface: "cni0"}
		}), newNode(), fakeAddresses2(), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := problemKeys(tc.cfg, tc.node, tc.addrs); !slices.Equal(got, tc.want) {
				t.Errorf("problems %q, want %q", got, tc.want)
			}
		})
	}
}

// fakeAddresses2 is fakeAddresses without its error.
func fakeAddresses2() []netip.Addr {
	addrs, _ := fakeAddresses()
	return addrs
}

// TestNodeWarnerLogsOnce: a problem is logged when it appears, not again while it lasts,
// and again if it comes back after it was gone.
func TestNodeWarnerLogsOnce(t *testing.T) {
	logger, logs := bufferLogger(t)
	w := &nodeWarner{}
	missing := []nodeProblem{{key: "node", msg: "Warning: the Node object is missing"}}
	for range 3 {
		w.warn(logger, missing)
	}
	if n := strings.Count(logs.String(), "the Node object is missing"); n != 1 {
		t.Errorf("logged %d times while it lasted, want once:\n%s", n, logs)
	}
	w.warn(logger, nil)
	w.warn(logger, nil)
	if n := strings.Count(logs.String(), "reported earlier is gone"); n != 1 {
		t.Errorf("its end logged %d times, want once:\n%s", n, logs)
	}
	w.warn(logger, missing)
	if n := strings.Count(logs.String(), "the Node object is missing"); n != 2 {
		t.Errorf("logged %d times in all, want twice (it came back):\n%s", n, logs)
	}
}

func bufferLogger(t *testing.T) (klog.Logger, ktesting.Buffer) {
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.BufferLogs(true)))
	return logger, logger.GetSink().(ktesting.Underlier).GetBuffer()
}

func TestHealthBinds(t *testing.T) {
	cfg := testNodeConfig()
	for _, tc := range []struct {
		name      string
		selector  compile.NodePortSelector
		node      *corev1.Node
		addrs     []netip.Addr
		wantBinds map[model.Family]health.Bind
	}{
		{"primary", compile.NodePortSelector{Primary: true}, newNode(), fakeAddresses2(), map[model.Family]health.Bind{
			model.IPv4: {Addrs: []netip.Addr{nodeIPv4}}, model.IPv6: {Addrs: []netip.Addr{nodeIPv6}},
		}},
		{"every address", compile.NodePortSelector{}, newNode(), fakeAddresses2(), map[model.Family]health.Bind{
			model.IPv4: {Any: true}, model.IPv6: {Any: true},
		}},
		{"a CIDR of one family", compile.NodePortSelector{CIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}}, newNode(), fakeAddresses2(),
			map[model.Family]health.Bind{model.IPv4: {Addrs: []netip.Addr{netip.MustParseAddr("10.244.1.1")}}, model.IPv6: {}}},
		{"a primary IP the node does not have", compile.NodePortSelector{Primary: true}, newNode(),
			[]netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")},
			map[model.Family]health.Bind{model.IPv4: {}, model.IPv6: {}}},
		{"a node without IPv6", compile.NodePortSelector{}, newNode(), []netip.Addr{nodeIPv4},
			map[model.Family]health.Bind{model.IPv4: {Any: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			c.NodePorts = tc.selector
			got := healthBinds(compile.ResolveNode(c, tc.node, tc.addrs, nil))
			if !reflect.DeepEqual(got, tc.wantBinds) {
				t.Errorf("binds %v, want %v", got, tc.wantBinds)
			}
		})
	}
}

// fakeBinder is a ServiceHealthSyncer that records where it is told to listen.
type fakeBinder struct {
	mu    sync.Mutex
	binds []map[model.Family]health.Bind
}

func (f *fakeBinder) Sync(context.Context, map[model.ServiceName]health.ServiceEntry) error {
	return nil
}

func (f *fakeBinder) SetBind(b map[model.Family]health.Bind) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.binds = append(f.binds, b)
}

func (f *fakeBinder) last() map[model.Family]health.Bind {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.binds) == 0 {
		return nil
	}
	return f.binds[len(f.binds)-1]
}

// TestNodeInfoWarnsAndBinds: the proxier warns once that its Node object is missing and
// listens for health checks on no address while "primary" selects none; once the Node
// appears, the warning is withdrawn and the health checks move to its primary IPs.
func TestNodeInfoWarnsAndBinds(t *testing.T) {
	logger, logs := bufferLogger(t)
	ctx, cancel := context.WithCancel(klog.NewContext(context.Background(), logger))
	client := fake.NewClientset(newService("web", "10.96.0.10", svcPort("http", corev1.ProtocolTCP, 80)))
	binder := &fakeBinder{}
	backend := &recordingBackend{}
	p := New(clientsetSources(client, nodeName), backend, Options{
		Node: testNodeConfig(), MinSyncPeriod: fastSync, SyncPeriod: time.Hour,
		Addresses: fakeAddresses, Conntrack: &fakeConntrack{}, Recorder: newFakeRecorder(), ServiceHealth: binder,
	})
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	const missing = "the Node object of this node does not exist"
	eventually(t, "the missing Node warning", func() bool { return strings.Contains(logs.String(), missing) }, logs.String)
	none := map[model.Family]health.Bind{model.IPv4: {}, model.IPv6: {}}
	eventually(t, "health checks bound nowhere", func() bool { return reflect.DeepEqual(binder.last(), none) },
		func() string { return "binds: " + stringOf(binder.last()) })

	e := &testEnv{t: t, client: client}
	e.create(newService("api", "10.96.0.11", svcPort("http", corev1.ProtocolTCP, 80))) // one more sync
	e.create(newNode())
	want := map[model.Family]health.Bind{model.IPv4: {Addrs: []netip.Addr{nodeIPv4}}, model.IPv6: {Addrs: []netip.Addr{nodeIPv6}}}
	eventually(t, "health checks bound to the primary IPs", func() bool { return reflect.DeepEqual(binder.last(), want) },
		func() string { return "binds: " + stringOf(binder.last()) })
	eventually(t, "the warning withdrawn", func() bool { return strings.Contains(logs.String(), "reported earlier is gone") }, logs.String)
	if n := strings.Count(logs.String(), missing); n != 1 {
		t.Errorf("the missing Node was reported %d times, want once:\n%s", n, logs)
	}
}

func stringOf(b map[model.Family]health.Bind) string { return fmt.Sprint(b) }
