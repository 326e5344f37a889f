package main

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/portico-dev/portico/e2e/harness/env"
	"github.com/portico-dev/portico/e2e/harness/traffic"
)

// firstLBIP is the first address the demo's "cloud" hands to LoadBalancer Services.
const firstLBIP = 10

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

// applyExamples creates every Service and EndpointSlice of the example manifests, plays
// the load-balancer controller, and waits until portico has programmed them.
func applyExamples(ctx context.Context, e *env.Env, dir string) ([]*corev1.Service, error) {
	step(3, steps, "Applying the example manifests in %s/", dir)
	objs, err := readManifests(dir)
	if err != nil {
		return nil, err
	}
	since := time.Now()
	var svcs []*corev1.Service
	lb := firstLBIP
	for _, obj := range objs {
		svc, err := applyOne(ctx, e, obj, &lb)
		if err != nil {
			return nil, err
		}
		if svc != nil {
			svcs = append(svcs, svc)
		}
	}
	if err := waitAnswering(ctx, e, svcs); err != nil {
		return nil, err
	}
	info("kube-controller-manager wrote the EndpointSlices and portico programmed them: every frontend")
	info("answers %s after the first API write (portico's minSyncPeriod of 1s coalesces the burst)", since2(since))
	return svcs, nil
}

// waitAnswering waits, at most 30 s, until every frontend of every Service answers one
// connection: the controllers and portico work asynchronously.
func waitAnswering(ctx context.Context, e *env.Env, svcs []*corev1.Service) error {
	deadline := time.Now().Add(30 * time.Second)
	for _, svc := range svcs {
		for _, p := range probesFor(e, svc) {
			for {
				r := traffic.Probe(ctx, e.Topo, p.from, netip.Addr{}, p.dst, p.proto, time.Second)
				if r.Outcome == traffic.OK {
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("%s (%s) still does not answer after 30 s: %s", p.label, p.dst, r.Outcome)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	return nil
}

func since2(t time.Time) string { return time.Since(t).Round(time.Millisecond).String() }

// readManifests decodes every document of the *.yaml files of dir, in file order,
// skipping ConfigMaps (portico's own configuration).
func readManifests(dir string) ([]runtime.Object, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []runtime.Object
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, doc := range docSeparator.Split(string(b), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			if _, isCM := obj.(*corev1.ConfigMap); !isCM {
				out = append(out, obj)
			}
		}
	}
	return out, nil
}

func stripComments(doc string) string {
	var b bytes.Buffer
	for _, l := range strings.Split(doc, "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// applyOne creates one object; for a LoadBalancer Service it also writes an ingress IP.
func applyOne(ctx context.Context, e *env.Env, obj runtime.Object, lb *int) (*corev1.Service, error) {
	switch o := obj.(type) {
	case *corev1.Service:
		svc, err := e.ApplyService(ctx, o)
		if err != nil {
			return nil, fmt.Errorf("service %s/%s: %w", o.Namespace, o.Name, err)
		}
		if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
			ip := fmt.Sprintf("192.168.60.%d", *lb)
			*lb++
			if svc, err = e.SetLoadBalancerIngress(ctx, svc, ip); err != nil {
				return nil, err
			}
		}
		info("service/%-13s %s", svc.Name, describeService(svc))
		return svc, nil
	case *discoveryv1.EndpointSlice:
		return nil, createSlice(ctx, e, o)
	case *corev1.Namespace:
		info("namespace/%s", o.Name)
		return nil, e.EnsureNamespace(ctx, o.Name)
	case *corev1.Pod:
		return nil, createPod(ctx, e, o)
	case *corev1.Endpoints: //nolint:staticcheck // what operators write for selector-less Services
		return nil, createEndpoints(ctx, e, o)
	}
	return nil, fmt.Errorf("the demo does not apply %T objects", obj)
}

// createPod creates a Pod and, playing the kubelet, reports it running and ready.
func createPod(ctx context.Context, e *env.Env, p *corev1.Pod) error {
	got, err := e.CreatePod(ctx, p)
	if err != nil {
		return err
	}
	info("pod/%-17s on %s, IP %s, Ready (reported by the demo, playing the kubelet)", got.Name, got.Spec.NodeName, got.Status.PodIP)
	return nil
}

func createEndpoints(ctx context.Context, e *env.Env, ep *corev1.Endpoints) error { //nolint:staticcheck // see applyOne
	api := e.Cluster.Client().CoreV1().Endpoints(ep.Namespace) //nolint:staticcheck // see applyOne
	if _, err := api.Create(ctx, ep, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("endpoints %s/%s: %w", ep.Namespace, ep.Name, err)
	}
	var addrs []string
	for _, s := range ep.Subsets {
		for _, a := range s.Addresses {
			for _, p := range s.Ports {
				addrs = append(addrs, fmt.Sprintf("%s:%d", a.IP, p.Port))
			}
		}
	}
	info("endpoints/%-11s %s (written by hand; mirrored into an EndpointSlice by kube-controller-manager)", ep.Name, strings.Join(addrs, ", "))
	return nil
}

func createSlice(ctx context.Context, e *env.Env, s *discoveryv1.EndpointSlice) error {
	api := e.Cluster.Client().DiscoveryV1().EndpointSlices(s.Namespace)
	_, err := api.Create(ctx, s, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("endpointslice %s/%s: %w", s.Namespace, s.Name, err)
	}
	var addrs []string
	for _, ep := range s.Endpoints {
		addrs = append(addrs, ep.Addresses[0])
	}
	info("endpointslice/%-20s for %s: %s", s.Name, s.Labels[discoveryv1.LabelServiceName], strings.Join(addrs, ", "))
	return nil
}

// describeService summarises a Service in one line.
func describeService(s *corev1.Service) string {
	if s.Spec.Type == corev1.ServiceTypeExternalName {
		return "ExternalName -> " + s.Spec.ExternalName
	}
	var ports []string
	for _, p := range s.Spec.Ports {
		pp := fmt.Sprintf("%d/%s", p.Port, p.Protocol)
		if p.NodePort != 0 {
			pp += fmt.Sprintf(" (nodePort %d)", p.NodePort)
		}
		ports = append(ports, pp)
	}
	d := fmt.Sprintf("%s %s ports %s", s.Spec.Type, s.Spec.ClusterIP, strings.Join(ports, ", "))
	for _, ing := range s.Status.LoadBalancer.Ingress {
		d += ", load balancer " + ing.IP
	}
	return d
}
