//go:build e2e

package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/portico-dev/portico/e2e/harness/env"
	"github.com/portico-dev/portico/e2e/harness/netns"
)

// TestSeededServices checks that Services the seeder writes into etcd are served by a
// real kube-apiserver like the ones it created itself: same spec and status, their
// IPAddresses, their slices; that they can be changed and deleted through the API (which
// then releases their addresses); and that the seeder never takes an address that is
// allocated already, whether it was told of it or finds it in etcd.
func TestSeededServices(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	e, err := env.Setup(ctx, env.Options{NoPortico: true, ServiceCIDR: serviceCIDR, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Teardown(); err != nil {
			t.Error(err)
		}
	})
	objs, err := NewObjects(e.Cluster.RESTConfig(), 3, netns.NodeB, "zone-b")
	if err != nil {
		t.Fatal(err)
	}
	if err := objs.EnsureNamespace(ctx); err != nil {
		t.Fatal(err)
	}
	seeder, err := NewSeeder(etcdClientAddr, e.Topo.Dialer(netns.API), seedRange)
	if err != nil {
		t.Fatal(err)
	}
	defer seeder.Close()
	objs.UseSeeder(seeder)
	// An address the seeder would pick, allocated through the API beforehand.
	taken := seedFirst.Next()
	createWithIP(ctx, t, objs, "taken", taken)

	if err := objs.Grow(ctx, 50, 1); err != nil {
		t.Fatal(err)
	}
	// A seeder that forgot what it wrote and was told nothing collides with every address
	// of the first 50: the guards must make it skip them.
	seeder.next, seeder.taken = seedFirst, map[netip.Addr]bool{}
	tmpl, err := seeder.readTemplate(ctx, Namespace, "s00000", "s00000-1", objs.ClusterIP(0))
	if err != nil {
		t.Fatal(err)
	}
	items := make([]*seedItem, 50)
	for k := range items {
		name := fmt.Sprintf("x%05d", k)
		items[k] = &seedItem{name: name, slice: objs.newSlice(name, 50+k)}
	}
	rev, err := seeder.Write(ctx, Namespace, tmpl, items)
	if err != nil {
		t.Fatal(err)
	}
	// As Objects.Grow does: the API server serves the writes once its caches reached them
	// (without the wait, a list once missed the last items).
	if err := objs.waitServed(ctx, rev); err != nil {
		t.Fatal(err)
	}
	want := map[string]netip.Addr{}
	for i := range objs.Count() {
		want[objs.svcs[i].name] = objs.ClusterIP(i)
	}
	for _, it := range items {
		want[it.name] = it.ip
	}
	checkAddresses(ctx, t, objs, want, taken)
	checkLikeCreated(ctx, t, objs)
	checkSlices(ctx, t, objs)

	// A seeded slice changes through the API (its stored version is the one Objects holds).
	if _, err := objs.ReplaceEndpoint(ctx, 7, objs.NextAddr(), rand.New(rand.NewPCG(1, 2)), nil); err != nil {
		t.Fatalf("changing seeded Service 7's slice: %v", err)
	}
	// Deleting a seeded Service through the API releases its address.
	ip := objs.ClusterIP(9)
	if err := objs.cs.CoreV1().Services(Namespace).Delete(ctx, "s00009", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := objs.cs.NetworkingV1().IPAddresses().Get(ctx, ip.String(), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("IPAddress %s of the deleted seeded Service s00009 still there after 30 s (err %v)", ip, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func createWithIP(ctx context.Context, t *testing.T, objs *Objects, name string, ip netip.Addr) {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace},
		Spec: corev1.ServiceSpec{ClusterIP: ip.String(),
			Ports: []corev1.ServicePort{{Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(TargetPort)}}},
	}
	if _, err := objs.cs.CoreV1().Services(Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// checkAddresses: every seeded Service has the ClusterIP in want, all distinct and none
// the address taken beforehand, each with its IPAddress pointing back at it.
func checkAddresses(ctx context.Context, t *testing.T, objs *Objects, want map[string]netip.Addr, taken netip.Addr) {
	t.Helper()
	list, err := objs.cs.CoreV1().Services(Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]string{}
	for _, s := range list.Items {
		byName[s.Name] = s.Spec.ClusterIP
	}
	seen := map[netip.Addr]string{taken: "taken"}
	for name, ip := range want {
		if byName[name] != ip.String() {
			t.Errorf("Service %s: the API serves ClusterIP %q, the seeder recorded %s", name, byName[name], ip)
		}
		if other, dup := seen[ip]; dup {
			t.Errorf("Service %s got address %s of %s", name, ip, other)
		}
		seen[ip] = name
		a, err := objs.cs.NetworkingV1().IPAddresses().Get(ctx, ip.String(), metav1.GetOptions{})
		if err != nil {
			t.Errorf("IPAddress of Service %s: %v", name, err)
		} else if a.Spec.ParentRef == nil || a.Spec.ParentRef.Name != name || a.Spec.ParentRef.Namespace != Namespace {
			t.Errorf("IPAddress %s refers to %+v, want Service %s/%s", ip, a.Spec.ParentRef, Namespace, name)
		}
	}
	if len(want) != 100 {
		t.Errorf("%d Services checked, want 100", len(want))
	}
}

// checkLikeCreated: a seeded Service as the API serves it equals the one created through
// the API, but for identity (name, UID, version, time, address).
func checkLikeCreated(ctx context.Context, t *testing.T, objs *Objects) {
	t.Helper()
	get := func(name string) *corev1.Service {
		s, err := objs.cs.CoreV1().Services(Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.ObjectMeta = metav1.ObjectMeta{Namespace: s.Namespace, Labels: s.Labels, Annotations: s.Annotations}
		s.Spec.ClusterIP, s.Spec.ClusterIPs = "", nil
		return s
	}
	created, seeded := get("s00000"), get("s00042")
	if !reflect.DeepEqual(created, seeded) {
		t.Errorf("seeded Service differs from the created one:\ncreated %+v\nseeded  %+v", created, seeded)
	}
}

// checkSlices: the API serves every bulk slice with the endpoints Objects recorded.
func checkSlices(ctx context.Context, t *testing.T, objs *Objects) {
	t.Helper()
	list, err := objs.cs.DiscoveryV1().EndpointSlices(Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for _, sl := range list.Items {
		for _, ep := range sl.Endpoints {
			served[ep.Addresses[0]] = true
		}
	}
	want := 0
	for _, a := range objs.Expected() {
		if !seedRange.Contains(a) { // an endpoint, not a ClusterIP
			want++
			if !served[a.String()] {
				t.Errorf("endpoint %s recorded but not served", a)
			}
		}
	}
	if want != 50*3 {
		t.Errorf("%d endpoint addresses recorded, want 150", want)
	}
}
