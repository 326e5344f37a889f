package proxier

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
	"k8s.io/utils/ptr"

	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/model"
	"github.com/portico-dev/portico/proxier/compile"
)

const (
	testNS   = "default"
	nodeName = "node-a"
	// fastSync is the MinSyncPeriod of most tests: changes land quickly.
	fastSync = 10 * time.Millisecond
	// quietWindow is how long a test watches for a sync that must not happen.
	quietWindow = 300 * time.Millisecond
)

func testNodeConfig() compile.NodeConfig {
	return compile.NodeConfig{
		Name:      nodeName,
		Families:  []model.Family{model.IPv4, model.IPv6},
		NodePorts: compile.NodePortSelector{Primary: true},
		LocalTraffic: compile.LocalTrafficConfig{
			Mode:         "ClusterCIDR",
			ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:244::/44")},
		},
	}
}

// testEnv is a running Proxier fed by a fake clientset.
type testEnv struct {
	t       *testing.T
	client  *fake.Clientset
	backend *recordingBackend
	rec     *fakeRecorder
	ct      *fakeConntrack
	p       *Proxier
	logs    ktesting.Buffer
}

// startEnv starts a Proxier over a fake clientset holding objs and waits for the first
// sync of both families.
func startEnv(t *testing.T, minSync time.Duration, objs ...runtime.Object) *testEnv {
	t.Helper()
	return startEnvWith(t, fake.NewClientset(objs...), minSync)
}

// startEnvWith is startEnv with a given clientset.
func startEnvWith(t *testing.T, client *fake.Clientset, minSync time.Duration) *testEnv {
	t.Helper()
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.BufferLogs(true)))
	ctx, cancel := context.WithCancel(klog.NewContext(context.Background(), logger))
	e := &testEnv{
		t:       t,
		client:  client,
		backend: &recordingBackend{},
		rec:     newFakeRecorder(),
		ct:      &fakeConntrack{},
		logs:    logger.GetSink().(ktesting.Underlier).GetBuffer(),
	}
	e.rec.backendLen = e.backend.Len
	e.p = New(clientsetSources(e.client, nodeName), e.backend, Options{
		Node:          testNodeConfig(),
		MinSyncPeriod: minSync,
		SyncPeriod:    time.Hour, // only changes trigger syncs
		Addresses:     fakeAddresses,
		Conntrack:     e.ct,
		Recorder:      e.rec,
	})
	e.p.runner.retryMin = 100 * time.Millisecond
	e.p.runner.retryMax = 400 * time.Millisecond
	runInBackground(t, ctx, cancel, e.p)
	e.backend.WaitFor(t, "the first sync of both families", func(calls []syncCall) bool {
		return slices.ContainsFunc(calls, func(c syncCall) bool { return c.Family == model.IPv4 }) &&
			slices.ContainsFunc(calls, func(c syncCall) bool { return c.Family == model.IPv6 })
	})
	e.waitSyncDone(0)
	// Requests made by the initial informer events may still be queued in the runner and
	// cause one more (empty) sync after MinSyncPeriod: let it pass.
	e.settle(minSync + 100*time.Millisecond)
	return e
}

// settle waits until no sync has completed for d.
func (e *testEnv) settle(d time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	gen, since := e.rec.Generation(), time.Now()
	for time.Since(since) < d {
		if time.Now().After(deadline) {
			e.t.Fatal("syncs keep running")
		}
		time.Sleep(5 * time.Millisecond)
		if g := e.rec.Generation(); g != gen {
			gen, since = g, time.Now()
		}
	}
}

// waitSyncDone waits until the sync that made backend call i (counting from 0) has
// completed, so that every call of that sync is recorded.
func (e *testEnv) waitSyncDone(i int) {
	e.t.Helper()
	eventually(e.t, "the sync to complete", func() bool { return e.rec.CallsAtGeneration() > i }, nil)
}

// waitCall waits for a successful call of family fam, made after the first `after`
// calls, that satisfies cond. It returns that call and every call made after `after` up
// to the end of the sync that made it.
func (e *testEnv) waitCall(what string, fam model.Family, after int, cond func(syncCall) bool) (syncCall, []syncCall) {
	e.t.Helper()
	var idx int
	var found syncCall
	e.backend.WaitFor(e.t, what, func(calls []syncCall) bool {
		for i := after; i < len(calls); i++ {
			if c := calls[i]; c.Family == fam && c.Err == nil && cond(c) {
				idx, found = i, c
				return true
			}
		}
		return false
	})
	e.waitSyncDone(idx)
	return found, e.backend.Calls()[after:e.rec.CallsAtGeneration()]
}

