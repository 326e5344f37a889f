package bench

// The host side of the IPVS column: this machine's kernel has no IPVS, so at each N of
// Options.IPVSScales both proxies run in ipvs mode inside a VM (e2e/vm/run.sh: Debian's
// cloud kernel under qemu's software emulation), one after the other, against the same
// objects as the other modes. qemu runs inside node-a with its user-mode network, so the
// VM reaches the API server at node-a's address for it and nothing else node-a cannot
// reach. The payload is this program again (`portico-bench -vm-payload`, built static):
// ipvs_vmside.go.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

// VM settings of the IPVS column.
const (
	vmMemMiB = 3072
	vmCPUs   = 2
	// vmChangeBase starts the addresses the VM's changes introduce (never used elsewhere).
	vmChangeBase = "10.250.0.0"
)

// ModeIPVS is ipvs mode, measured in the VM.
var ModeIPVS = ModeSpec{Mode: "ipvs"}

// vmKit is what every VM run ships: the static payload, the static tool wrapper with its
// links, the proxies and their configuration, and the host's tools the proxies run.
type vmKit struct {
	dir     string
	payload string
	with    []string
	proxies []VMProxy
}

// vmTools are the host programs the proxies run in the VM (copied with their libraries):
// nft for portico; iptables-nft and ipset for kube-proxy's ipvs mode.
func vmTools() []string {
	out := []string{"/usr/sbin/nft", "/usr/sbin/ipset"}
	for _, base := range []string{"iptables-nft", "ip6tables-nft"} {
		out = append(out, "/usr/sbin/"+base, "/usr/sbin/"+base+"-save", "/usr/sbin/"+base+"-restore")
	}
	return out
}

// xtablesDir is where iptables loads its extensions from (they are not in ldd's list).
const xtablesDir = "/usr/lib/x86_64-linux-gnu/xtables"

// setupVM builds the payload and the wrapper static and writes the proxies' configuration.
func (r *runner) setupVM(ctx context.Context, kubeProxyBin string) error {
	k := &vmKit{dir: filepath.Join(r.work, "vm")}
	wrapDir := filepath.Join(k.dir, "wrap")
	if err := os.MkdirAll(wrapDir, 0o755); err != nil {
		return err
	}
	k.payload = filepath.Join(k.dir, "portico-bench")
	wrapper := filepath.Join(wrapDir, "nftwrap")
	for _, b := range [][2]string{{k.payload, "./cmd/portico-bench"}, {wrapper, "./nftwrap"}} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", b[0], b[1])
		cmd.Dir, cmd.Env = filepath.Join(r.o.RepoRoot, "bench"), append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building %s for the VM: %w: %s", b[1], err, out)
		}
	}
	for _, name := range iptWrapped() {
		if strings.Contains(name, "-legacy") {
			continue // not in the VM: a proxy must not find a variant that is not there
		}
		if err := os.Symlink("nftwrap", filepath.Join(wrapDir, name)); err != nil {
			return err
		}
	}
	// ipset and iptables read protocol names from /etc/protocols.
	k.with = append([]string{wrapDir, xtablesDir, "/etc/protocols", "/etc/services", r.o.PorticoBin, kubeProxyBin, r.e.Cluster.Kubeconfig()}, vmTools()...)
	for _, name := range r.o.Proxies {
		p, files, err := r.vmProxy(k.dir, wrapDir, name, kubeProxyBin)
		if err != nil {
			return err
		}
		k.proxies = append(k.proxies, p)
		k.with = append(k.with, files...)
		r.res.Settings.ProxyCommands[name+"-ipvs"] = fmt.Sprintf("`%s` (mode ipvs, ipvs.minSyncPeriod %s, syncPeriod %s), in the VM",
			strings.Join(append([]string{filepath.Base(p.Argv[0])}, p.Argv[1:]...), " "), minSyncPeriod, syncPeriod)
	}
	r.vm = k
	return nil
}

