package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/portico-dev/portico/e2e/harness/cluster"
	"github.com/portico-dev/portico/e2e/harness/netns"
	"github.com/portico-dev/portico/e2e/harness/portico"
	"github.com/portico-dev/portico/e2e/harness/proc"
)

// Proxy is one proxy under test in one mode, run in node-a with the tool wrapper first in
// its PATH.
type Proxy interface {
	// Name is "portico" or "kube-proxy", with "-iptables-nft" or "-iptables-legacy" in
	// those modes.
	Name() string
	// Mode is the proxy mode it runs in.
	Mode() ModeSpec
	// Start launches the process and returns the moment just before it was launched.
	Start(ctx context.Context) (time.Time, error)
	// Stop sends SIGTERM (then SIGKILL) and waits.
	Stop() error
	// Cleanup runs the proxy's own cleanup command in node-a.
	Cleanup(ctx context.Context) (string, error)
	PID() int
	Running() bool
	Exited() <-chan struct{}
	LogTail(n int) string
	// Scrape reads its /metrics.
	Scrape(ctx context.Context) (Scrape, error)
	// Tables are the nftables tables it owns (family, name); none in iptables mode.
	Tables() [][2]string
	// ChainPrefix starts the names of the iptables chains and ipsets it owns.
	ChainPrefix() string
	// WrapLog is the tool wrapper's log of this proxy's nft (iptables, ipset) runs.
	WrapLog() string
	// Describe says how it was configured (for the report).
	Describe() string
	// Get fetches a path of its metrics server (/debug/pprof/... with profiling on).
	Get(ctx context.Context, path string) ([]byte, error)
}

// Common settings of both proxies.
const (
	minSyncPeriod = "1s"
	syncPeriod    = "30s"
	verbosity     = "-v=2"
	clusterCIDR   = "10.244.0.0/16,fd00:244::/48"
	kpMetricsPort = 10349
	kpHealthzPort = 10356
)

// wrapEnv returns the `env` prefix that puts the tool wrapper first in a proxy's PATH. In
// iptables mode (variant set) the wrapper also maps the plain iptables commands to the
// variant's.
func wrapEnv(wrapDir, wrapLog, realNFT, variant string) []string {
	env := []string{"env",
		"PATH=" + wrapDir + ":" + os.Getenv("PATH"),
		"NFTWRAP_LOG=" + wrapLog,
		"NFTWRAP_REAL=" + realNFT,
	}
	if variant != "" {
		env = append(env, "NFTWRAP_IPTABLES="+variant)
	}
	return env
}

// launched is what both proxies share: the process in node-a (nil until the first
// Start), launched through the nft wrapper, and the scraper of its metrics server.
type launched struct {
	mode    ModeSpec
	topo    *netns.Topology
	dir     string
	argvEnv []string
	wrapLog string
	proc    *proc.Process
	scr     *scraper
}

func newLaunched(topo *netns.Topology, m ModeSpec, dir, wrapDir, realNFT string, metricsPort int) launched {
	wl := filepath.Join(dir, "nft-runs.log")
	return launched{mode: m, topo: topo, dir: dir, wrapLog: wl, argvEnv: wrapEnv(wrapDir, wl, realNFT, m.Variant),
		scr: newScraper(topo, netns.NodeA, metricsPort)}
}

func (l *launched) Mode() ModeSpec { return l.mode }

// start launches argv (built on the first call, logging to <dir>/<name>.log) through the
// wrapper and returns the moment just before the launch.
func (l *launched) start(name string, argv ...string) (time.Time, error) {
	if l.proc == nil {
		full := append(append([]string{}, l.argvEnv...), argv...)
		l.proc = proc.New(name, l.topo.Name(netns.NodeA), filepath.Join(l.dir, name+".log"), full)
	}
	t0 := time.Now()
	_, err := l.proc.Start()
	return t0, err
}

func (l *launched) Stop() error {
	if l.proc == nil {
		return nil
	}
	return l.proc.Stop(10 * time.Second)
}

func (l *launched) PID() int {
	if l.proc == nil {
		return 0
	}
	return l.proc.PID()
}

func (l *launched) Running() bool { return l.proc != nil && l.proc.Running() }

func (l *launched) Exited() <-chan struct{} {
	if l.proc == nil {
		return nil
	}
	return l.proc.Exited()
}

func (l *launched) LogTail(n int) string {
	if l.proc == nil {
		return ""
	}
	return l.proc.Tail(n)
}

func (l *launched) Scrape(ctx context.Context) (Scrape, error) { return l.scr.scrape(ctx) }

func (l *launched) Get(ctx context.Context, path string) ([]byte, error) {
	return l.scr.get(ctx, path)
}

func (l *launched) WrapLog() string { return l.wrapLog }

// porticoProxy runs portico from the kube-system/kube-proxy ConfigMap, the way the harness
// does, but launched through `env` so that its nft runs go through the wrapper.
type porticoProxy struct {
	launched
	h *portico.Portico
}

func newPortico(topo *netns.Topology, cl *cluster.Cluster, m ModeSpec, bin, dir, wrapDir, realNFT string, profiling bool) *porticoProxy {
	cfg := map[string]any{
		"nftables": map[string]any{"minSyncPeriod": minSyncPeriod, "syncPeriod": syncPeriod},
		"iptables": map[string]any{"minSyncPeriod": minSyncPeriod, "syncPeriod": syncPeriod},
	}
	if profiling {
		cfg["enableProfiling"] = true
	}
	h := portico.New(portico.Options{Bin: bin, Topology: topo, Cluster: cl, Dir: dir, Config: cfg, Mode: m.Mode})
	return &porticoProxy{launched: newLaunched(topo, m, dir, wrapDir, realNFT, portico.MetricsPort), h: h}
}