// quiet asserts that nothing is queued and nothing synced during quietWindow.
func (e *testEnv) quiet(what string) {
	e.t.Helper()
	q, gen := e.rec.Queued(), e.rec.Generation()
	e.backend.Quiet(e.t, what, quietWindow)
	if got := e.rec.Queued(); got != q {
		e.t.Fatalf("%s: %d change(s) were queued, want none", what, got-q)
	}
	if got := e.rec.Generation(); got != gen {
		e.t.Fatalf("%s: %d sync(s) ran, want none", what, got-gen)
	}
}

func (e *testEnv) create(obj runtime.Object) {
	e.t.Helper()
	ctx := context.Background()
	var err error
	switch o := obj.(type) {
	case *corev1.Service:
		_, err = e.client.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *discoveryv1.EndpointSlice:
		_, err = e.client.DiscoveryV1().EndpointSlices(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *corev1.Node:
		_, err = e.client.CoreV1().Nodes().Create(ctx, o, metav1.CreateOptions{})
	case *networkingv1.ServiceCIDR:
		_, err = e.client.NetworkingV1().ServiceCIDRs().Create(ctx, o, metav1.CreateOptions{})
	default:
		err = fmt.Errorf("unsupported %T", obj)
	}
	if err != nil {
		e.t.Fatalf("creating: %v", err)
	}
}

func (e *testEnv) updateService(name string, change func(*corev1.Service)) {
	e.t.Helper()
	ctx := context.Background()
	svc, err := e.client.CoreV1().Services(testNS).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	change(svc)
	if _, err := e.client.CoreV1().Services(testNS).Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *testEnv) updateSlice(name string, change func(*discoveryv1.EndpointSlice)) {
	e.t.Helper()
	ctx := context.Background()
	s, err := e.client.DiscoveryV1().EndpointSlices(testNS).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	change(s)
	if _, err := e.client.DiscoveryV1().EndpointSlices(testNS).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *testEnv) updateNode(status bool, change func(*corev1.Node)) {
	e.t.Helper()
	ctx := context.Background()
	n, err := e.client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	change(n)
	if status {
		_, err = e.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	} else {
		_, err = e.client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
	}
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *testEnv) deleteService(name string) {
	e.t.Helper()
	if err := e.client.CoreV1().Services(testNS).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// Object builders.

func newNode() *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:   nodeName,
			Labels: map[string]string{corev1.LabelHostname: nodeName, corev1.LabelTopologyZone: "zone-a"},
		},
		Spec: corev1.NodeSpec{PodCIDRs: []string{"10.244.1.0/24", "fd00:244:1::/64"}},
		Status: corev1.NodeStatus{
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: nodeIPv4.String()},
				{Type: corev1.NodeInternalIP, Address: nodeIPv6.String()},
				{Type: corev1.NodeHostName, Address: nodeName},
			},
			Conditions: []corev1.NodeCondition{{
				Type: corev1.NodeReady, Status: corev1.ConditionTrue,
				LastHeartbeatTime: metav1.NewTime(time.Unix(1_700_000_000, 0)),
			}},
		},
	}
}

func newService(name, clusterIP string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS},
		Spec: corev1.ServiceSpec{
			Type:       corev1.ServiceTypeClusterIP,
			ClusterIP:  clusterIP,
			ClusterIPs: []string{clusterIP},
			Ports:      ports,
		},
	}
}

func svcPort(name string, proto corev1.Protocol, port int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Protocol: proto, Port: port}
}

// newSlice returns an IPv4 EndpointSlice of Service svc with one port and one endpoint
// (on node-b unless the address is in node-a's pod CIDR 10.244.1.0/24) per address.
func newSlice(name, svc string, port discoveryv1.EndpointPort, addrs ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: testNS,
			Labels: map[string]string{discoveryv1.LabelServiceName: svc},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{port},
	}
	setEndpoints(s, addrs...)
	return s
}

func setEndpoints(s *discoveryv1.EndpointSlice, addrs ...string) {
	s.Endpoints = nil
	for _, a := range addrs {
		node := "node-b"
		if strings.HasPrefix(a, "10.244.1.") {
			node = nodeName
		}
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, NodeName: ptr.To(node)})
	}
}

func epPort(name string, proto corev1.Protocol, port int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptr.To(name), Protocol: ptr.To(proto), Port: ptr.To(port)}
}

func portName(svc, port string, proto model.Protocol) model.ServicePortName {
	return model.ServicePortName{Namespace: testNS, Name: svc, Port: port, Protocol: proto}
}

