package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

// The rolled Service: RollPods pods bound to node-b (there is no kubelet: the benchmark
// writes their status, with fake addresses of 10.164.0.0/16), selected by one Service
// whose EndpointSlices the embedded cluster's EndpointSlice controller writes. A rolling
// update replaces every pod, one at a time at a steady rate, as a Deployment with
// maxSurge 1 and maxUnavailable 0 would: the new pod becomes ready, then the old one goes.
const (
	rollService = "roll"
	rollLabel   = "app"
)

// rollBase is the first rolled pod address; generation g's pod i gets rollBase + g·n + i.
var rollBase = netip.MustParseAddr("10.164.0.0")

// rollPod is one pod of the rolled Service.
type rollPod struct {
	name string
	addr netip.Addr
}

// rollKit creates, rolls and removes the rolled Service's pods.
type rollKit struct {
	cs   kubernetes.Interface
	ns   string
	node string

	clusterIP netip.Addr
	pods      []rollPod
	// retired are the addresses of pods deleted by the last rolling update.
	retired []netip.Addr
	gen     int
}

func newRollKit(cs kubernetes.Interface, ns, node string) *rollKit {
	return &rollKit{cs: cs, ns: ns, node: node}
}

// addrs returns the Service's cluster IP and its pods' current addresses.
func (k *rollKit) addrs() []netip.Addr {
	out := []netip.Addr{k.clusterIP}
	for _, p := range k.pods {
		out = append(out, p.addr)
	}
	return out
}

// newPod returns generation k.gen's pod i.
func (k *rollKit) newPod(i, n int) rollPod {
	return rollPod{name: fmt.Sprintf("roll-%d-%04d", k.gen, i), addr: addOffset(rollBase, uint32(k.gen*n+i))}
}

// setup creates the Service and n ready pods, and waits until the EndpointSlice
// controller's slices hold every pod as a ready endpoint.
func (k *rollKit) setup(ctx context.Context, n int) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: rollService, Namespace: k.ns},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: map[string]string{rollLabel: rollService},
			Ports:    []corev1.ServicePort{{Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(TargetPort)}},
		},
	}
	got, err := k.cs.CoreV1().Services(k.ns).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("service %s/%s: %w", k.ns, rollService, err)
	}
	if k.clusterIP, err = netip.ParseAddr(got.Spec.ClusterIP); err != nil {
		return fmt.Errorf("service %s/%s: cluster IP %q: %w", k.ns, rollService, got.Spec.ClusterIP, err)
	}
	k.pods = make([]rollPod, n)
	for i := range n {
		k.pods[i] = k.newPod(i, n)
	}
	if err := k.createPods(ctx, k.pods, 16); err != nil {
		return err
	}
	return k.waitSlices(ctx, k.pods, 3*time.Minute)
}

// createPods creates pods and reports each running and ready, with workers concurrent
// writers.
func (k *rollKit) createPods(ctx context.Context, pods []rollPod, workers int) error {
	jobs := make(chan rollPod)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range jobs {
				if err := k.createPod(ctx, p, nil); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for _, p := range pods {
		jobs <- p
	}
	close(jobs)
	wg.Wait()
	return errors.Join(errs...)
}

// createPod creates p bound to the node, then writes its status (running, ready, its
// address); before runs just before the status write.
func (k *rollKit) createPod(ctx context.Context, p rollPod, before func()) error {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: k.ns, Labels: map[string]string{rollLabel: rollService}},
		Spec: corev1.PodSpec{
			NodeName:                     k.node,
			AutomountServiceAccountToken: ptr(false),
			Containers: []corev1.Container{{Name: "server", Image: "registry.invalid/portico-bench",
				Ports: []corev1.ContainerPort{{ContainerPort: TargetPort, Protocol: corev1.ProtocolTCP}}}},
		},
	}
	api := k.cs.CoreV1().Pods(k.ns)
	got, err := withRetry(ctx, func() (*corev1.Pod, error) { return api.Create(ctx, pod, metav1.CreateOptions{}) })
	if err != nil {
		return fmt.Errorf("pod %s/%s: %w", k.ns, p.name, err)
	}
	now := metav1.Now()
	got.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: p.addr.String(), PodIPs: []corev1.PodIP{{IP: p.addr.String()}},
		StartTime: &now,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		},
	}
	if before != nil {
		before()
	}
	if _, err := withRetry(ctx, func() (*corev1.Pod, error) { return api.UpdateStatus(ctx, got, metav1.UpdateOptions{}) }); err != nil {
		return fmt.Errorf("status of pod %s/%s: %w", k.ns, p.name, err)
	}
	return nil
}

