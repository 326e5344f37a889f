package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

// Why the bulk Services are seeded into etcd. Since ClusterIPs are IPAddress objects
// (MultiCIDRServiceAllocator, GA), kube-apiserver's allocator counts every IPAddress of
// its informer after each allocation (for its metrics, evaluated even when they are off):
// creating Services through the API costs more the more exist. Profiled on this machine,
// 83 % of kube-apiserver's CPU at 20,000 Services; the rate fell from 57/s at 10,000 to
// 6/s near 40,000 (about an hour for 50,000). The load generator therefore creates the
// first Service of each batch through the API and writes the rest as copies of what the
// API server stored for it (Service, its IPAddress, its EndpointSlice; new name, UID,
// address) straight into the API server's etcd. The API server sees them through its own
// watch of etcd and serves them like any other; every measured change still goes through
// the API.

// etcdPrefix is kube-apiserver's default etcd key prefix.
const etcdPrefix = "/registry"

// seedBatch is how many Services one etcd transaction writes (3 puts and 2 guards each;
// etcd refuses transactions of more than 128 operations per list by default).
const seedBatch = 40

// seedFirst is the first ClusterIP the seeder tries; the API server's dynamic
// allocations land anywhere in the upper part of the range, so the guards decide.
var seedFirst = netip.MustParseAddr("10.100.0.0")

func serviceKey(ns, name string) string { return etcdPrefix + "/services/specs/" + ns + "/" + name }
func sliceKey(ns, name string) string   { return etcdPrefix + "/endpointslices/" + ns + "/" + name }
func ipAddressKey(ip netip.Addr) string { return etcdPrefix + "/ipaddresses/" + ip.String() }

// Seeder writes bulk Services into the API server's etcd as copies of a template the
// API server created (see above).
type Seeder struct {
	cli   *clientv3.Client
	ser   *protobuf.Serializer
	cidr  netip.Prefix
	next  netip.Addr
	taken map[netip.Addr]bool
}

// NewSeeder returns a Seeder talking to etcd at endpoint (host:port) through dial, for
// Services of the range cidr. It connects lazily.
func NewSeeder(endpoint string, dial netns.DialFunc, cidr netip.Prefix) (*Seeder, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"http://" + endpoint},
		DialTimeout: 10 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return dial(ctx, "tcp", addr)
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return &Seeder{cli: cli, ser: protobuf.NewSerializer(scheme.Scheme, scheme.Scheme), cidr: cidr, next: seedFirst,
		taken: map[netip.Addr]bool{}}, nil
}

// Close closes the etcd client.
func (s *Seeder) Close() error { return s.cli.Close() }

// Taken marks addresses the seeder must not use (ClusterIPs the API server allocated).
func (s *Seeder) Taken(addrs ...netip.Addr) {
	for _, a := range addrs {
		s.taken[a] = true
	}
}

// seedTemplate is what the API server stored for the first Service of a batch.
type seedTemplate struct {
	svc   *corev1.Service
	ipa   *networkingv1.IPAddress
	slice *discoveryv1.EndpointSlice
}

// readTemplate reads from etcd what the API server stored for Service name (address ip)
// and its EndpointSlice sliceName.
func (s *Seeder) readTemplate(ctx context.Context, ns, name, sliceName string, ip netip.Addr) (*seedTemplate, error) {
	t := &seedTemplate{svc: &corev1.Service{}, ipa: &networkingv1.IPAddress{}, slice: &discoveryv1.EndpointSlice{}}
	for key, obj := range map[string]runtime.Object{
		serviceKey(ns, name): t.svc, ipAddressKey(ip): t.ipa, sliceKey(ns, sliceName): t.slice,
	} {
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("etcd get %s: %w", key, err)
		}
		if len(resp.Kvs) != 1 {
			return nil, fmt.Errorf("etcd key %s of the template Service %s/%s not found (the API server's storage layout changed?)", key, ns, name)
		}
		if err := s.decode(resp.Kvs[0].Value, obj); err != nil {
			return nil, fmt.Errorf("etcd key %s: %w", key, err)
		}
	}
	if t.ipa.Spec.ParentRef == nil || t.ipa.Spec.ParentRef.Name != name {
		return nil, fmt.Errorf("IPAddress %s does not refer to Service %s/%s: %+v", ip, ns, name, t.ipa.Spec.ParentRef)
	}
	return t, nil
}

// protobufMagic starts every object kube-apiserver stores as protobuf.
var protobufMagic = []byte("k8s\x00")

