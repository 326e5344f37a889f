package proxier

import (
	"context"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"

	"github.com/portico-dev/portico/model"
)

func TestProbeIPv6(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		content string
		err     error
		want    string // "" for supported
	}{
		{"enabled", "0\n", nil, ""},
		{"disabled by sysctl", "1\n", nil, "disabled in this network namespace"},
		{"no IPv6 in the kernel", "", fs.ErrNotExist, "ipv6.disable=1"},
		{"unreadable", "", fs.ErrPermission, "permission denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := probeIPv6(func(path string) ([]byte, error) {
				if path != ipv6Sysctl {
					t.Errorf("read %s, want %s", path, ipv6Sysctl)
				}
				return []byte(tc.content), tc.err
			})
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("probeIPv6 = %v, want %q", err, tc.want)
			}
		})
	}
	if err := KernelFamilies(model.IPv4); err != nil {
		t.Errorf("KernelFamilies(IPv4) = %v, want nil", err)
	}
}

// TestKernelFamiliesHere compares the probe with this machine's kernel, read directly.
func TestKernelFamiliesHere(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("/proc/sys/net/ipv6/conf/all/disable_ipv6")
	want := err == nil && strings.TrimSpace(string(b)) == "0"
	if got := KernelFamilies(model.IPv6) == nil; got != want {
		t.Errorf("KernelFamilies(IPv6) supported = %t, want %t (%q, %v)", got, want, b, err)
	}
}

// noIPv6 is a FamilyProbe of a node whose kernel has no IPv6.
func noIPv6(f model.Family) error {
	if f == model.IPv6 {
		return errors.New("no IPv6 here")
	}
	return nil
}

// TestIPv4OnlyNode: on a node without IPv6 only IPv4 is synced, dual-stack Services get
// their IPv4 rules, an IPv6-only Service is ignored, and nothing fails.
func TestIPv4OnlyNode(t *testing.T) {
	t.Parallel()
	v6 := newService("v6only", "fd00:96::60", svcPort("http", corev1.ProtocolTCP, 80))
	v6.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol}
	dual := newService("dual", "10.96.0.61", svcPort("http", corev1.ProtocolTCP, 80))
	dual.Spec.ClusterIPs = []string{"10.96.0.61", "fd00:96::61"}
	dual.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	slice6 := newSlice("v6only-1", "v6only", epPort("http", corev1.ProtocolTCP, 8080), "fd00:244::60")
	slice6.AddressType = discoveryv1.AddressTypeIPv6
	rb := &recordingBackend{}
	e := startEnvOpts(t, rb, rb, func(o *Options) { o.FamilyProbe = noIPv6 }, testRetry,
		newNode(), v6, slice6, dual,
		newSlice("dual-1", "dual", epPort("http", corev1.ProtocolTCP, 8080), "10.244.2.61"))
	for _, c := range rb.Calls() {
		if c.Family != model.IPv4 || c.Err != nil {
			t.Errorf("call %s; want IPv4 calls that succeed only", c)
		}
	}
	c, ok := rb.Latest(model.IPv4)
	if !ok || !hasEndpoint(c, portName("dual", "http", model.TCP), "10.244.2.61:8080") {
		t.Errorf("the dual-stack Service has no IPv4 rules:\n%s", c.Text)
	}
	if strings.Contains(c.Text, "v6only") {
		t.Errorf("the IPv6-only Service is in the IPv4 table:\n%s", c.Text)
	}
	if logs := e.logs.String(); strings.Contains(logs, "E1") || strings.Contains(logs, "ERROR") {
		t.Errorf("errors logged on an IPv4-only node:\n%s", logs)
	}
	if got := e.rec.SyncErrors(model.IPv6) + e.rec.SyncErrors(model.IPv4); got != 0 {
		t.Errorf("%d sync errors, want none", got)
	}
}