// deletePod deletes a pod at once (grace period 0: no kubelet would confirm it).
func (k *rollKit) deletePod(ctx context.Context, name string) error {
	err := k.cs.CoreV1().Pods(k.ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting pod %s/%s: %w", k.ns, name, err)
	}
	return nil
}

// waitSlices waits until the Service's EndpointSlices hold exactly pods' addresses, all
// ready.
func (k *rollKit) waitSlices(ctx context.Context, pods []rollPod, timeout time.Duration) error {
	want := make(map[string]bool, len(pods))
	for _, p := range pods {
		want[p.addr.String()] = true
	}
	deadline := time.Now().Add(timeout)
	for {
		ready, total, err := k.sliceEndpoints(ctx, want)
		if err == nil && ready == len(want) && total == len(want) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s the EndpointSlices of %s/%s hold %d of %d pods ready (%d endpoints; %v)", timeout, k.ns, rollService, ready, len(want), total, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// sliceEndpoints counts the endpoints of the Service's slices that are ready and in want,
// and all endpoints.
func (k *rollKit) sliceEndpoints(ctx context.Context, want map[string]bool) (ready, total int, err error) {
	list, err := k.cs.DiscoveryV1().EndpointSlices(k.ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + rollService})
	if err != nil {
		return 0, 0, err
	}
	for _, sl := range list.Items {
		for _, e := range sl.Endpoints {
			total++
			if e.Conditions.Ready != nil && *e.Conditions.Ready && len(e.Addresses) > 0 && want[e.Addresses[0]] {
				ready++
			}
		}
	}
	return ready, total, nil
}

// teardown deletes the Service, its pods and the slices the controller made for it.
func (k *rollKit) teardown(ctx context.Context) error {
	var errs []error
	if err := k.cs.CoreV1().Services(k.ns).Delete(ctx, rollService, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, err)
	}
	sel := metav1.ListOptions{LabelSelector: rollLabel + "=" + rollService}
	if err := k.cs.CoreV1().Pods(k.ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))}, sel); err != nil {
		errs = append(errs, err)
	}
	slices := metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + rollService}
	if err := k.cs.DiscoveryV1().EndpointSlices(k.ns).DeleteCollection(ctx, metav1.DeleteOptions{}, slices); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Rolling is a rolling update of the rolled Service, timed per new pod from the write
// that made it ready to the first kernel notification holding its address.
type Rolling struct {
	Pods int     `json:"pods"`
	Rate float64 `json:"rate"`
	// Seconds is how long the writes took; Achieved the replacements per second.
	Seconds  float64 `json:"seconds"`
	Achieved float64 `json:"achieved"`
	Ready    Latency `json:"ready"`
	// NewInRules and OldInRules count the new and the replaced pods' addresses node-a's
	// ruleset held afterwards (checkRolled); CheckError says why it could not be read.
	NewInRules int    `json:"new_in_rules"`
	OldInRules int    `json:"old_in_rules"`
	CheckError string `json:"check_error,omitempty"`
}

// CheckText says what node-a's ruleset held after the rolling update.
func (rl *Rolling) CheckText() string {
	if rl.CheckError != "" {
		return "not checked: " + rl.CheckError
	}
	return fmt.Sprintf("%d of %d new pods, %d of %d old ones", rl.NewInRules, rl.Pods, rl.OldInRules, rl.Pods)
}