// vmProxy returns how the payload runs a proxy in ipvs mode and the files it needs.
func (r *runner) vmProxy(dir, wrapDir, name, kubeProxyBin string) (VMProxy, []string, error) {
	pdir := filepath.Join(dir, name)
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		return VMProxy{}, nil, err
	}
	doc := r.vmConfig()
	p := VMProxy{Name: name, WrapLog: filepath.Join(pdir, "tool-runs.log"), Log: filepath.Join(pdir, name+".log"),
		Env: []string{"PATH=" + wrapDir + ":/usr/sbin:/usr/bin:/sbin:/bin", "NFTWRAP_LOG=" + filepath.Join(pdir, "tool-runs.log"),
			"NFTWRAP_REAL=/usr/sbin/nft", "NFTWRAP_IPTABLES=nft"}}
	cfg := filepath.Join(pdir, "config.conf")
	switch name {
	case "portico":
		doc["metricsBindAddress"] = "127.0.0.1:10249"
		p.Argv = []string{r.o.PorticoBin, "--config=" + cfg, "--hostname-override=" + netns.NodeA, verbosity}
		p.CleanupArgv = []string{r.o.PorticoBin, "cleanup", "--config=" + cfg, "--hostname-override=" + netns.NodeA}
		p.MetricsURL = "http://127.0.0.1:10249/metrics"
	case "kube-proxy":
		doc["metricsBindAddress"] = fmt.Sprintf("127.0.0.1:%d", kpMetricsPort)
		p.Argv = []string{kubeProxyBin, "--config=" + cfg, verbosity}
		p.CleanupArgv = []string{kubeProxyBin, "--cleanup", "--config=" + cfg, verbosity}
		p.MetricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", kpMetricsPort)
	default:
		return p, nil, fmt.Errorf("unknown proxy %q", name)
	}
	body, err := yaml.Marshal(doc)
	if err != nil {
		return p, nil, err
	}
	return p, []string{cfg}, os.WriteFile(cfg, body, 0o644)
}

// vmConfig is the KubeProxyConfiguration both proxies run with in the VM (kubeadm's, in
// ipvs mode, with the benchmark's sync periods).
func (r *runner) vmConfig() map[string]any {
	return map[string]any{
		"apiVersion":         "kubeproxy.config.k8s.io/v1alpha1",
		"kind":               "KubeProxyConfiguration",
		"mode":               "ipvs",
		"clusterCIDR":        clusterCIDR,
		"bindAddress":        "0.0.0.0",
		"hostnameOverride":   netns.NodeA,
		"healthzBindAddress": fmt.Sprintf("0.0.0.0:%d", kpHealthzPort),
		"clientConnection":   map[string]any{"kubeconfig": r.e.Cluster.Kubeconfig()},
		"conntrack":          map[string]any{"maxPerCore": 0},
		"ipvs":               map[string]any{"minSyncPeriod": minSyncPeriod, "syncPeriod": syncPeriod},
	}
}

// runIPVS measures both proxies in ipvs mode in the VM at the objects' current N, then
// reloads the slices the VM changed.
func (r *runner) runIPVS(ctx context.Context, n int) error {
	run := &IPVSRun{N: n, VM: fmt.Sprintf("qemu %s (software emulation, TCG), %d vCPUs, %d MiB", qemuVersion(), vmCPUs, vmMemMiB)}
	r.res.IPVS = append(r.res.IPVS, run)
	specPath := filepath.Join(r.vm.dir, fmt.Sprintf("spec-%d.json", n))
	spec := VMSpec{N: n, Endpoints: r.o.Endpoints, Services: r.objs.VMServices(), Proxies: r.vm.proxies,
		Kubeconfig: r.e.Cluster.Kubeconfig(), Namespace: Namespace, Samples: r.o.IPVSChangeSamples,
		Spacing: r.o.ChangeSpacing, ChangeTimeout: 2 * time.Minute, ChangeBudget: r.o.IPVSChangeBudget, ColdLimit: r.o.IPVSColdLimit,
		ChangeBase: vmChangeBase, Seed: r.rng.Uint64()}
	b, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	if err := os.WriteFile(specPath, b, 0o644); err != nil {
		return err
	}
	console, wall, err := r.bootVM(ctx, spec, specPath)
	run.WallS = wall.Seconds()
	got, perr := ParseVMResult(console)
	if perr == nil {
		run.Kernel, run.Proxies, run.Errors = got.Kernel, got.Proxies, append(run.Errors, got.Errors...)
	}
	if err != nil || perr != nil {
		run.Errors = append(run.Errors, fmt.Sprintf("the VM: %v; %v; its output ends:\n%s", err, perr, lastLines(console, 30)))
	}
	for _, p := range run.Proxies {
		r.logf("[N=%d] ipvs in the VM: %s", n, p.summary())
	}
	if err := r.objs.ReloadSlices(ctx); err != nil {
		return fmt.Errorf("reloading the slices the VM changed: %w", err)
	}
	return nil
}