// servicePort returns the port n of the call's table, failing the test when it is missing.
func servicePort(t *testing.T, c syncCall, n model.ServicePortName) *model.ServicePort {
	t.Helper()
	sp, ok := c.Table.Get(n)
	if !ok {
		t.Fatalf("%s table has no %s:\n%s", c.Family, n, c.Text)
	}
	return sp
}

func endpointStrings(eps []model.Endpoint) []string {
	out := make([]string, len(eps))
	for i, e := range eps {
		out[i] = e.String()
	}
	return out
}

func hasEndpoint(c syncCall, n model.ServicePortName, addrPort string) bool {
	sp, ok := c.Table.Get(n)
	return ok && slices.Contains(endpointStrings(sp.Cluster), addrPort)
}

// onlyNames asserts that every call in calls changed (and removed) nothing but ports of
// the Services in allowed, and that at least one call did something.
func onlyNames(t *testing.T, calls []syncCall, allowed ...string) {
	t.Helper()
	if len(calls) == 0 {
		t.Fatal("no sync call")
	}
	for _, c := range calls {
		for _, n := range slices.Concat(c.Diff.Changed, c.Diff.Removed) {
			if n.Namespace != testNS || !slices.Contains(allowed, n.Name) {
				t.Errorf("call %s names %s; want only ports of %v", c, n, allowed)
			}
		}
		if c.Diff.Full {
			t.Errorf("call %s is full; want a partial sync", c)
		}
	}
}

// goldenTables splits the table sections out of a one-step golden file, by family.
func goldenTables(t *testing.T, path string) map[model.Family]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[model.Family]string{}
	var cur *strings.Builder
	var fam model.Family
	flush := func() {
		if cur != nil {
			out[fam] = cur.String()
		}
		cur = nil
	}
	for _, line := range strings.SplitAfter(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, "table IPv4 "):
			flush()
			cur, fam = &strings.Builder{}, model.IPv4
		case strings.HasPrefix(line, "table IPv6 "):
			flush()
			cur, fam = &strings.Builder{}, model.IPv6
		case !strings.HasPrefix(line, " "):
			flush()
		}
		if cur != nil {
			cur.WriteString(line)
		}
	}
	flush()
	if len(out) != 2 {
		t.Fatalf("%s: found tables of %d families, want 2", path, len(out))
	}
	return out
}

// TestFirstSyncMatchesGolden starts the controller over each one-step compile fixture:
// the first sync of each family must be full and carry exactly the table the compile
// golden file holds, so informers, transform and controller lose nothing.
func TestFirstSyncMatchesGolden(t *testing.T) {
	testdata := filepath.Join("compile", "testdata")
	for _, name := range []string{"clusterip", "nodeport", "loadbalancer", "externalips", "skipped", "policies", "dualstack", "malformed"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			objs, err := backendtest.LoadObjects(name + ".yaml")
			if err != nil {
				t.Fatal(err)
			}
			want := goldenTables(t, filepath.Join(testdata, name+".golden"))
			e := startEnv(t, fastSync, objs.All...)
			calls := e.backend.Calls()
			for _, fam := range []model.Family{model.IPv4, model.IPv6} {
				i := slices.IndexFunc(calls, func(c syncCall) bool { return c.Family == fam })
				c := calls[i]
				if !c.Diff.Full || c.Err != nil {
					t.Errorf("first %s call: %s; want a successful full sync", fam, c)
				}
				if !slices.Equal(c.Diff.Changed, c.Table.Names()) || len(c.Diff.Removed) != 0 {
					t.Errorf("first %s call: %s; want every port changed and none removed", fam, c)
				}
				if c.Text != want[fam] {
					t.Errorf("first %s table differs from the golden file:\n--- got\n%s--- want\n%s", fam, c.Text, want[fam])
				}
			}
			if name == "malformed" {
				// Four problems; the slice ones are reported by the IPv4 merge only
				// because the Service is single-stack.
				if got := e.rec.Invalid("service"); got != 2 {
					t.Errorf("IncInvalid(service) = %d, want 2", got)
				}
				if got := e.rec.Invalid("endpointslice"); got != 2 {
					t.Errorf("IncInvalid(endpointslice) = %d, want 2", got)
				}
			}
		})
	}
}

// TestBackendPreparedBeforeFirstSync checks that the proxier runs a backends.Preparer's
// start-up work, and that the first Sync waits for it to finish (the recording backend's
// Prepare outlasts the caches filling).
func TestBackendPreparedBeforeFirstSync(t *testing.T) {
	t.Parallel()
	e := startEnv(t, fastSync)
	calls := e.backend.WaitFor(t, "a first sync", func(c []syncCall) bool { return len(c) > 0 })
	prepared := e.backend.Prepared()
	if prepared.IsZero() {
		t.Fatal("Prepare was never called")
	}
	if prepared.After(calls[0].At) {
		t.Errorf("Prepare at %v, after the first Sync at %v", prepared, calls[0].At)
	}
}

