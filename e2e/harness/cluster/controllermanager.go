package cluster

import (
	"context"
	"fmt"
	"strings"
)

// ControllerManagerPort is kube-controller-manager's secure port, inside the api namespace.
const ControllerManagerPort = 10257

// ControllerManagerControllers are the kube-controller-manager controllers the harness
// runs: EndpointSlices from Pods (endpointslice), EndpointSlices from manually written
// Endpoints (endpointslicemirroring), each namespace's default ServiceAccount (Pods need
// it to be admitted) and namespace deletion. There is no scheduler and no kubelet: tests
// create Pods bound to a node and write their status themselves.
var ControllerManagerControllers = []string{"endpointslice", "endpointslicemirroring", "serviceaccount", "namespace"}

// controllerManagerArgv returns kube-controller-manager's command line.
func (c *Cluster) controllerManagerArgv() []string {
	bin, _ := c.binary("kube-controller-manager") // Start checked it exists
	return []string{bin,
		"--kubeconfig=" + c.Kubeconfig(),
		"--controllers=" + strings.Join(ControllerManagerControllers, ","),
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", ControllerManagerPort),
		"--cert-dir=" + c.dir + "/kcm-certs",
	}
}

// startControllerManager starts kube-controller-manager and waits for its /healthz.
func (c *Cluster) startControllerManager(ctx context.Context) error {
	p, err := c.startProcess("kube-controller-manager", c.controllerManagerArgv())
	if err != nil {
		return err
	}
	return c.waitReady(ctx, p, c.controllerManagerHealthy)
}

func (c *Cluster) controllerManagerHealthy(ctx context.Context) error {
	body, err := c.httpGet(ctx, fmt.Sprintf("https://127.0.0.1:%d/healthz", ControllerManagerPort), "")
	if err != nil {
		return err
	}
	if strings.TrimSpace(body) != "ok" {
		return fmt.Errorf("cluster: kube-controller-manager healthz: %q", body)
	}
	return nil
}
