//go:build e2e

package node

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/portico-dev/portico/e2e/harness/env"
	"github.com/portico-dev/portico/e2e/harness/kubelet"
	"github.com/portico-dev/portico/e2e/harness/netns"
	"github.com/portico-dev/portico/e2e/harness/traffic"
)

// echoPort is the port of the echo server in pod-a1 that keeps a connection open.
const echoPort = 8090

// TestDaemonSetOnARealKubelet applies deploy/overlays/nftables (only the image and the
// API server's address set, in a kustomization over it), lets the kubelet run portico's
// pod, waits for its readiness probe, and sends ClusterIP and NodePort traffic from the
// client through the rules it wrote; then deletes the pod, and checks that the DaemonSet's
// new pod takes over without cutting an established connection.
func TestDaemonSetOnARealKubelet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	apply(ctx, t, "nftables")
	first := waitPodReady(ctx, t, "")
	t.Logf("portico's pod %s is Ready on %s", first.Name, first.Spec.NodeName)

	web, echoSvc := createService(ctx, t)
	clusterIP := netip.AddrPortFrom(netip.MustParseAddr(web.Spec.ClusterIP), 80)
	nodePort := netip.AddrPortFrom(suite.Topo.NodeIP(netns.NodeA, netns.IPv4), uint16(web.Spec.Ports[0].NodePort))
	for _, dst := range []netip.AddrPort{clusterIP, nodePort} {
		waitAnswered(ctx, t, dst)
	}

	conn := dialEcho(ctx, t, netip.AddrPortFrom(netip.MustParseAddr(echoSvc.Spec.ClusterIP), 80))
	defer conn.Close()
	deletePod(ctx, t, first.Name)
	second := waitPodReady(ctx, t, first.UID)
	t.Logf("the DaemonSet replaced %s with %s", first.Name, second.Name)
	if r := conn.Ask(3 * time.Second); r.Outcome != traffic.OK {
		t.Errorf("the established connection did not survive the pod's replacement: %s (%v)", r.Outcome, r.Err)
	}
	waitAnswered(ctx, t, clusterIP)
}

// apply applies deploy/overlays/<overlay> with only the image and the API server's
// address set (kubelet.Apply).
func apply(ctx context.Context, t *testing.T, overlay string) {
	t.Helper()
	out, err := kubelet.Apply(ctx, suite, work, overlay)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl apply -k:\n%s", out)
}

// waitPodReady waits for a Ready portico pod whose UID is not notUID, and returns it.
func waitPodReady(ctx context.Context, t *testing.T, notUID types.UID) corev1.Pod {
	t.Helper()
	p, err := node.WaitPodReady(ctx, notUID, 3*time.Minute)
	if err != nil {
		t.Fatalf("%v\nkubelet log:\n%s", err, tail(node.Logs()["kubelet"], 20))
	}
	return p
}

func ready(p corev1.Pod) bool { return kubelet.PodReady(p) }

func deletePod(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	if err := suite.Cluster.Client().CoreV1().Pods("kube-system").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting pod %s: %v", name, err)
	}
}

// createService creates a NodePort Service "web" served by pod-a1 and pod-b1, and a
// ClusterIP Service "echo" served by pod-a1's echo server (which keeps connections open).
func createService(ctx context.Context, t *testing.T) (web, echo *corev1.Service) {
	t.Helper()
	if err := suite.EnsureNamespace(ctx, "node-e2e"); err != nil {
		t.Fatal(err)
	}
	srv, err := traffic.ServeEcho(suite.Topo, netns.PodA1, []netip.Addr{suite.Topo.PodIP(netns.PodA1, netns.IPv4)}, echoPort)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	web = service(ctx, t, "web", corev1.ServiceTypeNodePort, env.ServerPort, netns.PodA1, netns.PodB1)
	echo = service(ctx, t, "echo", corev1.ServiceTypeClusterIP, echoPort, netns.PodA1)
	return web, echo
}

// service creates a Service with one TCP port 80 to target on the pods.
func service(ctx context.Context, t *testing.T, name string, typ corev1.ServiceType, target int32, pods ...string) *corev1.Service {
	t.Helper()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "node-e2e"}, Spec: corev1.ServiceSpec{
		Type:  typ,
		Ports: []corev1.ServicePort{{Name: "tcp", Port: 80, TargetPort: intstr.FromInt32(target)}},
	}}
	got, err := suite.ApplyService(ctx, svc)
	if err != nil {
		t.Fatal(err)
	}
	var backends []env.Backend
	for _, p := range pods {
		backends = append(backends, env.Backend{Pod: p})
	}
	if err := suite.SetEndpointsPorts(ctx, got, backends, map[string]int32{"tcp": target}); err != nil {
		t.Fatal(err)
	}
	return got
}