// TestServiceLifecycle follows one Service and a second one through updates, deletion and
// a change to ExternalName; each partial sync names only the ports that changed.
func TestServiceLifecycle(t *testing.T) {
	t.Parallel()
	web := portName("web", "http", model.TCP)
	e := startEnv(t, fastSync,
		newNode(),
		newService("web", "10.96.0.10", svcPort("http", corev1.ProtocolTCP, 80)),
		newSlice("web-1", "web", epPort("http", corev1.ProtocolTCP, 8080), "10.244.1.10", "10.244.2.10"),
	)

	// The first sync of each family is full, the family with fewer ports first (the empty
	// IPv6 one); IPv4 holds the port and its endpoints.
	calls := e.backend.Calls()
	if len(calls) != 2 || calls[0].Family != model.IPv6 || calls[1].Family != model.IPv4 {
		t.Fatalf("first sync: want one IPv6 then one IPv4 call, got\n%s", formatCalls(calls))
	}
	v4, v6 := calls[1], calls[0]
	for _, c := range calls {
		if !c.Diff.Full {
			t.Errorf("first call %s is not full", c)
		}
	}
	sp := servicePort(t, v4, web)
	if got, want := endpointStrings(sp.Cluster), []string{"10.244.1.10:8080", "10.244.2.10:8080"}; !slices.Equal(got, want) {
		t.Errorf("web endpoints = %v, want %v", got, want)
	}
	if !strings.Contains(v4.Text, "frontend ClusterIP 10.96.0.10:80") || !strings.Contains(v4.Text, "10.244.1.10:8080 (local,ready,serving)") {
		t.Errorf("IPv4 table text lacks the frontend or the local endpoint:\n%s", v4.Text)
	}
	if !slices.Equal(v4.Diff.Changed, []model.ServicePortName{web}) {
		t.Errorf("first IPv4 diff changed %v, want [%s]", v4.Diff.Changed, web)
	}
	if v6.Table.Len() != 0 {
		t.Errorf("IPv6 table of a single-stack IPv4 Service is not empty:\n%s", v6.Text)
	}
	if got := e.ct.Calls(); len(got) != 0 {
		t.Errorf("the first sync cleared conntrack flows: %v", got)
	}

	t.Run("endpoint added", func(t *testing.T) {
		n := e.backend.Len()
		e.updateSlice("web-1", func(s *discoveryv1.EndpointSlice) {
			setEndpoints(s, "10.244.1.10", "10.244.2.10", "10.244.2.11")
		})
		c, calls := e.waitCall("the new endpoint", model.IPv4, n, func(c syncCall) bool { return hasEndpoint(c, web, "10.244.2.11:8080") })
		if len(calls) != 1 {
			t.Errorf("want exactly one (IPv4) call, got\n%s", formatCalls(calls))
		}
		if c.Diff.Full || !slices.Equal(c.Diff.Changed, []model.ServicePortName{web}) || len(c.Diff.Removed) != 0 {
			t.Errorf("diff %s; want a partial sync changing only %s", c, web)
		}
	})

	t.Run("annotation-only update", func(t *testing.T) {
		e.updateService("web", func(s *corev1.Service) { s.Annotations = map[string]string{"note": "ignored"} })
		e.quiet("an annotation-only Service update")
	})

	db := portName("db", "pg", model.TCP)
	t.Run("second service", func(t *testing.T) {
		n := e.backend.Len()
		e.create(newService("db", "10.96.0.20", svcPort("pg", corev1.ProtocolTCP, 5432)))
		e.create(newSlice("db-1", "db", epPort("pg", corev1.ProtocolTCP, 5432), "10.244.2.20"))
		c, calls := e.waitCall("the db Service", model.IPv4, n, func(c syncCall) bool { return hasEndpoint(c, db, "10.244.2.20:5432") })
		onlyNames(t, calls, "db")
		if !slices.Contains(c.Diff.Changed, db) {
			t.Errorf("diff %s does not name %s", c, db)
		}
		if got := servicePort(t, c, web); !slices.Contains(endpointStrings(got.Cluster), "10.244.2.11:8080") {
			t.Errorf("web lost its endpoints: %v", got.Cluster)
		}
	})

	t.Run("delete", func(t *testing.T) {
		n := e.backend.Len()
		e.deleteService("db")
		c, calls := e.waitCall("db to be removed", model.IPv4, n, func(c syncCall) bool {
			_, ok := c.Table.Get(db)
			return !ok
		})
		onlyNames(t, calls, "db")
		if !slices.Equal(c.Diff.Removed, []model.ServicePortName{db}) || len(c.Diff.Changed) != 0 {
			t.Errorf("diff %s; want only %s removed", c, db)
		}
	})

	t.Run("to ExternalName", func(t *testing.T) {
		n := e.backend.Len()
		e.updateService("web", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeExternalName
			s.Spec.ExternalName = "web.example.com"
			s.Spec.ClusterIP, s.Spec.ClusterIPs = "", nil
		})
		c, calls := e.waitCall("web to be removed", model.IPv4, n, func(c syncCall) bool {
			_, ok := c.Table.Get(web)
			return !ok
		})
		onlyNames(t, calls, "web")
		if !slices.Equal(c.Diff.Removed, []model.ServicePortName{web}) {
			t.Errorf("diff %s; want %s removed", c, web)
		}
		if c.Table.Len() != 0 || strings.Contains(c.Text, "web") {
			t.Errorf("rules remain for the ExternalName Service:\n%s", c.Text)
		}
	})
}