func (p *porticoProxy) Name() string { return runName("portico", p.mode) }

func (p *porticoProxy) ChainPrefix() string { return "PORTICO-" }

func (p *porticoProxy) Start(ctx context.Context) (time.Time, error) {
	path, err := p.h.WriteConfig(ctx)
	if err != nil {
		return time.Time{}, err
	}
	return p.start("portico", p.h.Bin(), "--config="+path, "--hostname-override="+netns.NodeA, verbosity)
}

func (p *porticoProxy) Cleanup(ctx context.Context) (string, error) {
	return p.h.Command(ctx, "cleanup")
}

func (p *porticoProxy) Tables() [][2]string {
	if p.mode.IPTables() {
		return nil
	}
	return [][2]string{{"ip", "portico"}, {"ip6", "portico"}}
}

func (p *porticoProxy) Describe() string {
	how := ""
	switch {
	case p.mode.Legacy():
		how = ", picking iptables-legacy by itself from kubelet's hint chain"
	case p.mode.IPTables():
		how = ", picking iptables-nft by itself (no hint chain, no legacy rules)"
	}
	return fmt.Sprintf("`%s --config=config.conf --hostname-override=node-a %s` from the kube-system/kube-proxy ConfigMap "+
		"(mode %s, %s.minSyncPeriod %s, syncPeriod %s%s)", filepath.Base(p.h.Bin()), verbosity, p.mode.Mode, p.mode.Mode, minSyncPeriod, syncPeriod, how)
}

// kubeProxy runs upstream kube-proxy in nftables mode from a KubeProxyConfiguration file.
type kubeProxy struct {
	launched
	bin       string
	profiling bool
	cl        *cluster.Cluster
}

func newKubeProxy(topo *netns.Topology, cl *cluster.Cluster, m ModeSpec, bin, dir, wrapDir, realNFT string, profiling bool) *kubeProxy {
	return &kubeProxy{launched: newLaunched(topo, m, dir, wrapDir, realNFT, kpMetricsPort), bin: bin, profiling: profiling, cl: cl}
}

func (k *kubeProxy) Name() string { return runName("kube-proxy", k.mode) }

func (k *kubeProxy) ChainPrefix() string { return "KUBE-" }

func (k *kubeProxy) configPath() string { return filepath.Join(k.dir, "kube-proxy.yaml") }

// configDocument is what kubeadm would write, with the settings a network namespace needs
// (see /work/shared/control-plane.md): no conntrack sysctl, the Node's name, own ports.
func (k *kubeProxy) configDocument() map[string]any {
	return map[string]any{
		"apiVersion":         "kubeproxy.config.k8s.io/v1alpha1",
		"kind":               "KubeProxyConfiguration",
		"mode":               k.mode.Mode,
		"clusterCIDR":        clusterCIDR,
		"bindAddress":        "0.0.0.0",
		"hostnameOverride":   netns.NodeA,
		"metricsBindAddress": fmt.Sprintf("127.0.0.1:%d", kpMetricsPort),
		"healthzBindAddress": fmt.Sprintf("0.0.0.0:%d", kpHealthzPort),
		"clientConnection":   map[string]any{"kubeconfig": k.cl.Kubeconfig()},
		"conntrack":          map[string]any{"maxPerCore": 0},
		"nftables":           map[string]any{"minSyncPeriod": minSyncPeriod, "syncPeriod": syncPeriod},
		"iptables":           map[string]any{"minSyncPeriod": minSyncPeriod, "syncPeriod": syncPeriod},
		"enableProfiling":    k.profiling,
	}
}

func (k *kubeProxy) Start(ctx context.Context) (time.Time, error) {
	body, err := yaml.Marshal(k.configDocument())
	if err != nil {
		return time.Time{}, err
	}
	if err := os.WriteFile(k.configPath(), body, 0o644); err != nil {
		return time.Time{}, err
	}
	return k.start("kube-proxy", k.bin, "--config="+k.configPath(), verbosity)
}

// Cleanup runs kube-proxy --cleanup through the wrapper's PATH, so that in iptables mode
// its plain iptables commands reach the variant it ran with.
func (k *kubeProxy) Cleanup(ctx context.Context) (string, error) {
	argv := append(append([]string{}, k.argvEnv...), k.bin, "--cleanup", "--config="+k.configPath(), verbosity)
	cmd := k.topo.Exec(ctx, netns.NodeA, argv...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kube-proxy --cleanup: %w: %s", err, lastLines(string(out), 10))
	}
	return string(out), nil
}

func (k *kubeProxy) Tables() [][2]string {
	if k.mode.IPTables() {
		return nil
	}
	return [][2]string{{"ip", "kube-proxy"}, {"ip6", "kube-proxy"}}
}

func (k *kubeProxy) Describe() string {
	how := ""
	if k.mode.IPTables() {
		how = fmt.Sprintf("; its `iptables`, `iptables-save` and `iptables-restore` (and ip6tables) run iptables-%s's programs, as on a host whose alternatives point there", k.mode.Variant)
	}
	return fmt.Sprintf("`kube-proxy --config=kube-proxy.yaml %s` (mode %s, hostnameOverride node-a, "+
		"conntrack.maxPerCore 0, %s.minSyncPeriod %s, syncPeriod %s%s)", verbosity, k.mode.Mode, k.mode.Mode, minSyncPeriod, syncPeriod, how)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// nftIn runs nft in a namespace of the topology and returns its output.
func nftIn(ctx context.Context, topo *netns.Topology, ns string, args ...string) (string, error) {
	out, err := topo.Exec(ctx, ns, append([]string{"nft"}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("nft %s in %s: %w: %s", strings.Join(args, " "), topo.Name(ns), err, lastLines(string(out), 5))
	}
	return string(out), nil
}