// bootVM runs the payload in the VM, with qemu in node-a, and returns the console.
func (r *runner) bootVM(ctx context.Context, spec VMSpec, specPath string) (string, time.Duration, error) {
	per := spec.ColdLimit + spec.ChangeBudget + spec.ChangeTimeout + 30*time.Second + 3*time.Minute
	timeout := 3*time.Minute + time.Duration(len(spec.Proxies))*per
	args := []string{"--netns", r.e.Topo.Name(netns.NodeA), "--net", apiRoute(r.e.Cluster.APIServerURL()),
		"--mem", fmt.Sprint(vmMemMiB), "--cpus", fmt.Sprint(vmCPUs)}
	for _, w := range append(r.vm.with, specPath) {
		args = append(args, "--with", w)
	}
	args = append(args, "--", r.vm.payload, "-vm-payload", specPath)
	cmd := exec.CommandContext(ctx, filepath.Join(r.o.RepoRoot, "e2e", "vm", "run.sh"), args...)
	cmd.Env = append(os.Environ(), fmt.Sprintf("VM_TIMEOUT=%d", int(timeout.Seconds())))
	logPath := filepath.Join(r.vm.dir, fmt.Sprintf("console-%d.log", spec.N))
	f, err := os.Create(logPath)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	r.logf("[N=%d] ipvs: booting the VM (timeout %s)", spec.N, timeout.Round(time.Second))
	t := time.Now()
	err = cmd.Run()
	wall := time.Since(t)
	b, _ := os.ReadFile(logPath)
	if r.o.LogDir != "" && os.MkdirAll(r.o.LogDir, 0o755) == nil {
		_ = os.WriteFile(filepath.Join(r.o.LogDir, fmt.Sprintf("vm-console-%d.log", spec.N)), b, 0o644)
	}
	return string(b), wall, err
}

// apiRoute is the API server's address as a /32 route for the VM.
func apiRoute(url string) string {
	host := strings.TrimPrefix(url, "https://")
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	return host + "/32"
}

func qemuVersion() string {
	f := strings.Fields(cmdOut("qemu-system-x86_64", "--version"))
	if len(f) >= 4 {
		return f[3]
	}
	return "?"
}

// summary is one line about a proxy's VM run for the progress log.
func (p *IPVSProxyRun) summary() string {
	s := p.Proxy
	if c := p.Cold; c != nil {
		s += fmt.Sprintf(": cold %.2fs (ipvs %.2fs, metric %.2fs, dnf %v)", c.S, c.IPVSS, c.MetricS, c.DNF)
	}
	if l := p.Change; l != nil {
		s += fmt.Sprintf(", change p50 %.1fms p99 %.1fms (%d samples, %d missed, %d errors)", l.P50, l.P99, l.Samples, l.Missed, l.Errors)
	}
	s += fmt.Sprintf(", peak with children %.1f MB", float64(p.PeakWithChildrenKiB)/1024)
	if len(p.Errors) > 0 || p.Leftovers != "" || p.CleanupError != "" {
		s += fmt.Sprintf("; errors %q leftovers %q cleanup %q", p.Errors, p.Leftovers, p.CleanupError)
	}
	return s
}
