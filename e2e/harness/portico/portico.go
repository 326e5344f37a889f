// Package portico runs the portico binary inside a node namespace of the e2e topology, the
// way a DaemonSet runs it: from a kube-system/kube-proxy ConfigMap's config.conf, with
// --config and --hostname-override, and talks to its health and metrics servers.
package portico

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/portico-dev/portico/config"
	"github.com/portico-dev/portico/e2e/harness/cluster"
	"github.com/portico-dev/portico/e2e/harness/netns"
	"github.com/portico-dev/portico/e2e/harness/proc"
)

// Ports of portico's servers inside the node namespace.
const (
	MetricsPort = 10249
	HealthzPort = 10256
)

// Options configure a Portico.
type Options struct {
	// Bin is the portico binary; default $PORTICO_BIN, else <repo>/bin/portico.
	Bin string
	// Topology and Cluster are the environment; required.
	Topology *netns.Topology
	Cluster  *cluster.Cluster
	// Node is the node namespace (short name); default netns.NodeA.
	Node string
	// Mode is the proxy mode; default "nftables".
	Mode string
	// Config overrides fields of the generated KubeProxyConfiguration (top-level keys).
	Config map[string]any
	// Args are extra command-line arguments.
	Args []string
	// Dir holds the config file and the log; required.
	Dir string
	// Detach lets portico outlive the caller (make demo KEEP=1).
	Detach bool
	// IPTablesVariant, in iptables mode, is the iptables variant portico must pick
	// (VariantNFT or VariantLegacy): Start fails when its log says it picked another.
	// Empty: any variant is accepted (IPTablesVariant then reports the one it picked).
	IPTablesVariant string
}

// Portico is one portico process.
type Portico struct {
	opts Options
	// overrides are Reconfigure's, on top of opts.Config.
	overrides map[string]any
	proc      *proc.Process
	http      *http.Client
	// variant is the iptables variant the last start logged ("" outside iptables mode).
	variant string
}

// New returns a Portico; nothing runs before Start.
func New(opts Options) *Portico {
	if opts.Node == "" {
		opts.Node = netns.NodeA
	}
	if opts.Mode == "" {
		opts.Mode = config.ModeNFTables
	}
	if opts.Bin == "" {
		opts.Bin = defaultBin()
	}
	dial := opts.Topology.Dialer(opts.Node)
	return &Portico{opts: opts, http: &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true},
	}}
}

func defaultBin() string {
	if b := os.Getenv("PORTICO_BIN"); b != "" {
		return b
	}
	root, err := cluster.RepoRoot()
	if err != nil {
		return "portico"
	}
	return filepath.Join(root, "bin", "portico")
}

// ConfigDocument returns the KubeProxyConfiguration portico runs with: BaseDocument plus
// Reconfigure's overrides.
func (p *Portico) ConfigDocument() map[string]any {
	doc := p.BaseDocument()
	for k, v := range p.overrides {
		doc[k] = v
	}
	return doc
}

// BaseDocument returns the KubeProxyConfiguration portico runs with unless reconfigured:
// what kubeadm writes for a cluster like the e2e one, plus Options.Config.
func (p *Portico) BaseDocument() map[string]any {
	doc := map[string]any{
		"apiVersion":         "kubeproxy.config.k8s.io/v1alpha1",
		"kind":               "KubeProxyConfiguration",
		"mode":               p.opts.Mode,
		"clusterCIDR":        "10.244.0.0/16,fd00:244::/44",
		"bindAddress":        "0.0.0.0",
		"metricsBindAddress": fmt.Sprintf("0.0.0.0:%d", MetricsPort),
		"healthzBindAddress": fmt.Sprintf("0.0.0.0:%d", HealthzPort),
		"clientConnection":   map[string]any{"kubeconfig": p.opts.Cluster.Kubeconfig()},
		"conntrack":          map[string]any{"maxPerCore": 0},
		// kube-proxy reads 0 as "default" (1s); tests want changes applied quickly, in
		// every mode.
		"nftables": map[string]any{"minSyncPeriod": "50ms"},
		"iptables": map[string]any{"minSyncPeriod": "50ms"},
		"ipvs":     map[string]any{"minSyncPeriod": "50ms"},
	}
	for k, v := range p.opts.Config {
		doc[k] = v
	}
	return doc
}

// Start publishes the configuration as the kube-system/kube-proxy ConfigMap, writes its
// config.conf where the DaemonSet would mount it, starts portico and waits until it has
// synced once (/healthz answers 200). In iptables mode it then reads from the log which
// variant portico picked and fails when it is not Options.IPTablesVariant.
func (p *Portico) Start(ctx context.Context) error {
	path, err := p.WriteConfig(ctx)
	if err != nil {
		return err
	}
	logPath := filepath.Join(p.opts.Dir, "portico.log")
	if p.proc == nil {
		argv := append([]string{p.opts.Bin, "--config=" + path, "--hostname-override=" + p.opts.Node, "-v=2"}, p.opts.Args...)
		p.proc = proc.New("portico", p.opts.Topology.Name(p.opts.Node), logPath, argv)
		p.proc.Detach = p.opts.Detach
	}
	logged := fileSize(logPath)
	if _, err := p.proc.Start(); err != nil {
		return err
	}
	if err := p.WaitHealthy(ctx); err != nil {
		return err
	}
	return p.checkVariant(ctx, logPath, logged)
}