// rollOpts are the rolling update's parameters.
type rollOpts struct {
	rate    float64
	timeout time.Duration
}

// measureRolling replaces every pod of the rolled Service, one every 1/rate seconds: the
// new pod is created and made ready (timed from just before that write), then the old one
// is deleted. Samples not seen within the timeout count as missed.
func measureRolling(ctx context.Context, mon *Monitor, k *rollKit, o rollOpts) (*Rolling, error) {
	n := len(k.pods)
	rl := &Rolling{Pods: n, Rate: o.rate}
	rl.Ready.MsgTypes = map[string]int{}
	monBefore := mon.Stats()
	k.gen++
	step := time.Duration(float64(time.Second) / o.rate)
	type pending struct {
		w  *Watch
		t0 time.Time
	}
	var waits []pending
	start := time.Now()
	var old []netip.Addr
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * step)); d > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(d):
			}
		}
		np := k.newPod(i, n)
		var pw pending
		err := k.createPod(ctx, np, func() { pw = pending{w: mon.Watch(np.addr), t0: time.Now()} })
		if err == nil {
			err = k.deletePod(ctx, k.pods[i].name)
		}
		if err != nil {
			rl.Ready.Errors++
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		}
		waits = append(waits, pw)
		old = append(old, k.pods[i].addr)
		k.pods[i] = np
	}
	rl.Seconds = time.Since(start).Seconds()
	rl.Achieved = float64(n) / rl.Seconds
	k.retired = old
	for _, p := range waits {
		if !waitWatch(ctx, p.w, p.t0.Add(o.timeout)) {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			rl.Ready.Missed++
			mon.Unwatch(p.w)
			continue
		}
		rl.Ready.Values = append(rl.Ready.Values, p.w.At.Sub(p.t0).Seconds()*1e3)
		rl.Ready.MsgTypes[p.w.MsgType]++
	}
	rl.Ready.Samples = len(rl.Ready.Values)
	rl.Ready.finish()
	rl.Ready.Commits = mon.Stats().Delta(monBefore).Gens
	return rl, nil
}

// waitWatch waits until w is satisfied (true), the deadline passes or ctx ends (false).
// A watch satisfied before the deadline counts even when the deadline is already past.
func waitWatch(ctx context.Context, w *Watch, deadline time.Time) bool {
	select {
	case <-w.Done():
		return !w.At.After(deadline)
	default:
	}
	t := time.NewTimer(max(0, time.Until(deadline)))
	defer t.Stop()
	select {
	case <-w.Done():
		return !w.At.After(deadline)
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// rollAddr matches the rolled pods' addresses in `nft list ruleset` output.
var rollAddr = regexp.MustCompile(`\b10\.164\.\d{1,3}\.\d{1,3}\b`)

// checkRolled reads node-a's ruleset after a rolling update (once the EndpointSlice
// controller's slices hold the new pods and the proxy had two seconds to follow) and
// counts the new pods' and the replaced pods' addresses it holds.
func checkRolled(ctx context.Context, topo *netns.Topology, k *rollKit, rl *Rolling) error {
	if err := k.waitSlices(ctx, k.pods, time.Minute); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	out, err := topo.Exec(ctx, netns.NodeA, "nft", "list", "ruleset").Output()
	if err != nil {
		return fmt.Errorf("nft list ruleset in node-a: %w", err)
	}
	seen := map[string]bool{}
	for _, m := range rollAddr.FindAll(out, -1) {
		seen[string(m)] = true
	}
	rl.NewInRules, rl.OldInRules = 0, 0
	for _, p := range k.pods {
		if seen[p.addr.String()] {
			rl.NewInRules++
		}
	}
	for _, a := range k.retired {
		if seen[a.String()] {
			rl.OldInRules++
		}
	}
	return nil
}