// TestServiceProxyName checks that Services handed to another proxy are left alone.
func TestServiceProxyName(t *testing.T) {
	t.Parallel()
	e := startEnv(t, fastSync, newNode())
	other := newService("other", "10.96.0.30", svcPort("http", corev1.ProtocolTCP, 80))
	other.Labels = map[string]string{compile.LabelServiceProxyName: "other"}
	mine := newService("mine", "10.96.0.31", svcPort("http", corev1.ProtocolTCP, 80))
	mine.Labels = map[string]string{compile.LabelServiceProxyName: compile.ProxyName}
	otherPort, minePort := portName("other", "http", model.TCP), portName("mine", "http", model.TCP)

	n := e.backend.Len()
	e.create(other)
	e.create(newSlice("other-1", "other", epPort("http", corev1.ProtocolTCP, 80), "10.244.2.30"))
	e.create(mine)
	e.create(newSlice("mine-1", "mine", epPort("http", corev1.ProtocolTCP, 80), "10.244.2.31"))
	_, calls := e.waitCall("the portico Service", model.IPv4, n, func(c syncCall) bool { return hasEndpoint(c, minePort, "10.244.2.31:80") })
	onlyNames(t, calls, "mine")
	for _, c := range calls {
		if _, ok := c.Table.Get(otherPort); ok {
			t.Errorf("the Service labelled for another proxy got rules:\n%s", c.Text)
		}
	}

	// Handing it to portico serves it; handing it back removes it again.
	n = e.backend.Len()
	e.updateService("other", func(s *corev1.Service) { s.Labels[compile.LabelServiceProxyName] = compile.ProxyName })
	_, calls = e.waitCall("the relabelled Service", model.IPv4, n, func(c syncCall) bool { return hasEndpoint(c, otherPort, "10.244.2.30:80") })
	onlyNames(t, calls, "other")
	n = e.backend.Len()
	e.updateService("other", func(s *corev1.Service) { s.Labels[compile.LabelServiceProxyName] = "other" })
	c, _ := e.waitCall("the Service handed back", model.IPv4, n, func(c syncCall) bool {
		_, ok := c.Table.Get(otherPort)
		return !ok
	})
	if !slices.Equal(c.Diff.Removed, []model.ServicePortName{otherPort}) {
		t.Errorf("diff %s; want %s removed", c, otherPort)
	}
}

