package env

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

// The barrier is a Service of its own whose health check answer tells the harness that
// portico has caught up with the API server. Portico's metrics only say that it has synced
// every change it has received: a write the API server has acknowledged may still be on
// its way to portico's informers (a Service's event can reach it before its
// EndpointSlice's, which leaves the Service rejecting). A watch delivers the events of one
// resource in order, so once portico shows the barrier's latest Service and EndpointSlice,
// it has received every Service and EndpointSlice written before them.
const (
	barrierNamespace = "portico-e2e-barrier"
	barrierName      = "barrier"
)

// WaitProgrammed waits until portico has received every Service and EndpointSlice written
// before the call and has synced them (and every change queued at or after since) to the
// dataplane. It rewrites the barrier Service's port name and its EndpointSlice, then waits
// until the barrier's healthCheckNodePort on node-a reports the new slice's endpoint count:
// its endpoints count only under a Service port of the same name, so a portico that has
// seen just one of the two writes reports none, and one that has seen neither reports the
// previous count, which differs.
func (e *Env) WaitProgrammed(ctx context.Context, since time.Time) error {
	e.barrierMu.Lock()
	defer e.barrierMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	e.barriers++
	svc, want, err := e.writeBarrier(ctx, e.barriers)
	if err != nil {
		return fmt.Errorf("writing the barrier Service %s/%s: %w", barrierNamespace, barrierName, err)
	}
	if err := e.waitBarrier(ctx, uint16(svc.Spec.HealthCheckNodePort), want); err != nil {
		return fmt.Errorf("portico did not catch up with the API server (barrier %d): %w; log tail:\n%s",
			e.barriers, err, e.Portico.LogTail(20))
	}
	return e.Portico.WaitProgrammed(ctx, since)
}

// writeBarrier writes barrier n: the Service's port named after n, and an EndpointSlice
// with that port and 1 or 2 ready endpoints on node-a (alternating, so that consecutive
// barriers differ). It returns the stored Service and the endpoint count.
func (e *Env) writeBarrier(ctx context.Context, n int) (*corev1.Service, int, error) {
	port := "b" + strconv.Itoa(n)
	svc, err := e.barrierService(ctx, port)
	if err != nil {
		return nil, 0, err
	}
	if svc.Spec.HealthCheckNodePort == 0 {
		return nil, 0, fmt.Errorf("the API server allocated no healthCheckNodePort")
	}
	pods := []Backend{{Pod: netns.PodA1}, {Pod: netns.PodA2}}[:1+n%2]
	if err := e.applySlice(ctx, e.slice(svc, netns.IPv4, pods)); err != nil {
		return nil, 0, err
	}
	return svc, len(pods), nil
}

// barrierService creates the barrier Service, or renames the port of the existing one
// (keeping its cluster IP and healthCheckNodePort).
func (e *Env) barrierService(ctx context.Context, port string) (*corev1.Service, error) {
	if err := e.EnsureNamespace(ctx, barrierNamespace); err != nil {
		return nil, err
	}
	api := e.Cluster.Client().CoreV1().Services(barrierNamespace)
	cur, err := api.Get(ctx, barrierName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return api.Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: barrierName, Namespace: barrierNamespace},
			Spec: corev1.ServiceSpec{
				Type:                          corev1.ServiceTypeLoadBalancer,
				ExternalTrafficPolicy:         corev1.ServiceExternalTrafficPolicyLocal,
				AllocateLoadBalancerNodePorts: ptr(false),
				Ports:                         []corev1.ServicePort{{Name: port, Port: 80, Protocol: corev1.ProtocolTCP}},
			},
		}, metav1.CreateOptions{})
	}
	if err != nil {
		return nil, err
	}
	cur.Spec.Ports[0].Name = port
	return api.Update(ctx, cur, metav1.UpdateOptions{})
}

// waitBarrier polls the health check port on each of node-a's addresses (the server
// listens on those nodePortAddresses selects) until one reports want local endpoints.
func (e *Env) waitBarrier(ctx context.Context, port uint16, want int) error {
	last := "no answer yet"
	for {
		for _, a := range e.nodeAAddrs() {
			got, err := e.localEndpoints(ctx, netip.AddrPortFrom(a, port))
			switch {
			case err != nil:
				last = err.Error()
			case got == want:
				return nil
			default:
				last = fmt.Sprintf("%s reports %d local endpoints, want %d", netip.AddrPortFrom(a, port), got, want)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %s)", ctx.Err(), last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// nodeAAddrs returns node-a's eth0 and pod bridge addresses.
func (e *Env) nodeAAddrs() []netip.Addr {
	var out []netip.Addr
	for _, n := range e.Topo.Spec().Nodes {
		if n.Name != netns.NodeA {
			continue
		}
		for _, p := range []netip.Prefix{n.IPv4, n.BridgeIPv4, n.IPv6, n.BridgeIPv6} {
			if p.IsValid() {
				out = append(out, p.Addr())
			}
		}
	}
	return out
}

// localEndpoints asks a health check server, from node-a itself, how many local
// endpoints its Service has.
func (e *Env) localEndpoints(ctx context.Context, addr netip.AddrPort) (int, error) {
	a, err := e.HTTPGet(ctx, netns.NodeA, addr, time.Second)
	if err != nil {
		return 0, err
	}
	var body struct {
		LocalEndpoints int `json:"localEndpoints"`
	}
	if err := json.Unmarshal(a.Body, &body); err != nil {
		return 0, fmt.Errorf("health check answer %q of %s is not JSON: %w", a.Body, addr, err)
	}
	return body.LocalEndpoints, nil
}
