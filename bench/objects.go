package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

// Where the benchmark's objects live.
const (
	Namespace = "bench"
	ManagedBy = "bench.portico.dev"
	// TargetPort is the endpoints' port (nothing listens on the fake addresses).
	TargetPort = 8080
	// triggerAnnotation gives network_programming_duration_seconds its start time.
	triggerAnnotation = "endpoints.kubernetes.io/last-change-trigger-time"
)

// Address plan. Bulk endpoints are unique fake addresses in 10.128.0.0/12 (1,048,576 of
// them: 50,000 Services × 10 endpoints need 500,000); the endpoint-heavy Services' in
// 10.160.0.0/14, the rolled pods' in 10.164.0.0/16 (heavy.go); each change introduces a
// never-used address of 10.251.0.0/16, whose first appearance in a netfilter notification
// ends the change's latency sample. None overlaps the topology's addresses (10.0.x,
// 10.244.x pods, 10.96.0.0/12 Services, 10.252.0.0/16 live endpoints).
var (
	bulkBase   = netip.MustParseAddr("10.128.0.0")
	changeBase = netip.MustParseAddr("10.251.0.0")
)

func addOffset(base netip.Addr, off uint32) netip.Addr {
	b := base.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += off
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// svcState is one bulk Service and its EndpointSlice as last written.
type svcState struct {
	mu        sync.Mutex
	name      string
	clusterIP netip.Addr
	slice     *discoveryv1.EndpointSlice
}

// Objects creates and changes the benchmark's Services and EndpointSlices.
type Objects struct {
	cs kubernetes.Interface
	// ns is the namespace of the Services and slices, base their first endpoint address.
	ns        string
	base      netip.Addr
	endpoints int
	remote    string // node the bulk endpoints are on
	remoteZ   string

	mu      sync.Mutex
	svcs    []*svcState
	nextNew uint32
	// extra addresses every proxy must program (the real Service).
	extra []netip.Addr
	// seeder, if set, writes all but the first Service of each Grow into etcd (seed.go).
	seeder *Seeder
}

// UseSeeder makes Grow create its Services through s (all but the first of each call,
// which is created through the API and is the template of the others).
func (o *Objects) UseSeeder(s *Seeder) { o.seeder = s }

// NewObjects returns an Objects writing the bulk Services into Namespace through a
// client with a high rate limit.
func NewObjects(cfg *rest.Config, endpoints int, remoteNode, remoteZone string) (*Objects, error) {
	return NewObjectsIn(cfg, Namespace, bulkBase, endpoints, remoteNode, remoteZone)
}

// NewObjectsIn returns an Objects writing Services of endpoints endpoints each into
// namespace ns, endpoint addresses counted up from base.
func NewObjectsIn(cfg *rest.Config, ns string, base netip.Addr, endpoints int, remoteNode, remoteZone string) (*Objects, error) {
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = 5000, 10000
	c.UserAgent = "portico-bench"
	// Protobuf costs the API server (the bottleneck of creating 50,000 Services on two
	// cores) less to decode than JSON.
	c.ContentType = "application/vnd.kubernetes.protobuf"
	c.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cs, err := kubernetes.NewForConfig(c)
	if err != nil {
		return nil, err
	}
	return &Objects{cs: cs, ns: ns, base: base, endpoints: endpoints, remote: remoteNode, remoteZ: remoteZone}, nil
}

// Count returns how many bulk Services exist.
func (o *Objects) Count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.svcs)
}

// EnsureNamespace creates the objects' namespace.
func (o *Objects) EnsureNamespace(ctx context.Context) error {
	_, err := o.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: o.ns}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// AddExpected records addresses every proxy must program besides the bulk ones.
func (o *Objects) AddExpected(a ...netip.Addr) {
	o.mu.Lock()
	o.extra = append(o.extra, a...)
	o.mu.Unlock()
}

