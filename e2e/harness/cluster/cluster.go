// Package cluster runs a real Kubernetes control plane (etcd and kube-apiserver) for the
// end-to-end tests, inside the api namespace of a netns.Topology.
//
// Both processes run through `ip netns exec` in the api namespace: etcd on that
// namespace's 127.0.0.1:2379, the apiserver on the api address (10.0.255.1:6443 in the
// default topology), reachable from the node namespace that holds the other end of the
// api link. The test process stays in the root namespace; RESTConfig dials from inside
// the api namespace, so no route is ever added to the root namespace. Authentication is
// by static bearer tokens, authorization is RBAC. kube-controller-manager runs the
// EndpointSlice, EndpointSlice-mirroring, ServiceAccount and namespace controllers (unless
// Options.NoControllerManager). There is no scheduler and no kubelet: tests create Node
// objects (CreateNodes), bind Pods to nodes and write Pod status themselves.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/portico-dev/portico/e2e/harness/netns"
	"github.com/portico-dev/portico/e2e/harness/proc"
)

// Defaults of Options.
const (
	DefaultServiceCIDR  = "10.96.0.0/16,fd00:96::/112"
	DefaultStartTimeout = 90 * time.Second
	DefaultStopTimeout  = 10 * time.Second
	// APIServerPort is the apiserver's secure port.
	APIServerPort = 6443
	// AdminUser is the user of the admin token (group system:masters).
	AdminUser = "admin"
)

// Options configure a Cluster. Zero values take the documented defaults.
type Options struct {
	// BinDir holds etcd and kube-apiserver; default <repo root>/.cache/bin (see
	// e2e/tools/build.sh).
	BinDir string
	// Topology provides the api namespace; required.
	Topology *netns.Topology
	// WorkDir is the parent of the cluster's temporary directory (data, keys, certs,
	// logs, kubeconfigs); default os.TempDir().
	WorkDir string
	// KeepDir keeps the cluster's directory on Stop (for post-mortems).
	KeepDir bool
	// Detach lets the control plane outlive the caller (no parent-death signal), for an
	// environment kept running after the caller exits.
	Detach bool
	// ServiceCIDR is the apiserver's --service-cluster-ip-range; default
	// DefaultServiceCIDR (dual-stack).
	ServiceCIDR string
	// Nodes are the Node objects CreateNodes makes; default NodesFromTopology.
	Nodes []NodeSpec
	// Users are extra token users (for RBAC tests) besides the admin.
	Users []User
	// NoControllerManager leaves kube-controller-manager out (see
	// ControllerManagerControllers for what it runs otherwise).
	NoControllerManager bool
	// Controllers replaces ControllerManagerControllers (nil: those).
	Controllers []string
	// RealNodes readies the control plane for real kubelets (package kubelet): a
	// kube-scheduler, which binds pods such as a DaemonSet's to their node, and, in
	// kube-controller-manager, the DaemonSet controller and the publisher of the API
	// server's CA (the kube-root-ca.crt ConfigMap that pods' ServiceAccount volumes mount).
	RealNodes bool
	// ExtraAPIServerFlags are appended to the apiserver's flags.
	ExtraAPIServerFlags []string
	// StartTimeout bounds each wait for readiness; default DefaultStartTimeout.
	StartTimeout time.Duration
	// StopTimeout is how long a process gets after SIGTERM (and then after SIGKILL);
	// default DefaultStopTimeout.
	StopTimeout time.Duration
}

// User is a static-token user of the apiserver.
type User struct {
	// Name is the user name (also used as its UID).
	Name string
	// Token is its bearer token; Start generates one when empty.
	Token string
	// Groups are the user's groups.
	Groups []string
}

// Cluster is an etcd and a kube-apiserver running in the api namespace.
type Cluster struct {
	opts Options

	mu      sync.Mutex
	dir     string
	users   []User // admin first
	procs   []*proc.Process
	pids    []int
	client  kubernetes.Interface
	stopped bool
}