// TestFamilyProbeFailsStart: Run refuses to start without the primary family (that of
// bindAddress, else of the Node's first IP) or without any family.
func TestFamilyProbeFailsStart(t *testing.T) {
	t.Parallel()
	v6Node := newNode()
	slices.Reverse(v6Node.Status.Addresses[:2]) // the IPv6 InternalIP first: the primary
	for _, tc := range []struct {
		name  string
		bind  string
		node  *corev1.Node
		probe FamilyProbe
		want  string
	}{
		{"bindAddress of a missing family", "fd00:50::10", newNode(), noIPv6, "no support for the primary IP family IPv6 (that of bindAddress)"},
		{"Node IP of a missing family", "", v6Node, noIPv6, "no support for the primary IP family IPv6 (that of Node node-a's IP fd00:50::10)"},
		{"no family", "", newNode(), func(model.Family) error { return errors.New("none") }, "supports none of the IP families"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testNodeConfig()
			if tc.bind != "" {
				cfg.BindAddress = netip.MustParseAddr(tc.bind)
			}
			p := New(clientsetSources(fake.NewClientset(tc.node), nodeName), &recordingBackend{}, Options{
				Node: cfg, Addresses: fakeAddresses, Conntrack: &fakeConntrack{}, FamilyProbe: tc.probe,
			})
			ctx, cancel := context.WithTimeout(klog.NewContext(context.Background(), ktesting.NewLogger(t, ktesting.NewConfig())), waitTimeout)
			defer cancel()
			err := p.Run(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Run = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// TestFailingFamilyBlocksNothing makes every IPv6 sync fail (as when nft cannot create
// ip6 tables): IPv4 changes still reach the backend at once rather than after the
// backoff, the health check servers and the sync generation are updated, and IPv6 is
// retried on its own backoff, not at every IPv4 change.
func TestFailingFamilyBlocksNothing(t *testing.T) {
	t.Parallel()
	rb := &recordingBackend{}
	be := &familyFailBackend{recordingBackend: rb, fail: model.IPv6}
	hs := &healthRecorder{}
	backoff := 2 * time.Second
	lb := newService("lb", "10.96.0.70", corev1.ServicePort{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, NodePort: 30070})
	lb.Spec.Type = corev1.ServiceTypeLoadBalancer
	lb.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	lb.Spec.HealthCheckNodePort = 30071
	e := startEnvOpts(t, be, rb, func(o *Options) { o.ServiceHealth = hs }, [2]time.Duration{backoff, backoff},
		newNode(), lb, newSlice("lb-1", "lb", epPort("http", corev1.ProtocolTCP, 8080), "10.244.2.70"))
	web := portName("lb", "http", model.TCP)
	if _, ok := rb.Latest(model.IPv4); !ok {
		t.Fatal("IPv4 was not synced")
	}
	if n, last := hs.Last(); n == 0 || last[web.Service()].Port != 30071 {
		t.Errorf("health check servers %v after %d calls; want lb's on 30071", last, n)
	}
	failed := be.Failed()
	if failed == 0 {
		t.Fatal("IPv6 was never tried")
	}
	for i, ep := range []string{"10.244.2.71", "10.244.2.72", "10.244.2.73"} {
		n, gen := rb.Len(), e.rec.Generation()
		start := time.Now()
		e.updateSlice("lb-1", func(s *discoveryv1.EndpointSlice) { setEndpoints(s, ep) })
		e.waitCall("the new IPv4 endpoint", model.IPv4, n, func(c syncCall) bool { return hasEndpoint(c, web, ep+":8080") })
		if took := time.Since(start); took > backoff/2 {
			t.Errorf("change %d took %v to reach IPv4 while IPv6 fails; want well under the backoff of %v", i, took, backoff)
		}
		eventually(t, "the generation", func() bool { return e.rec.Generation() > gen }, nil)
	}
	if got := be.Failed() - failed; got > 1 {
		t.Errorf("IPv6 tried %d times during three IPv4 changes within its backoff; want at most 1", got)
	}
	eventually(t, "the IPv6 retry after its backoff", func() bool { return be.Failed() > failed }, nil)
	if got := e.rec.SyncErrors(model.IPv4); got != 0 {
		t.Errorf("%d IPv4 sync errors, want none", got)
	}
}
