// Package env assembles a whole e2e environment: the netns topology, the control plane with
// its Node objects, a traffic server in every pod namespace and portico in node-a. The e2e
// tests and `make demo` both build on it.
package env

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/portico-dev/portico/e2e/harness/cluster"
	"github.com/portico-dev/portico/e2e/harness/netns"
	"github.com/portico-dev/portico/e2e/harness/portico"
	"github.com/portico-dev/portico/e2e/harness/proc"
	"github.com/portico-dev/portico/e2e/harness/traffic"
)

// ServerPort is the port every pod's traffic server listens on, for TCP and UDP.
const ServerPort = 8080

// Options configure an Env.
type Options struct {
	// Mode is portico's proxy mode (default nftables).
	Mode string
	// PorticoConfig overrides fields of portico's KubeProxyConfiguration.
	PorticoConfig map[string]any
	// NoPortico leaves portico stopped (the caller starts it).
	NoPortico bool
	// Keep leaves every process running and every namespace in place after the caller
	// exits (Teardown is then up to the user).
	Keep bool
	// ServerCommand, when set, runs each pod's traffic server as its own process (argv
	// followed by "-addrs A,B -ports 8080/TCP,8080/UDP", inside the pod's namespace)
	// instead of in the caller, so that servers outlive it (with Keep).
	ServerCommand []string
	// IPTablesVariant, in iptables mode, is the iptables variant node-a uses: "nft" or
	// "legacy". Setup creates kubelet's hint chain with it before portico starts, and
	// every start of portico fails unless its log says it picked that variant. Empty:
	// no hint, portico picks by itself. Set in another mode, Setup fails.
	IPTablesVariant string
	// RealNodes readies the control plane for real kubelets (cluster.Options.RealNodes)
	// and adds the token user KubeletUser, allowed everything, for them.
	RealNodes bool
	// ServiceCIDR is the apiserver's Service range (default cluster.DefaultServiceCIDR).
	ServiceCIDR string
	// Controllers are kube-controller-manager's controllers (cluster.Options.Controllers;
	// nil: cluster.ControllerManagerControllers).
	Controllers []string
	// Log receives progress lines (default: discard).
	Log func(format string, args ...any)
}

// KubeletUser is the token user of the real kubelets (Options.RealNodes): in the
// system:nodes group, and in system:masters so that no node authorizer is needed.
const KubeletUser = "system:node:kubelet"

// Env is a running environment.
type Env struct {
	Topo    *netns.Topology
	Cluster *cluster.Cluster
	Portico *portico.Portico
	Servers map[string]*traffic.Server
	// ServerProcs are the traffic server processes (with Options.ServerCommand).
	ServerProcs []*proc.Process
	Dir         string
	opts        Options
	// barrierMu serialises WaitProgrammed; barriers counts its calls (barrier.go).
	barrierMu sync.Mutex
	barriers  int
}

// Setup builds the environment. On error, everything built so far is torn down.
func Setup(ctx context.Context, opts Options) (e *Env, err error) {
	if opts.Log == nil {
		opts.Log = func(string, ...any) {}
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the e2e environment needs root: it creates network namespaces, links, rules and processes")
	}
	if err := opts.checkIPTablesVariant(); err != nil {
		return nil, err
	}
	_, _ = netns.CleanupStale()
	_, _ = cluster.CleanupStale("")
	e = &Env{opts: opts, Servers: map[string]*traffic.Server{}}
	built := e // the returns below set e to nil: tear down what they leave behind
	defer func() {
		if err != nil {
			_ = built.Teardown()
		}
	}()
	if e.Dir, err = os.MkdirTemp("", "portico-e2e-"); err != nil {
		return nil, err
	}
	if err := e.buildNetwork(ctx); err != nil {
		return nil, err
	}
	if err := e.startControlPlane(ctx); err != nil {
		return nil, err
	}
	if err := e.startServers(); err != nil {
		return nil, err
	}
	if opts.IPTablesVariant != "" {
		opts.Log("creating kubelet's %s chain with iptables-%s in %s", KubeletHintChain, opts.IPTablesVariant, e.Topo.Name(netns.NodeA))
		if err := e.CreateKubeletHint(ctx); err != nil {
			return nil, err
		}
	}
	e.Portico = portico.New(portico.Options{
		Topology: e.Topo, Cluster: e.Cluster, Mode: opts.Mode, Config: opts.PorticoConfig,
		Dir: e.Dir, Detach: opts.Keep, IPTablesVariant: opts.IPTablesVariant,
	})
	if opts.NoPortico {
		return e, nil
	}
	opts.Log("starting portico (mode %s) in %s", e.Portico.ConfigDocument()["mode"], e.Topo.Name(netns.NodeA))
	return e, e.Portico.Start(ctx)
}