// New returns a cluster for opts; it starts nothing.
func New(opts Options) *Cluster {
	if opts.ServiceCIDR == "" {
		opts.ServiceCIDR = DefaultServiceCIDR
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	if opts.StopTimeout == 0 {
		opts.StopTimeout = DefaultStopTimeout
	}
	if len(opts.Nodes) == 0 && opts.Topology != nil {
		opts.Nodes = NodesFromTopology(opts.Topology)
	}
	return &Cluster{opts: opts}
}

// apiNS returns the api namespace's short name.
func (c *Cluster) apiNS() string { return c.opts.Topology.Spec().API.Name }

// APIServerURL returns https://<api address>:6443.
func (c *Cluster) APIServerURL() string {
	return "https://" + net.JoinHostPort(c.opts.Topology.APIServerIP().String(), strconv.Itoa(APIServerPort))
}

// Start generates keys and tokens, starts etcd and the apiserver, waits until the
// apiserver is ready and writes the admin kubeconfig. On error it stops what it started
// and the error holds the tail of the failing process's log; call Stop to remove the
// directory.
func (c *Cluster) Start(ctx context.Context) error {
	if c.opts.Topology == nil {
		return errors.New("cluster: Options.Topology is required")
	}
	bins := []string{"etcd", "kube-apiserver"}
	if !c.opts.NoControllerManager {
		bins = append(bins, "kube-controller-manager")
	}
	if err := c.checkBinaries(bins...); err != nil {
		return err
	}
	if err := c.prepare(); err != nil {
		return err
	}
	if err := c.startAll(ctx); err != nil {
		c.stopProcesses()
		return err
	}
	return nil
}

func (c *Cluster) startAll(ctx context.Context) error {
	etcd, err := c.startProcess("etcd", c.etcdArgv())
	if err != nil {
		return err
	}
	if err := c.waitReady(ctx, etcd, c.etcdHealthy); err != nil {
		return err
	}
	if err := c.StartAPIServer(ctx); err != nil {
		return err
	}
	cfg := c.RESTConfig()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("cluster: client: %w", err)
	}
	c.mu.Lock()
	c.client = cs
	c.mu.Unlock()
	if err := c.writeKubeconfig(filepath.Join(c.Dir(), "kubeconfig"), c.users[0]); err != nil {
		return err
	}
	if c.opts.NoControllerManager {
		return nil
	}
	if err := c.startControllerManager(ctx); err != nil {
		return err
	}
	if !c.opts.RealNodes {
		return nil
	}
	return c.startScheduler(ctx)
}

// startProcess creates (or reuses, by name) a process in the api namespace and starts it.
func (c *Cluster) startProcess(name string, argv []string) (*proc.Process, error) {
	c.mu.Lock()
	var p *proc.Process
	for _, q := range c.procs {
		if q.Name() == name {
			p = q
		}
	}
	if p == nil {
		p = proc.New(name, c.opts.Topology.Name(c.apiNS()), filepath.Join(c.dir, name+".log"), argv)
		p.Detach = c.opts.Detach
		c.procs = append(c.procs, p)
	}
	c.mu.Unlock()
	pid, err := p.Start()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.pids = append(c.pids, pid)
	c.mu.Unlock()
	return p, nil
}

// process returns the named process, nil if it was never started.
func (c *Cluster) process(name string) *proc.Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		if p.Name() == name {
			return p
		}
	}
	return nil
}

// StartAPIServer starts the apiserver (again, after StopAPIServer) with the same flags
// and data, and waits until /readyz answers ok.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	if c.Dir() == "" {
		return errors.New("cluster: StartAPIServer before Start")
	}
	p, err := c.startProcess("kube-apiserver", c.apiServerArgv())
	if err != nil {
		return err
	}
	return c.waitReady(ctx, p, c.apiServerReady)
}