func (s *Seeder) decode(raw []byte, into runtime.Object) error {
	if !bytes.HasPrefix(raw, protobufMagic) {
		return errors.New("not stored as protobuf (kube-apiserver's default storage media type)")
	}
	_, _, err := s.ser.Decode(raw, nil, into)
	return err
}

func (s *Seeder) encode(obj runtime.Object, gvk schema.GroupVersionKind) ([]byte, error) {
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	var b bytes.Buffer
	if err := s.ser.Encode(obj, &b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// seedItem is one Service to seed: its name, address and EndpointSlice (filled in by
// write: the objects as stored, ResourceVersion included).
type seedItem struct {
	name  string
	ip    netip.Addr
	svc   *corev1.Service
	slice *discoveryv1.EndpointSlice
}

// nextIP returns the next address of the range the seeder has not used or been told of.
func (s *Seeder) nextIP() (netip.Addr, error) {
	for a := s.next; s.cidr.Contains(a); a = a.Next() {
		if !s.taken[a] {
			s.taken[a] = true
			s.next = a.Next()
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("seeding Services: no address left in %s after %s", s.cidr, seedFirst)
}

// build fills it.svc and it.slice from t: slice is the EndpointSlice as Objects built
// it, whose metadata the template's replaces (but for name, labels and annotations).
func (s *Seeder) build(t *seedTemplate, it *seedItem, slice *discoveryv1.EndpointSlice, now metav1.Time) *networkingv1.IPAddress {
	svc := t.svc.DeepCopy()
	svc.Name, svc.UID, svc.CreationTimestamp = it.name, uuid.NewUUID(), now
	svc.Spec.ClusterIP, svc.Spec.ClusterIPs = it.ip.String(), []string{it.ip.String()}
	ipa := t.ipa.DeepCopy()
	ipa.Name, ipa.UID, ipa.CreationTimestamp = it.ip.String(), uuid.NewUUID(), now
	ipa.Spec.ParentRef.Name = it.name
	sl := t.slice.DeepCopy()
	sl.Name, sl.UID, sl.CreationTimestamp = slice.Name, uuid.NewUUID(), now
	sl.Labels, sl.Annotations, sl.Endpoints = slice.Labels, slice.Annotations, slice.Endpoints
	it.svc, it.slice = svc, sl
	return ipa
}

// The kinds as stored.
var (
	gvkService   = corev1.SchemeGroupVersion.WithKind("Service")
	gvkIPAddress = networkingv1.SchemeGroupVersion.WithKind("IPAddress")
	gvkSlice     = discoveryv1.SchemeGroupVersion.WithKind("EndpointSlice")
)

// ops returns the puts of one item's three objects, each guarded on its key being absent.
func (s *Seeder) ops(ns string, it *seedItem, ipa *networkingv1.IPAddress) ([]clientv3.Cmp, []clientv3.Op, error) {
	var cmps []clientv3.Cmp
	var puts []clientv3.Op
	for _, o := range []struct {
		key string
		obj runtime.Object
		gvk schema.GroupVersionKind
	}{
		{serviceKey(ns, it.name), it.svc, gvkService},
		{ipAddressKey(it.ip), ipa, gvkIPAddress},
		{sliceKey(ns, it.slice.Name), it.slice, gvkSlice},
	} {
		raw, err := s.encode(o.obj, o.gvk)
		if err != nil {
			return nil, nil, fmt.Errorf("encoding %s: %w", o.key, err)
		}
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(o.key), "=", 0))
		puts = append(puts, clientv3.OpPut(o.key, string(raw)))
	}
	return cmps, puts, nil
}

// Write seeds items (name and EndpointSlice set; the address is chosen here) in
// transactions of seedBatch Services, each guarded on every key being absent. A batch
// that loses a race with the API server's allocator is written again one Service at a
// time, an address taken meanwhile replaced by the next. On return every item holds its
// address and its Service and slice as stored, ResourceVersion included. It returns the
// etcd revision of the last write.
func (s *Seeder) Write(ctx context.Context, ns string, t *seedTemplate, items []*seedItem) (int64, error) {
	var last int64
	for from := 0; from < len(items); from += seedBatch {
		batch := items[from:min(from+seedBatch, len(items))]
		rev, ok, err := s.writeBatch(ctx, ns, t, batch)
		if err != nil {
			return last, err
		}
		if !ok {
			for _, it := range batch {
				if rev, err = s.writeOne(ctx, ns, t, it); err != nil {
					return last, err
				}
			}
		}
		last = max(last, rev)
	}
	return last, nil
}

// writeBatch writes batch in one guarded transaction; ok is false if a guard failed
// (nothing written then).
func (s *Seeder) writeBatch(ctx context.Context, ns string, t *seedTemplate, batch []*seedItem) (int64, bool, error) {
	now := metav1.NewTime(time.Now())
	var cmps []clientv3.Cmp
	var puts []clientv3.Op
	for _, it := range batch {
		ip, err := s.nextIP()
		if err != nil {
			return 0, false, err
		}
		it.ip = ip
		c, p, err := s.ops(ns, it, s.build(t, it, it.slice, now))
		if err != nil {
			return 0, false, err
		}
		cmps, puts = append(cmps, c...), append(puts, p...)
	}
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(puts...).Commit()
	if err != nil {
		return 0, false, fmt.Errorf("etcd transaction of %d Services from %s/%s: %w", len(batch), ns, batch[0].name, err)
	}
	if resp.Succeeded {
		setVersion(batch, resp.Header.Revision)
	}
	return resp.Header.Revision, resp.Succeeded, nil
}

// writeOne writes one item, trying further addresses while the one tried is taken.
func (s *Seeder) writeOne(ctx context.Context, ns string, t *seedTemplate, it *seedItem) (int64, error) {
	for attempt := 0; attempt < 100; attempt++ {
		ip, err := s.nextIP()
		if err != nil {
			return 0, err
		}
		it.ip = ip
		cmps, puts, err := s.ops(ns, it, s.build(t, it, it.slice, metav1.NewTime(time.Now())))
		if err != nil {
			return 0, err
		}
		resp, err := s.cli.Txn(ctx).If(cmps...).Then(puts...).Commit()
		if err != nil {
			return 0, fmt.Errorf("etcd transaction of Service %s/%s: %w", ns, it.name, err)
		}
		if resp.Succeeded {
			setVersion([]*seedItem{it}, resp.Header.Revision)
			return resp.Header.Revision, nil
		}
		for _, key := range []string{serviceKey(ns, it.name), sliceKey(ns, it.slice.Name)} {
			if got, err := s.cli.Get(ctx, key, clientv3.WithCountOnly()); err == nil && got.Count > 0 {
				return 0, fmt.Errorf("seeding Service %s/%s: etcd key %s exists already", ns, it.name, key)
			}
		}
	}
	return 0, fmt.Errorf("seeding Service %s/%s: 100 addresses in a row were taken", ns, it.name)
}

func setVersion(items []*seedItem, rev int64) {
	v := strconv.FormatInt(rev, 10)
	for _, it := range items {
		it.svc.ResourceVersion, it.slice.ResourceVersion = v, v
	}
}

// growSeeded creates Services from..n-1: the first through the API, the others through
// the seeder as copies of it; then waits until the API server serves them.
func (o *Objects) growSeeded(ctx context.Context, from, n int) error {
	if err := o.create(ctx, from); err != nil {
		return err
	}
	o.mu.Lock()
	first, rest := o.svcs[from], append([]*svcState(nil), o.svcs[from+1:n]...)
	o.mu.Unlock()
	t, err := o.seeder.readTemplate(ctx, o.ns, first.name, first.slice.Name, first.clusterIP)
	if err != nil {
		return err
	}
	if err := o.markTaken(ctx); err != nil {
		return err
	}
	items := make([]*seedItem, len(rest))
	for k, s := range rest {
		items[k] = &seedItem{name: s.name, slice: o.newSlice(s.name, from+1+k)}
	}
	rev, err := o.seeder.Write(ctx, o.ns, t, items)
	if err != nil {
		return err
	}
	for k, s := range rest {
		s.mu.Lock()
		s.clusterIP, s.slice = items[k].ip, items[k].slice
		s.mu.Unlock()
	}
	return o.waitServed(ctx, rev)
}

// markTaken tells the seeder every address the API server has allocated.
func (o *Objects) markTaken(ctx context.Context) error {
	list, err := o.cs.NetworkingV1().IPAddresses().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing IPAddresses: %w", err)
	}
	for _, a := range list.Items {
		if ip, err := netip.ParseAddr(a.Name); err == nil {
			o.seeder.Taken(ip)
		}
	}
	return nil
}

// waitServed waits until the API server's caches of Services and EndpointSlices have
// reached etcd revision rev (a list at least as new as rev, served once they have).
func (o *Objects) waitServed(ctx context.Context, rev int64) error {
	opts := metav1.ListOptions{ResourceVersion: strconv.FormatInt(rev, 10),
		ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan, Limit: 1}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		_, err := o.cs.CoreV1().Services(o.ns).List(ctx, opts)
		if err == nil {
			_, err = o.cs.DiscoveryV1().EndpointSlices(o.ns).List(ctx, opts)
		}
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the API server did not reach etcd revision %d of the seeded objects in 5 minutes: %w", rev, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