// dialEcho opens a connection from the client to the echo Service that answers a question,
// retrying for 30 s while portico programs the Service.
func dialEcho(ctx context.Context, t *testing.T, dst netip.AddrPort) *traffic.Conn {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		c, err := traffic.Dial(ctx, suite.Topo, netns.Client, netip.Addr{}, dst, traffic.TCP, 2*time.Second)
		if err == nil {
			if r := c.Ask(2 * time.Second); r.Outcome == traffic.OK {
				return c
			} else {
				last = fmt.Sprintf("%s (%v)", r.Outcome, r.Err)
			}
			_ = c.Close()
		} else {
			last = err.Error()
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("no answering connection to the echo Service %s within 30 s: %s", dst, last)
	return nil
}

// waitAnswered waits until 8 connections in a row from the client to dst are answered.
func waitAnswered(ctx context.Context, t *testing.T, dst netip.AddrPort) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var st traffic.Stats
	for time.Now().Before(deadline) {
		st = traffic.ProbeN(ctx, suite.Topo, netns.Client, netip.Addr{}, dst, traffic.TCP, 2*time.Second, 8)
		if st.OK() == st.Sent {
			t.Logf("client -> %s: %s", dst, st)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("client -> %s not answered within 30 s: %s", dst, st)
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return lastLines(string(b), n)
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string { return kubelet.LastLines(s, n) }

// TestMissingPermissionFailsReadiness: under RBAC, portico runs with its ClusterRole only;
// with `list endpointslices` taken out of it, the restarted pod logs an error naming the
// permission and never becomes Ready; with the role restored, it does.
func TestMissingPermissionFailsReadiness(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	apply(ctx, t, "nftables")
	before := waitPodReady(ctx, t, "")
	roles := suite.Cluster.Client().RbacV1().ClusterRoles()
	role, err := roles.Get(ctx, "portico", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	restricted := role.DeepCopy()
	for i, r := range restricted.Rules {
		if slices.Contains(r.Resources, "endpointslices") {
			restricted.Rules[i].Verbs = slices.DeleteFunc(slices.Clone(r.Verbs), func(v string) bool { return v == "list" })
		}
	}
	if _, err := roles.Update(ctx, restricted, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	deletePod(ctx, t, before.Name)
	pod := waitNewPod(ctx, t, before.UID)
	waitLog(ctx, t, pod, "lacks api permissions", "list endpointslices.discovery.k8s.io")
	for range 10 {
		if p, err := suite.Cluster.Client().CoreV1().Pods("kube-system").Get(ctx, pod, metav1.GetOptions{}); err == nil && ready(*p) {
			t.Fatalf("pod %s became Ready without the permission to list EndpointSlices", pod)
		}
		time.Sleep(2 * time.Second)
	}
	t.Logf("pod %s stayed not Ready for 20 s without the permission", pod)
	apply(ctx, t, "nftables") // restores the role
	waitPodReady(ctx, t, before.UID)
}

// waitNewPod waits for a portico pod whose UID is not old, and returns its name.
func waitNewPod(ctx context.Context, t *testing.T, old types.UID) string {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		pods, err := suite.Cluster.Client().CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: kubelet.PodSelector})
		if err != nil {
			continue
		}
		for _, p := range pods.Items {
			if p.UID != old && p.DeletionTimestamp == nil {
				return p.Name
			}
		}
	}
	t.Fatal("no new portico pod within a minute")
	return ""
}

// waitLog waits until portico's log in pod has a line holding every word.
func waitLog(ctx context.Context, t *testing.T, pod string, words ...string) {
	t.Helper()
	var log string
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		log = node.ContainerLog("kube-system", pod, "portico")
		for _, line := range strings.Split(log, "\n") {
			if containsAll(strings.ToLower(line), words) {
				t.Logf("portico's log: %s", line)
				return
			}
		}
	}
	t.Fatalf("no line with %v in portico's log within a minute:\n%s", words, lastLines(log, 30))
}

func containsAll(s string, words []string) bool {
	for _, w := range words {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}

// TestKubeadmTakeover: with a kube-system/kube-proxy ConfigMap as kubeadm writes it
// (config.conf naming kubeconfig.conf, which names the API server, the ServiceAccount's
// CA and token), deploy/overlays/kubeadm-takeover (only the image set) rolls portico's
// pod over to that configuration, unchanged, and the new pod serves traffic.
func TestKubeadmTakeover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	apply(ctx, t, "nftables")
	before := waitPodReady(ctx, t, "")
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube-proxy", Namespace: "kube-system"}, Data: map[string]string{
		"config.conf": `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
bindAddress: 0.0.0.0
clusterCIDR: 10.244.0.0/16,fd00:244::/44
clientConnection:
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
`,
		"kubeconfig.conf": fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt
    server: https://%s:6443
  name: default
contexts:
- context:
    cluster: default
    namespace: default
    user: default
  name: default
current-context: default
users:
- name: default
  user:
    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token
`, suite.Topo.APIServerIP()),
	}}
	cms := suite.Cluster.Client().CoreV1().ConfigMaps("kube-system")
	_ = cms.Delete(ctx, cm.Name, metav1.DeleteOptions{}) // the harness may have written one
	if _, err := cms.Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kubelet.Apply(ctx, suite, work, kubelet.TakeoverOverlay); err != nil {
		t.Fatal(err)
	}
	after := waitPodReady(ctx, t, before.UID)
	t.Logf("the takeover overlay replaced %s with %s", before.Name, after.Name)
	if vols := after.Spec.Volumes; len(vols) == 0 || vols[0].ConfigMap == nil || vols[0].ConfigMap.Name != "kube-proxy" {
		t.Fatalf("the new pod does not mount kube-system/kube-proxy: %+v", vols)
	}
	web, _ := createService(ctx, t)
	waitAnswered(ctx, t, netip.AddrPortFrom(netip.MustParseAddr(web.Spec.ClusterIP), 80))
}