// StopAPIServer stops the apiserver by PID (SIGTERM, then SIGKILL) and waits for it.
func (c *Cluster) StopAPIServer() error {
	p := c.process("kube-apiserver")
	if p == nil {
		return nil
	}
	return p.Stop(c.opts.StopTimeout)
}

// Stop stops every process the cluster started, newest first, and removes the cluster's
// directory unless KeepDir. It is safe to call twice and after a failed Start.
func (c *Cluster) Stop() error {
	err := c.stopProcesses()
	c.mu.Lock()
	dir, already := c.dir, c.stopped
	c.stopped = true
	c.mu.Unlock()
	if already || dir == "" || c.opts.KeepDir {
		return err
	}
	if rerr := os.RemoveAll(dir); rerr != nil {
		err = errors.Join(err, fmt.Errorf("cluster: remove %s: %w", dir, rerr))
	}
	return err
}

func (c *Cluster) stopProcesses() error {
	c.mu.Lock()
	procs := append([]*proc.Process(nil), c.procs...)
	c.mu.Unlock()
	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		errs = append(errs, procs[i].Stop(c.opts.StopTimeout))
	}
	return errors.Join(errs...)
}

// Dir returns the cluster's directory ("" before Start).
func (c *Cluster) Dir() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dir
}

// Logs returns the log file of each process by name (etcd, kube-apiserver, ...).
func (c *Cluster) Logs() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]string{}
	for _, p := range c.procs {
		out[p.Name()] = p.LogPath()
	}
	return out
}

// PIDs returns the PID of every process run the cluster ever started, in start order.
func (c *Cluster) PIDs() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.pids...)
}

// Running returns the names of the processes alive now, sorted.
func (c *Cluster) Running() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, p := range c.procs {
		if p.Running() {
			out = append(out, p.Name())
		}
	}
	sort.Strings(out)
	return out
}

// Client returns a clientset for the admin user (nil before a successful Start).
func (c *Cluster) Client() kubernetes.Interface {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.client
}

// RESTConfig returns the admin user's client configuration (nil before Start). Its Dial
// opens sockets inside the api namespace, so it works from the root namespace.
func (c *Cluster) RESTConfig() *rest.Config {
	cfg, _ := c.RESTConfigFor(AdminUser) // the admin always exists once Start ran
	return cfg
}

// RESTConfigFor returns the client configuration of a user (AdminUser or one of
// Options.Users).
func (c *Cluster) RESTConfigFor(user string) (*rest.Config, error) {
	u, err := c.user(user)
	if err != nil {
		return nil, err
	}
	return &rest.Config{
		Host:            c.APIServerURL(),
		BearerToken:     u.Token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		Dial:            c.opts.Topology.Dialer(c.apiNS()),
		QPS:             200,
		Burst:           400,
		UserAgent:       "portico-e2e",
		// Tests write v1 Endpoints on purpose (selector-less Services): no deprecation noise.
		WarningHandler: rest.NoWarnings{},
	}, nil
}

// Token returns a user's bearer token.
func (c *Cluster) Token(user string) (string, error) {
	u, err := c.user(user)
	if err != nil {
		return "", err
	}
	return u.Token, nil
}

func (c *Cluster) user(name string) (User, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, u := range c.users {
		if u.Name == name {
			return u, nil
		}
	}
	return User{Name: name}, fmt.Errorf("cluster: no user %q (is the cluster started?)", name)
}

// waitReady polls check until it succeeds, the process exits, or the start timeout or
// ctx ends; failures carry the tail of the process's log.
func (c *Cluster) waitReady(ctx context.Context, p *proc.Process, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.StartTimeout)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		select {
		case <-p.Exited():
			return fmt.Errorf("cluster: %s exited (%v) before it was ready; log tail:\n%s", p.Name(), p.ExitErr(), p.Tail(30))
		case <-ctx.Done():
			return fmt.Errorf("cluster: %s not ready: %w (last check: %v); log tail:\n%s", p.Name(), ctx.Err(), last, p.Tail(30))
		case <-tick.C:
		}
	}
}
