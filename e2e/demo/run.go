package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/portico-dev/portico/config"
	"github.com/portico-dev/portico/e2e/harness/env"
	"github.com/portico-dev/portico/e2e/harness/kubelet"
	"github.com/portico-dev/portico/e2e/harness/netns"
)

const steps = 6

// run is the whole demo.
func run(ctx context.Context, o options) (err error) {
	fmt.Printf("\033[1mportico demo\033[0m: a kube-proxy replacement programming a real kernel (mode %s)\n", o.mode)
	start := time.Now()
	step(1, steps, "Network and control plane")
	daemonSet, err := deployMode(o)
	if err != nil {
		return err
	}
	eo := env.Options{Mode: o.mode, NoPortico: true, Keep: o.keep, Log: info, RealNodes: daemonSet}
	if o.keep {
		// Kept pods need servers that outlive this process: run them as processes.
		self, err := os.Executable()
		if err != nil {
			return err
		}
		eo.ServerCommand = []string{self, "-serve"}
	}
	e, err := env.Setup(ctx, eo)
	if err != nil {
		return err
	}
	var node *kubelet.Node
	defer func() {
		if err != nil || !o.keep {
			fmt.Println("\nTearing down: stopping portico, kube-apiserver and etcd, deleting the namespaces.")
			if node != nil {
				_ = node.Stop()
			}
			_ = e.Teardown()
		}
	}()
	describeNetwork(e)
	if daemonSet {
		node, err = startDaemonSet(ctx, e, o)
	} else {
		err = startPortico(ctx, e, o)
	}
	if err != nil {
		return err
	}
	svcs, err := applyExamples(ctx, e, o.examples)
	if err != nil {
		return err
	}
	if err := showTraffic(ctx, e, svcs); err != nil {
		return err
	}
	if err := showDump(ctx, e); err != nil {
		return err
	}
	fmt.Printf("\nDemo finished in %s.\n", since(start))
	if o.keep {
		return keep(e)
	}
	return nil
}

// describeNetwork prints the topology's addresses.
func describeNetwork(e *env.Env) {
	t := e.Topo
	info("node-a  %-15s (portico runs here)   pods: pod-a1 %s, pod-a2 %s",
		t.NodeIP(netns.NodeA, netns.IPv4), t.PodIP(netns.PodA1, netns.IPv4), t.PodIP(netns.PodA2, netns.IPv4))
	info("node-b  %-15s (a remote node)       pods: pod-b1 %s, pod-b2 %s",
		t.NodeIP(netns.NodeB, netns.IPv4), t.PodIP(netns.PodB1, netns.IPv4), t.PodIP(netns.PodB2, netns.IPv4))
	info("client  %v (outside the cluster; routes 192.168.60.0/24 to node-a)", t.ClientIPs(netns.IPv4))
	info("every pod runs a server on port %d (TCP and UDP) that answers with its own address and the one it saw", env.ServerPort)
}

// startPortico runs portico from the example ConfigMap's config.conf.
func startPortico(ctx context.Context, e *env.Env, o options) error {
	step(2, steps, "portico on node-a, configured by the kube-system/kube-proxy ConfigMap")
	doc, err := exampleConfig(filepath.Join(o.examples, "kube-proxy-configmap.yaml"))
	if err != nil {
		return err
	}
	doc["mode"] = o.mode
	doc["clientConnection"] = map[string]any{"kubeconfig": e.Cluster.Kubeconfig()}
	info("config.conf from %s/kube-proxy-configmap.yaml (kubeadm's format), mode: %s", o.examples, o.mode)
	info("kubeconfig: the demo's admin credentials (a DaemonSet uses its service account)")
	e.Portico.Reconfigure(doc)
	t := time.Now()
	if err := e.Portico.Start(ctx); err != nil {
		return err
	}
	info("portico --config=<config.conf> --hostname-override=node-a  (pid %d, healthy in %s)", e.Portico.PID(), since(t))
	return nil
}

// deployMode reports whether portico runs as a DaemonSet pod (-deploy daemonset) rather
// than as a process.
func deployMode(o options) (bool, error) {
	switch o.deploy {
	case "", "process":
		return false, nil
	case "daemonset":
		if o.keep {
			return false, fmt.Errorf("KEEP=1 is not supported with DEPLOY=daemonset: the node's kubelet and containerd stop with the demo")
		}
		return true, nil
	}
	return false, fmt.Errorf("DEPLOY=%q: want process or daemonset", o.deploy)
}

// startDaemonSet runs portico the way an operator does: a real kubelet with containerd on
// node-a, portico's image built and imported, deploy/overlays/<mode> applied with
// `kubectl apply -k`, and the DaemonSet's pod Ready through its readiness probe. It also
// writes the process harness's configuration, for `portico dump`.
func startDaemonSet(ctx context.Context, e *env.Env, o options) (*kubelet.Node, error) {
	step(2, steps, "portico as the DaemonSet of deploy/overlays/%s, run by a real kubelet on node-a", o.mode)
	t := time.Now()
	node, err := kubelet.StartNode(ctx, e, filepath.Join(e.Dir, "node-work"), info)
	if err != nil {
		return node, err
	}
	out, err := kubelet.Apply(ctx, e, filepath.Join(e.Dir, "node-work"), o.mode)
	if err != nil {
		return node, err
	}
	info("kubectl apply -k deploy/overlays/%s (image and API server address set by a kustomization over it):\n%s", o.mode, indent(out, "        "))
	pod, err := node.WaitPodReady(ctx, "", 3*time.Minute)
	if err != nil {
		return node, err
	}
	info("pod %s Ready on %s (%s since the node started)", pod.Name, pod.Spec.NodeName, since(t))
	info("note: node-a's example pods now belong to that kubelet, which cannot pull their images here (no")
	info("registry): they stay not Ready, and the pods of node-b (no kubelet: the demo plays it) answer")
	e.Portico.Reconfigure(map[string]any{"mode": o.mode})
	_, err = e.Portico.WriteConfig(ctx)
	return node, err
}

// exampleConfig reads the KubeProxyConfiguration out of the example ConfigMap.
func exampleConfig(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cm corev1.ConfigMap
	if err := yaml.Unmarshal(b, &cm); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	data, err := config.FromConfigMap(&cm)
	if err != nil {
		return nil, err
	}
	doc := map[string]any{}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: config.conf: %w", path, err)
	}
	return doc, nil
}

// keep leaves everything running and says how to reach it.
func keep(e *env.Env) error {
	if err := saveState(e); err != nil {
		return err
	}
	p := e.Topo.Prefix()
	kubectl := fmt.Sprintf("ip netns exec %s-node-a %s --kubeconfig %s", p, kubectlPath(), e.Cluster.Kubeconfig())
	fmt.Println("\n\033[1mKept running\033[0m (KEEP=1). Try:")
	fmt.Printf("  %s get svc,endpointslices -n demo\n", kubectl)
	fmt.Printf("  %s apply -f examples/\n", kubectl)
	fmt.Printf("  ip netns exec %s-client curl -s http://192.168.50.10:30007/   # a NodePort; any HTTP client works\n", p)
	fmt.Printf("  ip netns exec %s-node-a %s dump --config=%s/config.conf\n", p, e.Portico.Bin(), e.Dir)
	fmt.Printf("  portico's log: %s/portico.log\n", e.Dir)
	fmt.Println("Stop it with: make demo-down")
	return nil
}

func kubectlPath() string {
	if wd, err := os.Getwd(); err == nil {
		return filepath.Join(wd, ".cache", "bin", "kubectl")
	}
	return "kubectl"
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return prefix + strings.Join(lines, "\n"+prefix)
}