// WriteConfig stores the configuration in the API (the kube-system/kube-proxy ConfigMap)
// and on disk, the way kubeadm and the kubelet do, and returns the file's path.
func (p *Portico) WriteConfig(ctx context.Context) (string, error) {
	body, err := yaml.Marshal(p.ConfigDocument())
	if err != nil {
		return "", err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-proxy", Namespace: metav1.NamespaceSystem, Labels: map[string]string{"app": "kube-proxy"}},
		Data:       map[string]string{config.ConfigMapKey: string(body)},
	}
	cms := p.opts.Cluster.Client().CoreV1().ConfigMaps(metav1.NamespaceSystem)
	if _, err := cms.Create(ctx, cm, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			return "", fmt.Errorf("updating the kube-proxy ConfigMap: %w", err)
		}
	} else if err != nil {
		return "", fmt.Errorf("creating the kube-proxy ConfigMap: %w", err)
	}
	got, err := cms.Get(ctx, "kube-proxy", metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	data, err := config.FromConfigMap(got)
	if err != nil {
		return "", err
	}
	path := filepath.Join(p.opts.Dir, config.ConfigMapKey)
	return path, os.WriteFile(path, data, 0o644)
}

// WaitHealthy waits until /healthz answers 200, or portico exits.
func (p *Portico) WaitHealthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var last error
	for {
		code, _, err := p.Get(ctx, HealthzPort, "/healthz")
		if err == nil && code == http.StatusOK {
			return nil
		}
		last = err
		if err == nil {
			last = fmt.Errorf("/healthz answered %d", code)
		}
		select {
		case <-p.proc.Exited():
			return fmt.Errorf("portico exited (%v) before it was healthy; log tail:\n%s", p.proc.ExitErr(), p.proc.Tail(30))
		case <-ctx.Done():
			return fmt.Errorf("portico not healthy: %w (last: %v); log tail:\n%s", ctx.Err(), last, p.proc.Tail(30))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Get fetches path from one of portico's servers inside the node namespace.
func (p *Portico) Get(ctx context.Context, port int, path string) (int, string, error) {
	url := fmt.Sprintf("http://%s%s", net.JoinHostPort("127.0.0.1", fmt.Sprint(port)), path)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// Reconfigure replaces the overrides of the KubeProxyConfiguration (on top of
// Options.Config; nil returns to BaseDocument); the next Start uses them (Stop first).
func (p *Portico) Reconfigure(overrides map[string]any) { p.overrides = overrides }

// Stop sends SIGTERM and waits for portico to exit.
func (p *Portico) Stop() error {
	if p.proc == nil {
		return nil
	}
	return p.proc.Stop(10 * time.Second)
}

// Kill kills portico at once, as a crash would.
func (p *Portico) Kill() error {
	if p.proc == nil {
		return nil
	}
	return p.proc.Kill(10 * time.Second)
}

// Bin returns the path of the portico binary.
func (p *Portico) Bin() string { return p.opts.Bin }

// Running reports whether portico is running.
func (p *Portico) Running() bool { return p.proc != nil && p.proc.Running() }

// PID returns the PID of the running portico (0 if none).
func (p *Portico) PID() int {
	if p.proc == nil {
		return 0
	}
	return p.proc.PID()
}

// LogTail returns the last n lines of portico's log.
func (p *Portico) LogTail(n int) string {
	if p.proc == nil {
		return ""
	}
	return p.proc.Tail(n)
}

// Command runs a portico subcommand (dump, cleanup, ...) in the node namespace with the
// same configuration and returns its combined output.
func (p *Portico) Command(ctx context.Context, args ...string) (string, error) {
	out, err := p.command(ctx, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("portico %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Dump runs `portico dump --no-conntrack` in the node namespace and returns what it
// printed on stdout: the rules as the kernel holds them, without the log lines (stderr),
// which carry times and PIDs and so would make two dumps of the same rules differ.
func (p *Portico) Dump(ctx context.Context) (string, error) {
	cmd := p.command(ctx, "dump", "--no-conntrack")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("portico dump --no-conntrack: %w: %s", err, stderr.String())
	}
	return string(out), nil
}

// command returns the command line of a portico subcommand in the node namespace, with
// portico's configuration.
func (p *Portico) command(ctx context.Context, args ...string) *exec.Cmd {
	argv := append([]string{"netns", "exec", p.opts.Topology.Name(p.opts.Node), p.opts.Bin}, args...)
	argv = append(argv, "--config="+filepath.Join(p.opts.Dir, config.ConfigMapKey), "--hostname-override="+p.opts.Node)
	return exec.CommandContext(ctx, "ip", argv...)
}

// ErrNotRunning is returned when portico is expected to run but does not.
var ErrNotRunning = errors.New("portico is not running")