// Grow creates bulk Services (and one EndpointSlice each) until there are n, with
// workers concurrent writers.
func (o *Objects) Grow(ctx context.Context, n, workers int) error {
	o.mu.Lock()
	from := len(o.svcs)
	for i := from; i < n; i++ {
		o.svcs = append(o.svcs, &svcState{name: fmt.Sprintf("s%05d", i)})
	}
	o.mu.Unlock()
	if from >= n {
		return nil
	}
	if o.seeder != nil {
		return o.growSeeded(ctx, from, n)
	}
	jobs := make(chan int)
	errc := make(chan error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if err := o.create(ctx, i); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	var err error
loop:
	for i := from; i < n; i++ {
		select {
		case jobs <- i:
		case err = <-errc:
			break loop
		case <-ctx.Done():
			err = ctx.Err()
			break loop
		}
	}
	close(jobs)
	wg.Wait()
	close(errc)
	for e := range errc {
		err = errors.Join(err, e)
	}
	return err
}

func (o *Objects) create(ctx context.Context, i int) error {
	o.mu.Lock()
	s := o.svcs[i]
	o.mu.Unlock()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: o.ns},
		Spec: corev1.ServiceSpec{
			Type:  corev1.ServiceTypeClusterIP,
			Ports: []corev1.ServicePort{{Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(TargetPort)}},
		},
	}
	got, err := withRetry(ctx, func() (*corev1.Service, error) {
		return o.cs.CoreV1().Services(o.ns).Create(ctx, svc, metav1.CreateOptions{})
	})
	if apierrors.IsAlreadyExists(err) {
		got, err = o.cs.CoreV1().Services(o.ns).Get(ctx, s.name, metav1.GetOptions{})
	}
	if err != nil {
		return fmt.Errorf("service %s: %w", s.name, err)
	}
	ip, err := netip.ParseAddr(got.Spec.ClusterIP)
	if err != nil {
		return fmt.Errorf("service %s: cluster IP %q: %w", s.name, got.Spec.ClusterIP, err)
	}
	sl := o.newSlice(s.name, i)
	gotSl, err := withRetry(ctx, func() (*discoveryv1.EndpointSlice, error) {
		return o.cs.DiscoveryV1().EndpointSlices(o.ns).Create(ctx, sl, metav1.CreateOptions{})
	})
	if apierrors.IsAlreadyExists(err) {
		gotSl, err = o.cs.DiscoveryV1().EndpointSlices(o.ns).Get(ctx, sl.Name, metav1.GetOptions{})
	}
	if err != nil {
		return fmt.Errorf("endpointslice of %s: %w", s.name, err)
	}
	s.mu.Lock()
	s.clusterIP, s.slice = ip, gotSl
	s.mu.Unlock()
	return nil
}

// withRetry retries a write a few times on throttling and server timeouts.
func withRetry[T any](ctx context.Context, f func() (T, error)) (T, error) {
	var v T
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		v, err = f()
		if err == nil || !(apierrors.IsTooManyRequests(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) ||
			apierrors.IsInternalError(err)) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
	return v, err
}

func (o *Objects) newSlice(svc string, i int) *discoveryv1.EndpointSlice {
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: svc + "-1", Namespace: o.ns,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: svc,
				discoveryv1.LabelManagedBy:   ManagedBy,
			},
			Annotations: map[string]string{triggerAnnotation: time.Now().UTC().Format(time.RFC3339Nano)},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr(""), Protocol: ptr(corev1.ProtocolTCP), Port: ptr(int32(TargetPort))}},
	}
	for j := 0; j < o.endpoints; j++ {
		a := addOffset(o.base, uint32(i*o.endpoints+j))
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{a.String()},
			NodeName:   ptr(o.remote),
			Zone:       ptr(o.remoteZ),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(true), Serving: ptr(true), Terminating: ptr(false)},
		})
	}
	return sl
}

func ptr[T any](v T) *T { return &v }