func (e *Env) buildNetwork(ctx context.Context) error {
	e.Topo = netns.New(netns.DefaultSpec(""))
	e.opts.Log("creating network namespaces %s-{api,lan,node-a,node-b,pod-a1,pod-a2,pod-b1,pod-b2,client}", e.Topo.Prefix())
	return e.Topo.Create(ctx)
}

func (e *Env) startControlPlane(ctx context.Context) error {
	copts := cluster.Options{Topology: e.Topo, WorkDir: e.Dir, KeepDir: e.opts.Keep, Detach: e.opts.Keep, RealNodes: e.opts.RealNodes,
		ServiceCIDR: e.opts.ServiceCIDR, Controllers: e.opts.Controllers}
	if e.opts.RealNodes {
		copts.Users = []cluster.User{{Name: KubeletUser, Groups: []string{"system:nodes", "system:masters"}}}
	}
	e.Cluster = cluster.New(copts)
	e.opts.Log("starting etcd, kube-apiserver (%s) and kube-controller-manager in %s", e.Cluster.APIServerURL(), e.Topo.Name(netns.API))
	if err := e.Cluster.Start(ctx); err != nil {
		return err
	}
	e.opts.Log("creating Node objects node-a and node-b")
	return e.Cluster.CreateNodes(ctx)
}

// startServers starts a TCP and UDP traffic server on ServerPort in every pod namespace.
func (e *Env) startServers() error {
	ports := []traffic.PortSpec{{Port: ServerPort, Protocol: "TCP"}, {Port: ServerPort, Protocol: "UDP"}}
	for _, n := range e.Topo.Spec().Nodes {
		for _, pod := range n.Pods {
			if len(e.opts.ServerCommand) > 0 {
				if err := e.startServerProcess(pod.Name); err != nil {
					return err
				}
				continue
			}
			s, err := traffic.Serve(e.Topo, pod.Name, nil, ports)
			if err != nil {
				return fmt.Errorf("traffic server in %s: %w", pod.Name, err)
			}
			e.Servers[pod.Name] = s
		}
	}
	return nil
}

// startServerProcess runs a pod's traffic server as a process of its own.
func (e *Env) startServerProcess(pod string) error {
	var addrs []string
	for _, a := range e.Topo.Addrs(pod) {
		addrs = append(addrs, a.String())
	}
	argv := append(append([]string{}, e.opts.ServerCommand...),
		"-addrs", strings.Join(addrs, ","), "-ports", fmt.Sprintf("%d/TCP,%d/UDP", ServerPort, ServerPort))
	p := proc.New("server-"+pod, e.Topo.Name(pod), filepath.Join(e.Dir, "server-"+pod+".log"), argv)
	p.Detach = e.opts.Keep
	if _, err := p.Start(); err != nil {
		return err
	}
	e.ServerProcs = append(e.ServerProcs, p)
	return nil
}

// Teardown stops portico and the control plane and removes every namespace. With Keep it
// does nothing.
func (e *Env) Teardown() error {
	if e.opts.Keep {
		return nil
	}
	var errs []error
	if e.Portico != nil {
		errs = append(errs, e.Portico.Stop())
	}
	for _, s := range e.Servers {
		errs = append(errs, s.Close())
	}
	for _, p := range e.ServerProcs {
		errs = append(errs, p.Stop(5*time.Second))
	}
	if e.Cluster != nil {
		errs = append(errs, e.Cluster.Stop())
	}
	if e.Topo != nil {
		errs = append(errs, e.Topo.Destroy())
	}
	if e.Dir != "" {
		errs = append(errs, os.RemoveAll(e.Dir))
	}
	return errors.Join(errs...)
}