// TestBurstCoalesces rewrites one EndpointSlice 1,000 times in a row: the runner must
// coalesce the changes into a handful of syncs, the last of which has the last endpoints.
func TestBurstCoalesces(t *testing.T) {
	t.Parallel()
	const (
		updates  = 1000
		minSync  = 200 * time.Millisecond
		maxSyncs = 10
	)
	burst := portName("burst", "http", model.TCP)
	// The simple clientset: the field-managing one needs milliseconds per update.
	e := startEnvWith(t, fake.NewSimpleClientset(
		newNode(),
		newService("burst", "10.96.0.40", svcPort("http", corev1.ProtocolTCP, 80)),
		newSlice("burst-1", "burst", epPort("http", corev1.ProtocolTCP, 8080), "10.244.2.1"),
	), minSync)
	addr := func(i int) string { return fmt.Sprintf("10.244.%d.%d", 10+i/200, 1+i%200) }
	slice, err := e.client.DiscoveryV1().EndpointSlices(testNS).Get(context.Background(), "burst-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := e.backend.Len()
	q := e.rec.Queued()
	start := time.Now()
	for i := range updates {
		setEndpoints(slice, addr(i))
		if _, err := e.client.DiscoveryV1().EndpointSlices(testNS).Update(context.Background(), slice, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		// The fake watch buffers 100 events and panics beyond; let the informer keep up.
		if i%50 == 49 {
			eventually(t, "the informer to catch up", func() bool { return e.rec.Queued() >= q+2*(i+1) }, nil)
		}
	}
	elapsed := time.Since(start)
	last := addr(updates - 1)
	c, calls := e.waitCall("the last endpoint", model.IPv4, n, func(c syncCall) bool { return hasEndpoint(c, burst, last+":8080") })
	t.Logf("%d updates in %v gave %d sync calls", updates, elapsed, len(calls))
	if got := endpointStrings(servicePort(t, c, burst).Cluster); !slices.Equal(got, []string{last + ":8080"}) {
		t.Errorf("final endpoints %v, want only %s:8080", got, last)
	}
	for _, fam := range []model.Family{model.IPv4, model.IPv6} {
		count := 0
		for _, c := range calls {
			if c.Family == fam {
				count++
			}
		}
		if count > maxSyncs {
			t.Errorf("%d %s sync calls for %d updates within %v, want at most %d", count, fam, updates, elapsed, maxSyncs)
		}
	}
	onlyNames(t, calls, "burst")
	for i := 1; i < len(calls); i++ {
		// Calls come a little after their runs start; half the period allows for that.
		if gap := calls[i].At.Sub(calls[i-1].At); gap < minSync/2 {
			t.Errorf("syncs %d and %d only %v apart, MinSyncPeriod is %v", i-1, i, gap, minSync)
		}
	}
}

// TestMalformedObjectsAreSkipped creates invalid objects together with a healthy Service:
// the problems are counted and logged, and everything valid is programmed.
func TestMalformedObjectsAreSkipped(t *testing.T) {
	t.Parallel()
	e := startEnv(t, fastSync, newNode())
	good := portName("good", "http", model.TCP)
	bigOK, big := portName("bigport", "ok", model.TCP), portName("bigport", "big", model.TCP)
	fqdn := portName("fqdn", "http", model.TCP)
	badIP := portName("badip", "http", model.TCP)

	n := e.backend.Len()
	bigPort := newService("bigport", "10.96.5.1", svcPort("big", corev1.ProtocolTCP, 70000), svcPort("ok", corev1.ProtocolTCP, 81))
	e.create(bigPort)
	e.create(newSlice("bigport-1", "bigport", epPort("ok", corev1.ProtocolTCP, 8081), "10.244.2.51"))

	e.create(newService("fqdn", "10.96.5.2", svcPort("http", corev1.ProtocolTCP, 80)))
	fq := newSlice("fqdn-1", "fqdn", epPort("http", corev1.ProtocolTCP, 80), "web.example.com")
	fq.AddressType = discoveryv1.AddressTypeFQDN
	e.create(fq)
	e.create(newSlice("fqdn-2", "fqdn", epPort("http", corev1.ProtocolTCP, 80), "10.244.2.52"))

	e.create(newService("badip", "10.96.5.3", svcPort("http", corev1.ProtocolTCP, 80)))
	e.create(newSlice("badip-1", "badip", epPort("http", corev1.ProtocolTCP, 80), "10.244.2.300", "10.244.2.53"))

	e.create(newService("good", "10.96.5.4", svcPort("http", corev1.ProtocolTCP, 80)))
	e.create(newSlice("good-1", "good", epPort("http", corev1.ProtocolTCP, 80), "10.244.2.54"))

	var latest syncCall
	e.backend.WaitFor(t, "every valid object", func(calls []syncCall) bool {
		c, ok := e.backend.Latest(model.IPv4)
		latest = c
		return ok && len(calls) > n && hasEndpoint(c, good, "10.244.2.54:80") && hasEndpoint(c, bigOK, "10.244.2.51:8081") &&
			hasEndpoint(c, fqdn, "10.244.2.52:80") && hasEndpoint(c, badIP, "10.244.2.53:80")
	})
	if _, ok := latest.Table.Get(big); ok {
		t.Errorf("the out-of-range port was programmed:\n%s", latest.Text)
	}
	if got := endpointStrings(servicePort(t, latest, fqdn).Cluster); !slices.Equal(got, []string{"10.244.2.52:80"}) {
		t.Errorf("fqdn endpoints %v, want only the IPv4 slice's", got)
	}
	if got := endpointStrings(servicePort(t, latest, badIP).Cluster); !slices.Equal(got, []string{"10.244.2.53:80"}) {
		t.Errorf("badip endpoints %v, want only the valid one", got)
	}
	if got := e.rec.Invalid("service"); got < 1 {
		t.Errorf("IncInvalid(service) = %d, want at least 1", got)
	}
	if got := e.rec.Invalid("endpointslice"); got < 2 {
		t.Errorf("IncInvalid(endpointslice) = %d, want at least 2", got)
	}
	logs := e.logs.String()
	for _, want := range []string{
		"Skipping an invalid field or object",
		`service default/bigport: spec.ports[0].port: \"70000\" is out of range 1-65535`,
		`endpointslice default/fqdn-1: addressType: \"FQDN\" is not supported`,
		`endpointslice default/badip-1: endpoints[0].addresses[0]: \"10.244.2.300\" is not a valid IPv4 address`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q:\n%s", want, logs)
		}
	}
}

// TestFailedSyncIsRetried makes the backend fail once: the change is retried after the
// runner's backoff, as a full sync, and the model that lands matches the latest objects.
func TestFailedSyncIsRetried(t *testing.T) {
	t.Parallel()
	web := portName("web", "http", model.TCP)
	e := startEnv(t, fastSync,
		newNode(),
		newService("web", "10.96.0.10", svcPort("http", corev1.ProtocolTCP, 80)),
		newSlice("web-1", "web", epPort("http", corev1.ProtocolTCP, 8080), "10.244.2.1"),
	)
	n := e.backend.Len()
	prog := e.rec.Programming()
	e.backend.FailNext(1)
	trigger := time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano)
	e.updateSlice("web-1", func(s *discoveryv1.EndpointSlice) {
		setEndpoints(s, "10.244.2.2")
		s.Annotations = map[string]string{TriggerTimeAnnotation: trigger}
	})
	calls := e.backend.WaitFor(t, "the failed sync", func(calls []syncCall) bool {
		return len(calls) > n && calls[n].Err != nil
	})
	failed := calls[n]
	if failed.Family != model.IPv4 || failed.Diff.Full || !slices.Equal(failed.Diff.Changed, []model.ServicePortName{web}) {
		t.Errorf("failed call %s; want the partial IPv4 sync of %s", failed, web)
	}
	// A second change while the retry is pending.
	e.updateSlice("web-1", func(s *discoveryv1.EndpointSlice) {
		setEndpoints(s, "10.244.2.3")
		s.Annotations = nil
	})

	retry, _ := e.waitCall("the retry", model.IPv4, n+1, func(syncCall) bool { return true })
	if !retry.Diff.Full {
		t.Errorf("retry %s is not full", retry)
	}
	if !slices.Contains(retry.Diff.Changed, web) {
		t.Errorf("retry %s does not name %s, which the backend never applied", retry, web)
	}
	// The calls are made a little after their runs start: allow for that, which still
	// tells the backoff (100ms) from MinSyncPeriod (10ms).
	if gap := retry.At.Sub(failed.At); gap < e.p.runner.retryMin/2 {
		t.Errorf("retried after %v; want the backoff of %v", gap, e.p.runner.retryMin)
	}
	last, _ := e.waitCall("the latest endpoints", model.IPv4, n+1, func(c syncCall) bool { return hasEndpoint(c, web, "10.244.2.3:8080") })
	if got := endpointStrings(servicePort(t, last, web).Cluster); !slices.Equal(got, []string{"10.244.2.3:8080"}) {
		t.Errorf("final endpoints %v, want [10.244.2.3:8080]", got)
	}
	for _, c := range e.backend.Calls()[n+1:] {
		if c.Err != nil {
			t.Errorf("unexpected failed call %s", c)
		}
	}
	if got := e.rec.SyncErrors(model.IPv4); got != 1 {
		t.Errorf("IncSyncError(IPv4) = %d, want 1", got)
	}
	// The trigger time survived the failed sync and was observed once, after the retry.
	if got := e.rec.Programming() - prog; got != 1 {
		t.Errorf("ObserveNetworkProgramming called %d times, want 1", got)
	}
}