// Expected returns every address the proxies must program for the objects as they are
// now: the bulk Services' cluster IPs and endpoints, and the extra ones.
func (o *Objects) Expected() []netip.Addr {
	o.mu.Lock()
	svcs := append([]*svcState(nil), o.svcs...)
	out := append([]netip.Addr(nil), o.extra...)
	o.mu.Unlock()
	for _, s := range svcs {
		s.mu.Lock()
		if s.clusterIP.IsValid() {
			out = append(out, s.clusterIP)
		}
		if s.slice != nil {
			for _, e := range s.slice.Endpoints {
				if a, err := netip.ParseAddr(e.Addresses[0]); err == nil {
					out = append(out, a)
				}
			}
		}
		s.mu.Unlock()
	}
	return out
}

// extraAddrs returns the extra addresses (AddExpected) alone.
func (o *Objects) extraAddrs() []netip.Addr {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]netip.Addr(nil), o.extra...)
}

// DeleteAll deletes the Services and the slices the Objects wrote, and forgets them.
func (o *Objects) DeleteAll(ctx context.Context) error {
	o.mu.Lock()
	svcs := o.svcs
	o.svcs = nil
	o.mu.Unlock()
	var errs []error
	for _, s := range svcs {
		err := o.cs.CoreV1().Services(o.ns).Delete(ctx, s.name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting service %s/%s: %w", o.ns, s.name, err))
		}
	}
	err := o.cs.DiscoveryV1().EndpointSlices(o.ns).DeleteCollection(ctx, metav1.DeleteOptions{},
		metav1.ListOptions{LabelSelector: discoveryv1.LabelManagedBy + "=" + ManagedBy})
	return errors.Join(append(errs, err)...)
}

// NextAddr returns a never-used change address.
func (o *Objects) NextAddr() netip.Addr {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.nextNew++
	if o.nextNew >= 1<<16-1 {
		o.nextNew = 1 // the run never makes this many changes
	}
	return addOffset(changeBase, o.nextNew)
}

// Change is one endpoint replacement.
type Change struct {
	Service string
	Addr    netip.Addr
	// Written is when the write was sent (and the trigger-time annotation's value);
	// Acked when the apiserver answered.
	Written, Acked time.Time
}

// ReplaceEndpoint replaces a random endpoint of Service i by addr, sets the trigger-time
// annotation and writes the slice. before runs just before the write is sent (the caller
// starts watching the kernel there).
func (o *Objects) ReplaceEndpoint(ctx context.Context, i int, addr netip.Addr, rng *rand.Rand, before func()) (Change, error) {
	return o.ReplaceEndpoints(ctx, i, []netip.Addr{addr}, rng, before)
}

// ReplaceEndpoints replaces len(addrs) distinct random endpoints of Service i (all of
// them with as many addresses as it has endpoints) by addrs, like ReplaceEndpoint.
func (o *Objects) ReplaceEndpoints(ctx context.Context, i int, addrs []netip.Addr, rng *rand.Rand, before func()) (Change, error) {
	o.mu.Lock()
	s := o.svcs[i]
	o.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.slice.DeepCopy()
	for k, j := range rng.Perm(len(next.Endpoints))[:min(len(addrs), len(next.Endpoints))] {
		next.Endpoints[j].Addresses = []string{addrs[k].String()}
	}
	if before != nil {
		before()
	}
	c := Change{Service: s.name, Addr: addrs[0], Written: time.Now()}
	next.Annotations[triggerAnnotation] = c.Written.UTC().Format(time.RFC3339Nano)
	api := o.cs.DiscoveryV1().EndpointSlices(o.ns)
	got, err := api.Update(ctx, next, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) { // someone else wrote it: retry once on the current object
		cur, gerr := api.Get(ctx, next.Name, metav1.GetOptions{})
		if gerr != nil {
			return c, gerr
		}
		next.ResourceVersion = cur.ResourceVersion
		c.Written = time.Now()
		next.Annotations[triggerAnnotation] = c.Written.UTC().Format(time.RFC3339Nano)
		got, err = api.Update(ctx, next, metav1.UpdateOptions{})
	}
	c.Acked = time.Now()
	if err != nil {
		return c, fmt.Errorf("update %s: %w", next.Name, err)
	}
	s.slice = got
	return c, nil
}

