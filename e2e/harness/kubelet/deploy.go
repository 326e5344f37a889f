package kubelet

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portico-dev/portico/e2e/harness/cluster"
	"github.com/portico-dev/portico/e2e/harness/env"
	"github.com/portico-dev/portico/e2e/harness/netns"
)

// The image portico's DaemonSet runs on the real node: built from the working tree and
// imported into containerd under this name (a tag other than latest, so that the kubelet
// never tries to pull it).
const (
	ImageName = "portico.local/portico"
	ImageTag  = "e2e"
)

// PodSelector selects portico's pods (deploy/base/daemonset.yaml).
const PodSelector = "k8s-app=portico"

// StartNode builds the pause image, starts a real node on node-a of e (set up with
// env.Options.RealNodes) with its work directory under work, builds portico's image from
// the repository with deploy/image/build.sh and imports it. logf reports progress.
func StartNode(ctx context.Context, e *env.Env, work string, logf func(string, ...any)) (*Node, error) {
	root, err := cluster.RepoRoot()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(work, "node"), 0o755); err != nil {
		return nil, err
	}
	pause := filepath.Join(work, "pause.tar")
	logf("building the pause image")
	if err := BuildPauseImage(ctx, work, pause); err != nil {
		return nil, err
	}
	kc, err := e.Cluster.KubeconfigFor(env.KubeletUser)
	if err != nil {
		return nil, err
	}
	n := New(Options{Topology: e.Topo, Cluster: e.Cluster, Kubeconfig: kc,
		BinDir: filepath.Join(root, ".cache", "bin"), Dir: filepath.Join(work, "node"), PauseArchive: pause})
	logf("starting containerd and the kubelet on node-a")
	if err := n.Start(ctx); err != nil {
		return n, err
	}
	logf("building portico's image (deploy/image/build.sh: mmdebstrap + umoci) and importing it")
	img, err := BuildPorticoImage(ctx, root, work)
	if err != nil {
		return n, err
	}
	return n, n.ImportImage(ctx, img, ImageName)
}

// BuildPorticoImage builds portico statically and its image with deploy/image/build.sh,
// tagged ImageTag, into work; it returns the OCI archive.
func BuildPorticoImage(ctx context.Context, root, work string) (string, error) {
	bin, img := filepath.Join(work, "portico"), filepath.Join(work, "portico-image.tar")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/portico")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building portico: %w: %s", err, out)
	}
	script := exec.CommandContext(ctx, filepath.Join(root, "deploy", "image", "build.sh"), bin, img, ImageTag)
	if out, err := script.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the image: %w: %s", err, out)
	}
	return img, nil
}

// TakeoverOverlay is the overlay that reads kubeadm's kube-system/kube-proxy ConfigMap,
// whose kubeconfig names the API server: it has no portico-apiserver ConfigMap to set.
const TakeoverOverlay = "kubeadm-takeover"

// Apply writes, under work, a kustomization over deploy/overlays/<overlay> that sets only
// the image (ImageName:ImageTag) and, except for TakeoverOverlay, the API server's
// address, and applies it with `kubectl apply -k` from node-a. It returns kubectl's
// output.
func Apply(ctx context.Context, e *env.Env, work, overlay string) (string, error) {
	root, err := cluster.RepoRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(work, "kustomize-"+overlay)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	base, err := filepath.Rel(dir, filepath.Join(root, "deploy", "overlays", overlay))
	if err != nil {
		return "", err
	}
	k := fmt.Sprintf("resources: [%s]\nimages:\n- name: ghcr.io/portico-dev/portico\n  newName: %s\n  newTag: %s\n",
		base, ImageName, ImageTag)
	if overlay != TakeoverOverlay {
		k += fmt.Sprintf("configMapGenerator:\n- name: portico-apiserver\n  behavior: replace\n  literals: [host=%s, port=%d]\n",
			e.Topo.APIServerIP(), cluster.APIServerPort)
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		return "", err
	}
	out, err := e.Topo.Exec(ctx, netns.NodeA, filepath.Join(root, ".cache", "bin", "kubectl"),
		"--kubeconfig", e.Cluster.Kubeconfig(), "apply", "-k", dir).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl apply -k %s: %w\n%s", dir, err, out)
	}
	return string(out), nil
}

// WaitPodReady waits up to timeout for a Ready portico pod whose UID is not notUID, and
// returns it; on timeout the error describes the last pod seen, with its log's end.
func (n *Node) WaitPodReady(ctx context.Context, notUID types.UID, timeout time.Duration) (corev1.Pod, error) {
	deadline := time.Now().Add(timeout)
	var last, name string
	for time.Now().Before(deadline) {
		pods, err := n.opts.Cluster.Client().CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: PodSelector})
		if err == nil {
			for _, p := range pods.Items {
				if p.UID != notUID && PodReady(p) {
					return p, nil
				}
				last, name = fmt.Sprintf("%s: phase %s, conditions %v", p.Name, p.Status.Phase, p.Status.Conditions), p.Name
			}
		}
		time.Sleep(time.Second)
	}
	return corev1.Pod{}, fmt.Errorf("no Ready portico pod after %v (last: %s)\nportico's log:\n%s",
		timeout, last, LastLines(n.ContainerLog("kube-system", name, "portico"), 40))
}

// PodReady reports whether p's Ready condition is true.
func PodReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}