// TestNodeChanges checks that changes of the Node that matter trigger a sync and status
// heartbeats do not.
func TestNodeChanges(t *testing.T) {
	t.Parallel()
	np := portName("np", "http", model.TCP)
	zonal := portName("zonal", "http", model.TCP)
	npSvc := newService("np", "10.96.0.60", corev1.ServicePort{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, NodePort: 30080})
	npSvc.Spec.Type = corev1.ServiceTypeNodePort
	zonalSlice := newSlice("zonal-1", "zonal", epPort("http", corev1.ProtocolTCP, 8080), "10.244.2.61", "10.244.3.61")
	for i, zone := range []string{"zone-a", "zone-b"} {
		zonalSlice.Endpoints[i].Zone = ptr.To(zone)
		zonalSlice.Endpoints[i].Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: zone}}}
	}
	e := startEnv(t, fastSync,
		newNode(), npSvc,
		newSlice("np-1", "np", epPort("http", corev1.ProtocolTCP, 8080), "10.244.2.60"),
		newService("zonal", "10.96.0.61", svcPort("http", corev1.ProtocolTCP, 80)), zonalSlice,
	)
	first, _ := e.backend.Latest(model.IPv4)
	if !strings.Contains(first.Text, "frontend NodePort 192.168.50.10:30080") {
		t.Fatalf("no NodePort frontend on the node's address:\n%s", first.Text)
	}
	if got := endpointStrings(servicePort(t, first, zonal).Cluster); !slices.Equal(got, []string{"10.244.2.61:8080"}) {
		t.Fatalf("zonal endpoints in zone-a = %v, want [10.244.2.61:8080]", got)
	}

	t.Run("heartbeat", func(t *testing.T) {
		e.updateNode(true, func(n *corev1.Node) {
			n.Status.Conditions[0].LastHeartbeatTime = metav1.NewTime(time.Unix(1_700_000_100, 0))
			n.Annotations = map[string]string{"heartbeat": "1"}
			n.Status.Allocatable = corev1.ResourceList{}
		})
		e.quiet("a Node heartbeat")
	})

	t.Run("zone", func(t *testing.T) {
		n, q := e.backend.Len(), e.rec.Queued()
		e.updateNode(false, func(n *corev1.Node) { n.Labels[corev1.LabelTopologyZone] = "zone-b" })
		c, calls := e.waitCall("the zone-b endpoints", model.IPv4, n, func(c syncCall) bool { return hasEndpoint(c, zonal, "10.244.3.61:8080") })
		if got := endpointStrings(servicePort(t, c, zonal).Cluster); !slices.Equal(got, []string{"10.244.3.61:8080"}) {
			t.Errorf("zonal endpoints in zone-b = %v, want [10.244.3.61:8080]", got)
		}
		onlyNames(t, calls, "zonal")
		// One Node event was queued: the heartbeat before it was not.
		if got := e.rec.Queued() - q; got != 2 {
			t.Errorf("%d SetLastQueued calls for one Node change, want 2 (one per family)", got)
		}
	})

	t.Run("addresses", func(t *testing.T) {
		n := e.backend.Len()
		e.updateNode(true, func(n *corev1.Node) { n.Status.Addresses[0].Address = "192.168.50.11" })
		c, calls := e.waitCall("the new NodePort address", model.IPv4, n, func(c syncCall) bool {
			return strings.Contains(c.Text, "frontend NodePort 192.168.50.11:30080")
		})
		if strings.Contains(c.Text, "192.168.50.10:30080") {
			t.Errorf("the old NodePort address is still there:\n%s", c.Text)
		}
		onlyNames(t, calls, "np")
		if !slices.Equal(c.Diff.Changed, []model.ServicePortName{np}) {
			t.Errorf("diff %s; want only %s changed", c, np)
		}
	})
}