// Real is the Service whose single endpoint is a real server in pod-a1.
type Real struct {
	ClusterIP netip.Addr
	Port      uint16
	Backend   netip.Addr
}

// CreateReal creates the real Service and its slice (endpoint in pod-a1, on node-a).
func (o *Objects) CreateReal(ctx context.Context, topo *netns.Topology, serverPort int) (Real, error) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "real", Namespace: o.ns},
		Spec: corev1.ServiceSpec{
			Type:  corev1.ServiceTypeClusterIP,
			Ports: []corev1.ServicePort{{Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(int32(serverPort))}},
		},
	}
	got, err := o.cs.CoreV1().Services(o.ns).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return Real{}, fmt.Errorf("real service: %w", err)
	}
	backend := topo.PodIP(netns.PodA1, netns.IPv4)
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: "real-1", Namespace: o.ns,
			Labels: map[string]string{discoveryv1.LabelServiceName: "real", discoveryv1.LabelManagedBy: ManagedBy},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr(""), Protocol: ptr(corev1.ProtocolTCP), Port: ptr(int32(serverPort))}},
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{backend.String()},
			NodeName:   ptr(netns.NodeA),
			Zone:       ptr("zone-a"),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(true), Serving: ptr(true), Terminating: ptr(false)},
		}},
	}
	if _, err := o.cs.DiscoveryV1().EndpointSlices(o.ns).Create(ctx, sl, metav1.CreateOptions{}); err != nil {
		return Real{}, fmt.Errorf("real endpointslice: %w", err)
	}
	ip, err := netip.ParseAddr(got.Spec.ClusterIP)
	if err != nil {
		return Real{}, err
	}
	o.AddExpected(ip, backend)
	return Real{ClusterIP: ip, Port: 80, Backend: backend}, nil
}

// ClusterIP returns bulk Service i's cluster IP.
func (o *Objects) ClusterIP(i int) netip.Addr {
	o.mu.Lock()
	s := o.svcs[i]
	o.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clusterIP
}

// VMServices returns the bulk Services as the VM's payload needs them: name, cluster IP,
// port and the endpoints last written.
func (o *Objects) VMServices() []VMService {
	o.mu.Lock()
	svcs := append([]*svcState(nil), o.svcs...)
	o.mu.Unlock()
	out := make([]VMService, 0, len(svcs))
	for _, s := range svcs {
		s.mu.Lock()
		v := VMService{Name: s.name, ClusterIP: s.clusterIP.String(), Port: 80}
		for _, e := range s.slice.Endpoints {
			v.Endpoints = append(v.Endpoints, e.Addresses[0])
		}
		s.mu.Unlock()
		out = append(out, v)
	}
	return out
}

// ReloadSlices reads every bulk Service's EndpointSlice back from the API server, after
// someone else (the VM's payload) has changed some of them.
func (o *Objects) ReloadSlices(ctx context.Context) error {
	list, err := o.cs.DiscoveryV1().EndpointSlices(o.ns).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelManagedBy + "=" + ManagedBy})
	if err != nil {
		return err
	}
	byName := make(map[string]*discoveryv1.EndpointSlice, len(list.Items))
	for i := range list.Items {
		byName[list.Items[i].Name] = &list.Items[i]
	}
	o.mu.Lock()
	svcs := append([]*svcState(nil), o.svcs...)
	o.mu.Unlock()
	for _, s := range svcs {
		s.mu.Lock()
		if sl := byName[s.name+"-1"]; sl != nil {
			s.slice = sl
		}
		s.mu.Unlock()
	}
	return nil
}
