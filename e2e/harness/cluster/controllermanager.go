package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
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

// RealNodeControllers are the controllers added with Options.RealNodes.
var RealNodeControllers = []string{"daemonset", "root-ca-cert-publisher"}

// SchedulerPort is kube-scheduler's secure port, inside the api namespace.
const SchedulerPort = 10259

// controllerManagerArgv returns kube-controller-manager's command line.
func (c *Cluster) controllerManagerArgv() []string {
	bin, _ := c.binary("kube-controller-manager") // Start checked it exists
	controllers := ControllerManagerControllers
	if c.opts.Controllers != nil {
		controllers = c.opts.Controllers
	}
	var extra []string
	if c.opts.RealNodes {
		controllers = append(slices.Clone(controllers), RealNodeControllers...)
		// The CA of the API server's serving certificate (writeServingCerts): what pods trust.
		extra = append(extra, "--root-ca-file="+filepath.Join(c.dir, "certs", caCertFile))
	}
	return append([]string{bin,
		"--kubeconfig=" + c.Kubeconfig(),
		"--controllers=" + strings.Join(controllers, ","),
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", ControllerManagerPort),
		"--cert-dir=" + c.dir + "/kcm-certs",
	}, extra...)
}

// startScheduler starts kube-scheduler (Options.RealNodes) and waits for its /healthz.
func (c *Cluster) startScheduler(ctx context.Context) error {
	bin, err := c.binary("kube-scheduler")
	if err != nil {
		return err
	}
	p, err := c.startProcess("kube-scheduler", []string{bin,
		"--kubeconfig=" + c.Kubeconfig(),
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", SchedulerPort),
		"--cert-dir=" + c.dir + "/scheduler-certs",
	})
	if err != nil {
		return err
	}
	return c.waitReady(ctx, p, func(ctx context.Context) error {
		body, err := c.httpGet(ctx, fmt.Sprintf("https://127.0.0.1:%d/healthz", SchedulerPort), "")
		if err == nil && strings.TrimSpace(body) != "ok" {
			err = fmt.Errorf("cluster: kube-scheduler healthz: %q", body)
		}
		return err
	})
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