// TestStaleUDPFlows replaces the endpoint of a UDP Service: the flows DNATed to the old
// endpoint must be cleared.
func TestStaleUDPFlowsCleared(t *testing.T) {
	t.Parallel()
	dns := portName("dns", "dns", model.UDP)
	e := startEnv(t, fastSync,
		newNode(),
		newService("dns", "10.96.0.53", svcPort("dns", corev1.ProtocolUDP, 53)),
		newSlice("dns-1", "dns", epPort("dns", corev1.ProtocolUDP, 5353), "10.244.2.53"),
	)
	n := e.backend.Len()
	e.updateSlice("dns-1", func(s *discoveryv1.EndpointSlice) { setEndpoints(s, "10.244.2.54") })
	e.waitCall("the new endpoint", model.IPv4, n, func(c syncCall) bool { return hasEndpoint(c, dns, "10.244.2.54:5353") })
	want := []deleteCall{{Family: model.IPv4, Flows: []StaleFlow{{
		Frontend: netip.MustParseAddrPort("10.96.0.53:53"),
		Endpoint: netip.MustParseAddrPort("10.244.2.53:5353"),
	}}}}
	if got := e.ct.Calls(); !slices.EqualFunc(got, want, func(a, b deleteCall) bool {
		return a.Family == b.Family && slices.Equal(a.Flows, b.Flows)
	}) {
		t.Errorf("conntrack deletions %+v, want %+v", got, want)
	}
}

// runInBackground runs p until the test ends: its cleanup cancels ctx and checks that Run
// returns, without an error, within waitTimeout.
func runInBackground(t *testing.T, ctx context.Context, cancel context.CancelFunc, p *Proxier) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitTimeout):
			t.Errorf("Run did not return after its context was cancelled")
		}
	})
}
