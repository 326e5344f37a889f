// Package bench is the harness behind `make bench`: it runs portico (nftables mode) and
// upstream kube-proxy (nftables mode) one after the other in the same node namespace of
// the e2e environment, against the same API objects at growing scale, and measures cold
// sync, one-endpoint change latency, latency under churn, memory and CPU, the kernel's own
// floor (nft loading the same ruleset with no controller), and connection setup through a
// ClusterIP. Every kernel-side time comes from nf_tables notifications received inside
// node-a (Monitor). Results go to JSON, a Markdown report and a PNG plot.
package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	vnetns "github.com/vishvananda/netns"

	"github.com/portico-dev/portico/e2e/harness/env"
	"github.com/portico-dev/portico/e2e/harness/netns"
)

// Options configure a run.
type Options struct {
	Quick          bool
	Scales         []int
	Endpoints      int
	ChangeSamples  int
	ChangeSpacing  time.Duration
	ChangeTimeout  time.Duration
	ChurnRate      float64
	ChurnDuration  time.Duration
	DataplaneConns int
	// ColdRuns is how many cold syncs are measured per proxy and N (the fastest counts),
	// and how many times the floor is loaded (the fastest counts too).
	ColdRuns int
	// Proxies are run in this order at every scale and in every mode ("portico",
	// "kube-proxy").
	Proxies []string
	// Modes are the proxy modes, in order: each proxy runs in each of them at every N
	// (the iptables ones only at the N of IPTablesScales).
	Modes          []ModeSpec
	IPTablesScales []int
	// IPVSScales are the N at which ipvs mode (ModeIPVS in Modes) runs, in a VM;
	// IPVSChangeSamples the one-endpoint changes per proxy there, and IPVSColdLimit the
	// time a proxy gets for its first sync under emulation.
	// TrafficSamples are the changes of each kind (one endpoint, all endpoints) timed
	// until traffic reaches the new endpoints, per proxy and N.
	TrafficSamples    int
	IPVSScales        []int
	IPVSChangeSamples int
	IPVSColdLimit     time.Duration
	// IPVSChangeBudget bounds each proxy's changes in the VM.
	IPVSChangeBudget time.Duration
	// HeavyServices Services of HeavyEndpoints endpoints each, and a Service of RollPods
	// pods rolled at RollRate pods per second, make the endpoint-heavy scenario, run in
	// nftables mode before the bulk Services exist (none: HeavyServices 0);
	// HeavyChangeSamples one-endpoint changes are timed in it.
	HeavyServices, HeavyEndpoints, RollPods, HeavyChangeSamples int
	RollRate                                                    float64
	// ColdLimit is how long a proxy may take to report its first sync; one that takes
	// longer did not finish, is stopped, and its other phases at that N are skipped.
	ColdLimit time.Duration
	// IPTablesChangeBudget bounds each iptables-mode change phase (0: no bound).
	IPTablesChangeBudget time.Duration
	// PorticoBin is portico; BinDir holds kube-proxy, kube-apiserver, etcd.
	PorticoBin string
	BinDir     string
	// RepoRoot is the repository's root; the nft wrapper is built from its bench module
	// (RepoRoot/bench).
	RepoRoot string
	// Partial, when set, is rewritten with the results so far after every proxy run.
	Partial string
	// LogDir, when set, receives the proxies' logs before the work directory is removed,
	// and the dumped rulesets.
	LogDir string
	// Profile turns on the proxies' /debug/pprof and saves into LogDir a CPU profile of
	// each over the first 20 s of its one-endpoint changes and a heap profile after them
	// (a diagnostic, off in `make bench`).
	Profile bool
	// CreateThroughAPI creates every bulk Service through the API instead of seeding all
	// but the first of each N into etcd (seed.go; slow beyond 10,000 Services).
	CreateThroughAPI bool
	Seed             uint64
	Log              func(format string, args ...any)
}

// DefaultOptions returns the full run's options, or the quick run's.
func DefaultOptions(quick bool) Options {
	o := Options{
		Quick: quick, Scales: []int{1000, 5000, 10000, 50000}, Endpoints: 10,
		ChangeSamples: 100, ChangeSpacing: 1200 * time.Millisecond, ChangeTimeout: 15 * time.Second,
		ChurnRate: 50, ChurnDuration: 20 * time.Second, DataplaneConns: 1000, ColdRuns: 5,
		Proxies:        []string{"portico", "kube-proxy"},
		Modes:          []ModeSpec{ModeNFTables, ModeIPTablesNFT, ModeIPTablesLegacy, ModeIPVS},
		IPTablesScales: []int{1000, 10000}, ColdLimit: 3 * time.Minute, IPTablesChangeBudget: 4 * time.Minute,
		TrafficSamples: 30, IPVSScales: []int{100, 1000}, IPVSChangeSamples: 20, IPVSColdLimit: 15 * time.Minute, IPVSChangeBudget: 5 * time.Minute,
		HeavyServices: 100, HeavyEndpoints: 1000, RollPods: 1000, RollRate: 5, HeavyChangeSamples: 30,
	}
	if quick {
		// Under 10 minutes in all, `make bench`'s builds included: with 15 one-endpoint
		// changes, 6 of each traffic kind and 3 cold syncs per proxy and mode it took
		// 10m19s (2026-12-05; the VM's run at N = 100, about 3 minutes, is the largest
		// part, each of the six proxy-mode runs at 1,000 about one); these counts save
		// about 80 s.
		o.Scales, o.ChangeSamples, o.ChurnDuration, o.ColdRuns = []int{1000}, 10, 10*time.Second, 2
		o.IPTablesScales, o.IPVSScales, o.IPVSChangeSamples, o.IPVSColdLimit = []int{1000}, []int{100}, 5, 3*time.Minute
		o.IPVSChangeBudget, o.TrafficSamples = time.Minute, 5
		o.HeavyServices = 0 // the full run's alone
	}
	return o
}

// runner holds a run's environment.
type runner struct {
	o   Options
	res *Results
	e   *env.Env
	mon *Monitor
	// ct observes conntrack NEW events in node-a (iptables-legacy runs only).
	ct      *Monitor
	objs    *Objects
	seeder  *Seeder
	real    Real
	proxies []Proxy
	// live hands out the addresses of the traffic changes' endpoints (live.go).
	live *liveAddrs
	// vm is what the ipvs runs ship into the VM (nil without ModeIPVS).
	vm   *vmKit
	work string
	rng  *rand.Rand
}

func (r *runner) logf(format string, args ...any) {
	if r.o.Log != nil {
		r.o.Log(format, args...)
	}
}

// Run runs the benchmark. The returned results are partial when err is not nil.
// Everything it starts is stopped and every namespace it creates removed before it
// returns, also when ctx is cancelled.
func Run(ctx context.Context, o Options) (res *Results, err error) {
	r := newRunner(o)
	res = r.res
	defer func() {
		r.res.Finished, r.res.LoadEnd = time.Now(), LoadAvg()
		if err != nil {
			r.res.Errors = append(r.res.Errors, err.Error())
		}
		r.teardown()
	}()
	if err := r.setup(ctx); err != nil {
		return res, err
	}
	for _, p := range r.proxies {
		r.logf("[baseline] %s with only the real Service", p.Name())
		pr, err := r.runProxy(ctx, p, 0, false)
		r.res.Baseline = append(r.res.Baseline, pr)
		r.savePartial()
		if err != nil {
			return res, err
		}
	}
	if r.o.HeavyServices > 0 && slices.Contains(r.o.Modes, ModeNFTables) {
		if err := r.runHeavy(ctx); err != nil {
			return res, err
		}
	}
	for _, n := range r.allScales() {
		if err := r.runScale(ctx, n); err != nil {
			return res, err
		}
	}
	return res, nil
}

// allScales are the N of the host's modes and of the VM's ipvs runs, in growing order:
// the objects only grow.
func (r *runner) allScales() []int {
	all := append([]int(nil), r.o.Scales...)
	if r.vm != nil {
		all = append(all, r.o.IPVSScales...)
	}
	slices.Sort(all)
	return slices.Compact(all)
}

// newRunner returns a runner with the results' settings filled in from o.
func newRunner(o Options) *runner {
	r := &runner{o: o, rng: rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))}
	r.res = &Results{Schema: SchemaVersion, Quick: o.Quick, Started: time.Now(), LoadStart: LoadAvg(),
		Settings: Settings{
			Scales: o.Scales, Endpoints: o.Endpoints, ChangeSamples: o.ChangeSamples,
			ChangeSpacingS: o.ChangeSpacing.Seconds(), ChangeTimeoutS: o.ChangeTimeout.Seconds(),
			ChurnRate: o.ChurnRate, ChurnSeconds: o.ChurnDuration.Seconds(), DataplaneConns: o.DataplaneConns,
			ColdRuns: max(1, o.ColdRuns), Modes: o.Modes, IPTablesScales: o.IPTablesScales,
			IPVSScales: o.IPVSScales, IPVSChangeSamples: o.IPVSChangeSamples, IPVSColdLimitS: o.IPVSColdLimit.Seconds(),
			IPVSChangeBudgetS: o.IPVSChangeBudget.Seconds(), TrafficSamples: o.TrafficSamples,
			HeavyServices: o.HeavyServices, HeavyEndpoints: o.HeavyEndpoints, RollPods: o.RollPods, RollRate: o.RollRate,
			HeavyChangeSamples: o.HeavyChangeSamples,
			ColdLimitS:         o.ColdLimit.Seconds(), ChangeBudgetS: o.IPTablesChangeBudget.Seconds(),
			MinSyncPeriod: minSyncPeriod, SyncPeriod: syncPeriod, Verbosity: verbosity, BulkCreation: bulkCreation(o),
			ProxyCommands: map[string]string{}, MonitorRcvBufMB: rcvBuf >> 20,
		}}
	return r
}

// setup prepares everything the proxy runs need: the work directory, copies of the
// binaries, the nft wrapper, the environment, the kernel observer, the real Service
// and the proxies themselves.
func (r *runner) setup(ctx context.Context) error {
	var err error
	if r.work, err = os.MkdirTemp("", "portico-bench-"); err != nil {
		return err
	}
	// The proxies run from copies taken now, so that a rebuild of bin/portico (or of the
	// cache) while the benchmark runs cannot mix two versions in one set of results.
	if r.o.PorticoBin, err = snapshot(r.o.PorticoBin, filepath.Join(r.work, "bin")); err != nil {
		return err
	}
	kubeProxyBin, err := snapshot(filepath.Join(r.o.BinDir, "kube-proxy"), filepath.Join(r.work, "bin"))
	if err != nil {
		return err
	}
	r.logf("machine and versions")
	r.res.Machine = DescribeMachine(r.o.PorticoBin, r.o.BinDir)
	r.res.Machine.PorticoSHA256 = fileSHA256(r.o.PorticoBin)
	wrapDir := filepath.Join(r.work, "wrap")
	if err := buildWrapper(ctx, r.o.RepoRoot, wrapDir); err != nil {
		return err
	}
	if err := linkIPTWrappers(filepath.Join(wrapDir, "nft"), filepath.Join(r.work, "wrap-ipt")); err != nil {
		return err
	}
	realNFT, err := exec.LookPath("nft")
	if err != nil {
		return fmt.Errorf("nft not found: %w", err)
	}
	if err := r.setupEnv(ctx); err != nil {
		return err
	}
	if err := r.makeProxies(kubeProxyBin, wrapDir, realNFT); err != nil {
		return err
	}
	if slices.Contains(r.o.Modes, ModeIPVS) {
		return r.setupVM(ctx, kubeProxyBin)
	}
	return nil
}

// serviceCIDR is the API server's Service range in the benchmark: a /12 (1,048,576
// addresses), as a cluster meant for 50,000 Services would have (the e2e tests' /16
// would be 76 % full). It does not make creating them faster: the API server's ClusterIP
// allocator lists every IPAddress object on each allocation (ipallocator's Used, 83 % of
// its CPU in a profile at 20,000 Services), so creation slows as Services accumulate,
// from 57 per second at 10,000 (32 writers) to 20 at 20,000 and 6 at 40,000.
const serviceCIDR = "10.96.0.0/12,fd00:96::/112"

// benchControllers are the kube-controller-manager controllers the benchmark runs: the
// EndpointSlice controller (the heavy scenario's rolled Service), ServiceAccounts (its
// pods need one) and namespaces. Not the EndpointSlice-mirroring controller of the e2e
// harness: for every Service without a selector it lists the namespace's EndpointSlices,
// which with 50,000 of them in one namespace kept kube-controller-manager at 1–1.7 cores
// for minutes after they were created, during the measurements.
var benchControllers = []string{"endpointslice", "serviceaccount", "namespace"}

// seedRange is serviceCIDR's IPv4 range, where the seeder picks the bulk ClusterIPs;
// etcdClientAddr is where the harness's etcd listens (inside the api namespace).
var seedRange = netip.MustParsePrefix("10.96.0.0/12")

const etcdClientAddr = "127.0.0.1:2379"

// bulkCreation names how the bulk Services are created, for the report.
func bulkCreation(o Options) string {
	if o.CreateThroughAPI {
		return "api"
	}
	return "etcd"
}

// setupEnv starts the e2e environment and the kernel observer in node-a, and creates the
// namespace of the benchmark's objects and the real Service.
func (r *runner) setupEnv(ctx context.Context) error {
	r.logf("starting the environment (namespaces, etcd, kube-apiserver, traffic servers)")
	var err error
	r.e, err = env.Setup(ctx, env.Options{NoPortico: true, ServiceCIDR: serviceCIDR, Controllers: benchControllers,
		Log: func(f string, a ...any) { r.logf("  "+f, a...) }})
	if err != nil {
		return fmt.Errorf("environment: %w", err)
	}
	r.res.ControlPlane = r.e.Cluster.Running()
	if r.mon, err = StartMonitor(r.e.Topo.NS(netns.NodeA)); err != nil {
		return fmt.Errorf("netlink monitor: %w", err)
	}
	if slices.Contains(r.o.Modes, ModeIPTablesLegacy) {
		if r.ct, err = StartConntrackMonitor(r.e.Topo.NS(netns.NodeA)); err != nil {
			return fmt.Errorf("conntrack monitor: %w", err)
		}
	}
	if r.objs, err = NewObjects(r.e.Cluster.RESTConfig(), r.o.Endpoints, netns.NodeB, "zone-b"); err != nil {
		return err
	}
	if err := r.objs.EnsureNamespace(ctx); err != nil {
		return err
	}
	if !r.o.CreateThroughAPI {
		if r.seeder, err = NewSeeder(etcdClientAddr, r.e.Topo.Dialer(netns.API), seedRange); err != nil {
			return err
		}
		r.objs.UseSeeder(r.seeder)
	}
	if r.real, err = r.objs.CreateReal(ctx, r.e.Topo, env.ServerPort); err != nil {
		return err
	}
	r.logf("real Service %s:%d -> %s:%d (pod-a1)", r.real.ClusterIP, r.real.Port, r.real.Backend, env.ServerPort)
	if err := setupLive(r.e.Topo); err != nil {
		return err
	}
	r.live = &liveAddrs{}
	return nil
}

// makeProxies creates the proxies named in the options in every mode, each with a
// directory of its own, and records their command lines. In nftables mode only nft is
// wrapped (as before the iptables columns); in iptables mode the wrapper also stands for
// the iptables commands and ipset (wrap-ipt).
func (r *runner) makeProxies(kubeProxyBin, wrapDir, realNFT string) error {
	for _, m := range r.o.Modes {
		if m == ModeIPVS {
			continue // run in the VM (ipvs_vm.go)
		}
		wd := wrapDir
		if m.IPTables() {
			wd = filepath.Join(r.work, "wrap-ipt")
		}
		for _, name := range r.o.Proxies {
			dir := filepath.Join(r.work, runName(name, m))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			var p Proxy
			switch name {
			case "portico":
				p = newPortico(r.e.Topo, r.e.Cluster, m, r.o.PorticoBin, dir, wd, realNFT, r.o.Profile)
			case "kube-proxy":
				p = newKubeProxy(r.e.Topo, r.e.Cluster, m, kubeProxyBin, dir, wd, realNFT, r.o.Profile)
			default:
				return fmt.Errorf("unknown proxy %q", name)
			}
			r.proxies = append(r.proxies, p)
			r.res.Settings.ProxyCommands[p.Name()] = p.Describe()
		}
	}
	return nil
}

// runScale grows the objects to n Services and runs every proxy against them.
func (r *runner) runScale(ctx context.Context, n int) error {
	sr := &ScaleRun{N: n, LoadAvgStart: LoadAvg()}
	before := r.objs.Count()
	r.logf("[N=%d] creating Services %d..%d with %d endpoints each", n, before, n-1, r.o.Endpoints)
	t := time.Now()
	if err := r.objs.Grow(ctx, n, 32); err != nil {
		return fmt.Errorf("creating objects: %w", err)
	}
	sr.Created, sr.LoadSeconds = n-before, time.Since(t).Seconds()
	r.logf("[N=%d] created %d Services and EndpointSlices in %.1fs", n, sr.Created, sr.LoadSeconds)
	if slices.Contains(r.o.Scales, n) {
		r.res.Scales = append(r.res.Scales, sr)
		if err := r.runHostProxies(ctx, sr, n); err != nil {
			return err
		}
	}
	if r.vm != nil && slices.Contains(r.o.IPVSScales, n) {
		r.logf("[N=%d] ipvs, both proxies in the VM", n)
		err := r.runIPVS(ctx, n)
		r.savePartial()
		return err
	}
	return nil
}

// runHostProxies runs every proxy of the host's modes at n.
func (r *runner) runHostProxies(ctx context.Context, sr *ScaleRun, n int) error {
	for _, p := range r.proxies {
		if p.Mode().IPTables() && !slices.Contains(r.o.IPTablesScales, n) {
			continue
		}
		r.logf("[N=%d] %s", n, p.Name())
		pr, err := r.runProxy(ctx, p, n, true)
		sr.Proxies = append(sr.Proxies, pr)
		sr.LoadAvgEnd = LoadAvg()
		r.savePartial()
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *runner) savePartial() {
	if r.o.Partial != "" {
		r.res.Finished, r.res.LoadEnd = time.Now(), LoadAvg()
		_ = r.res.Save(r.o.Partial)
	}
}

// iptWrapped are the tools the wrapper stands for in iptables mode, besides nft: the
// plain iptables commands kube-proxy runs, both variants' commands portico runs, ipset.
func iptWrapped() []string {
	out := []string{"nft", "ipset"}
	for _, base := range []string{"iptables", "ip6tables"} {
		for _, v := range []string{"", "-nft", "-legacy"} {
			out = append(out, base+v, base+v+"-save", base+v+"-restore")
		}
	}
	return out
}

// linkIPTWrappers fills dir with links to the wrapper, one per tool of iptWrapped.
func linkIPTWrappers(wrapper, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, name := range iptWrapped() {
		if err := os.Symlink(wrapper, filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("linking the tool wrapper as %s: %w", name, err)
		}
	}
	return nil
}

// buildWrapper builds the nft wrapper into dir/nftwrap, from the bench module under the
// repository root, and links dir/nft to it (the sampler of memory with children knows the
// wrapper by its file name and leaves it out).
func buildWrapper(ctx context.Context, root, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, wrapperBinary), "./nftwrap")
	cmd.Dir = filepath.Join(root, "bench")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the nft wrapper: %w: %s", err, out)
	}
	if err := os.Symlink(wrapperBinary, filepath.Join(dir, "nft")); err != nil {
		return fmt.Errorf("linking the nft wrapper: %w", err)
	}
	return nil
}

// runProxy runs one proxy at one scale. With full unset (the baseline), only the cold
// sync and the dataplane are measured.
func (r *runner) runProxy(ctx context.Context, p Proxy, n int, full bool) (pr *ProxyRun, err error) {
	pr = &ProxyRun{Proxy: p.Name(), N: n, Mode: p.Mode()}
	defer func() {
		if err != nil {
			pr.Errors = append(pr.Errors, err.Error())
		}
		r.stopAndClean(ctx, p, pr)
	}()
	defer sampleMemory(p, pr, r.memTrace(p.Name(), n))()
	if err := resetNode(ctx, r.e.Topo, p.Mode()); err != nil {
		return pr, fmt.Errorf("preparing node-a for %s: %w", p.Name(), err)
	}
	if rs := nodeLeftovers(ctx, r.e.Topo); rs != "" {
		pr.RulesetBefore = rs
	}
	if err := r.coldPhase(ctx, p, pr, n, full); err != nil {
		return pr, err
	}
	if pr.Cold.DNF {
		r.logf("  %s did not finish its cold sync within %s: %d of %d expected addresses unseen, %d commits, %d restore runs done, still running %v",
			p.Name(), r.o.ColdLimit, pr.Cold.Unseen, pr.Cold.Expected, pr.Cold.Commits, pr.Cold.RestoresDone, pr.Cold.Running)
		return pr, nil
	}
	r.dataplanePhase(ctx, p, pr)
	if err := ctx.Err(); err != nil {
		return pr, err
	}
	if !full {
		return pr, nil
	}
	// The floor, between phases: nothing of the proxy's runs meanwhile but its timers.
	r.floorPhase(ctx, p, pr, n)
	if err := r.changePhase(ctx, p, pr, n); err != nil {
		return pr, err
	}
	r.trafficPhase(ctx, p, pr, n)
	if !p.Mode().IPTables() { // churn: nftables mode only
		if err := r.churnPhase(ctx, p, pr, n); err != nil {
			return pr, err
		}
	}
	last := pr.Phases[len(pr.Phases)-1]
	r.logf("  %s peak RSS %.1f MiB, nft peak %.1f MiB over %d runs, CPU %.1fs", p.Name(), float64(pr.PeakHWM())/1024,
		float64(pr.PeakNFT())/1024, pr.NFTRunsTotal(), last.Proc.CPU())
	return pr, nil
}

// sampleMemory samples the proxy (whichever process it runs as) and its children
// together every 100 ms into pr.PeakWithChildrenKiB, until the returned stop is called.
// With a trace path, every sample also goes there (a diagnostic: -logs).
func sampleMemory(p Proxy, pr *ProxyRun, trace string) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	m := &memSampler{start: time.Now()}
	if trace != "" {
		if f, err := os.Create(trace); err == nil {
			m.trace = f
			go func() { <-finished; f.Close() }()
		}
	}
	go func() {
		defer close(finished)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if pid := p.PID(); pid > 0 && p.Running() {
				m.sample(pid)
			}
			select {
			case <-done:
				pr.PeakWithChildrenKiB, _ = m.peak()
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); <-finished }
}

// memTrace is where the memory samples of proxy at n go: a file in LogDir, or nowhere.
func (r *runner) memTrace(proxy string, n int) string {
	if r.o.LogDir == "" || os.MkdirAll(r.o.LogDir, 0o755) != nil {
		return ""
	}
	return filepath.Join(r.o.LogDir, fmt.Sprintf("memory-%s-%d.tsv", proxy, n))
}

// trafficPhase times changes until traffic reaches the new endpoints (measureTraffic).
func (r *runner) trafficPhase(ctx context.Context, p Proxy, pr *ProxyRun, n int) {
	tr := startPhase("traffic-changes", r.mon, p)
	o := trafficOpts{samples: r.o.TrafficSamples, spacing: r.o.ChangeSpacing, timeout: r.o.ChangeTimeout, endpoints: r.o.Endpoints}
	if p.Mode().IPTables() {
		o.budget = r.o.IPTablesChangeBudget
	}
	t := trafficRun{topo: r.e.Topo, mon: r.mon, objs: r.objs, live: r.live, rng: r.rng}
	if p.Mode().Legacy() {
		t.mon = nil
	}
	pr.Traffic = measureTraffic(ctx, t, n, o)
	pr.Phases = append(pr.Phases, tr.end(ctx, p))
	for _, k := range []struct {
		name string
		l    *TrafficLatency
	}{{"one endpoint", pr.Traffic.One}, {"all endpoints", pr.Traffic.All}} {
		r.logf("  change -> traffic, %s: p50 %.1fms p99 %.1fms (kernel p50 %.1fms), %d samples, %d missed, %d errors, %d connections %s",
			k.name, k.l.Traffic.P50, k.l.Traffic.P99, k.l.Kernel.P50, k.l.Traffic.Samples, k.l.Traffic.Missed, k.l.Traffic.Errors, k.l.Connections, k.l.LastError)
	}
}

// coldPhase measures p's cold syncs: with full set, ColdRuns-1 extra runs first, each
// stopped and cleaned up, then the run that stays up for the other phases. A run that
// does not finish within the time limit ends the phase: it is the one recorded.
func (r *runner) coldPhase(ctx context.Context, p Proxy, pr *ProxyRun, n int, full bool) error {
	var runs []float64
	for i := 1; full && i < r.o.ColdRuns; i++ {
		s, dnf, err := r.extraColdRun(ctx, p, pr)
		if err != nil {
			return fmt.Errorf("%s cold sync at N=%d (run %d): %w", p.Name(), n, i, err)
		}
		if dnf {
			return nil
		}
		runs = append(runs, s)
	}
	tr := startPhase("cold-sync", r.mon, p)
	var err error
	cpu := r.startCPUProfile(ctx, p, true)
	pr.Cold, err = measureCold(ctx, p, r.mon, r.coldOpts())
	pr.Phases = append(pr.Phases, tr.end(ctx, p))
	if cpu != nil {
		r.saveProfile(p, fmt.Sprintf("cpu-cold-%s-%d.pb.gz", p.Name(), n), <-cpu)
	}
	if err != nil {
		return fmt.Errorf("%s cold sync at N=%d: %w", p.Name(), n, err)
	}
	c := pr.Cold
	if c.DNF {
		return nil
	}
	c.RunsS = append(runs, c.KernelS)
	c.FastestS = slices.Min(c.RunsS)
	r.logf("  cold sync %.2fs (kernel: %s; proxy metric %.2fs; %d commits; unseen %d/%d); every run %v, fastest %.2fs",
		c.KernelS, c.Criterion, c.MetricS, c.Commits, c.Unseen, c.Expected, roundAll(c.RunsS), c.FastestS)
	return nil
}

// coldOpts are the options of a cold sync now.
func (r *runner) coldOpts() coldOpts {
	return coldOpts{topo: r.e.Topo, expected: r.objs.Expected(), limit: r.o.ColdLimit}
}

// dataplanePhase measures connections from pod-a2 through the real Service's ClusterIP.
func (r *runner) dataplanePhase(ctx context.Context, p Proxy, pr *ProxyRun) {
	tr := startPhase("dataplane", r.mon, p)
	pr.Dataplane = measureDataplane(ctx, r.e.Topo, netns.PodA2, netip.AddrPortFrom(r.real.ClusterIP, r.real.Port), r.o.DataplaneConns)
	pr.Phases = append(pr.Phases, tr.end(ctx, p))
	d := pr.Dataplane
	r.logf("  dataplane: %d/%d ok, connect p50 %.0fµs p99 %.0fµs, %.0f conn/s %s", d.OK, d.Conns, d.ConnectP50, d.ConnectP99, d.ConnsPerSec, d.LastError)
}

// floorPhase dumps p's ruleset and times nft loading it into an empty namespace; a
// failure is recorded in the floor, not returned.
func (r *runner) floorPhase(ctx context.Context, p Proxy, pr *ProxyRun, n int) {
	if p.Mode().IPTables() {
		r.floorPhaseIPT(ctx, p, pr, n)
		return
	}
	path := filepath.Join(r.work, fmt.Sprintf("ruleset-%s-%d.nft", p.Name(), n))
	if size, lines, derr := dumpRuleset(ctx, r.e.Topo, p, path); derr != nil {
		pr.Floor = &Floor{Error: derr.Error()}
	} else {
		nt := nftTools{wrapper: filepath.Join(r.work, "wrap", "nft"), log: filepath.Join(r.work, "floor-nft-runs.log"), real: realNFTPath()}
		pr.Floor = measureFloor(ctx, r.e.Topo, nt, path, size, lines, r.o.ColdRuns)
		if r.o.LogDir != "" { // keep the ruleset for a post-mortem
			if err := os.MkdirAll(r.o.LogDir, 0o755); err == nil {
				_ = os.Rename(path, filepath.Join(r.o.LogDir, filepath.Base(path)))
			}
		}
		_ = os.Remove(path)
	}
	r.logf("  floor: nft -f of %d lines (%.1f MB): %v (fastest %.2fs, median %.2fs) %s", pr.Floor.RulesetLines,
		float64(pr.Floor.RulesetBytes)/1e6, roundAll(pr.Floor.Runs), pr.Floor.S(), pr.Floor.MedianS, pr.Floor.Error)
}

// floorPhaseIPT dumps p's iptables rules and ipsets and times loading them into an empty
// namespace with the variant's tools; a failure is recorded in the floor.
func (r *runner) floorPhaseIPT(ctx context.Context, p Proxy, pr *ProxyRun, n int) {
	base := filepath.Join(r.work, fmt.Sprintf("ruleset-%s-%d", p.Name(), n))
	d, err := dumpIPT(ctx, r.e.Topo, p, base)
	if err != nil {
		pr.Floor = &Floor{Error: err.Error()}
	} else {
		steps := iptFloorSteps(d, filepath.Join(r.work, "wrap-ipt"), p.Mode().Variant)
		logPath := filepath.Join(r.work, "floor-nft-runs.log")
		// The change floor is measured in the first load's namespace, once it holds the dump.
		cf, cfErr := newChangeFloor(d, filepath.Join(r.work, "wrap-ipt"), p.Mode().Variant)
		pr.Floor = measureFloorWith(func() (time.Duration, NFTRuns, error) {
			return loadSteps(ctx, r.e.Topo, steps, logPath, func(h vnetns.NsHandle) { cf.measureIn(ctx, h, logPath) })
		}, d.bytes, d.lines, r.o.ColdRuns)
		cf.record(pr.Floor, cfErr)
		cf.remove()
		if pr.Floor.Error == "" {
			r.logf("  change floor: %s (%d rules) rewritten onto them: %v ms (median %.1f ms) %s", pr.Floor.ChangeChain, pr.Floor.ChangeRules,
				pr.Floor.ChangeRunsMs, pr.Floor.ChangeMedianMs, pr.Floor.ChangeError)
		}
		keep := ""
		if r.o.LogDir != "" && os.MkdirAll(r.o.LogDir, 0o755) == nil {
			keep = r.o.LogDir
		}
		d.remove(keep)
	}
	r.logf("  floor: ipset restore + iptables-%s-restore of %d lines (%.1f MB): %v (fastest %.2fs, median %.2fs) %s", p.Mode().Variant,
		pr.Floor.RulesetLines, float64(pr.Floor.RulesetBytes)/1e6, roundAll(pr.Floor.Runs), pr.Floor.S(), pr.Floor.MedianS, pr.Floor.Error)
}

// changePhase times spaced one-endpoint changes, then saves a heap profile if asked.
func (r *runner) changePhase(ctx context.Context, p Proxy, pr *ProxyRun, n int) error {
	tr := startPhase("changes", r.mon, p)
	var err error
	co := changeOpts{samples: r.o.ChangeSamples, spacing: r.o.ChangeSpacing, timeout: r.o.ChangeTimeout}
	if p.Mode().IPTables() {
		co.budget = r.o.IPTablesChangeBudget
	}
	cpu := r.startCPUProfile(ctx, p, false)
	if p.Mode().Legacy() {
		pr.Change, err = measureChangesLegacy(ctx, p, r.ct, r.e.Topo, r.objs, n, co, r.rng)
	} else {
		pr.Change, err = measureChanges(ctx, p, r.mon, r.objs, n, co, r.rng)
	}
	pr.Phases = append(pr.Phases, tr.end(ctx, p))
	if cpu != nil {
		r.saveProfile(p, fmt.Sprintf("cpu-%s-%d.pb.gz", p.Name(), n), <-cpu)
	}
	if err != nil {
		return err
	}
	if r.o.Profile && r.o.LogDir != "" {
		r.saveHeapProfile(ctx, p, n)
	}
	l := pr.Change
	r.logf("  one-endpoint change: %d samples (%d missed, %d errors): p50 %.1fms p90 %.1fms p99 %.1fms max %.1fms; metric p50 %.1fms p99 %.1fms (n=%.0f); seen in %v; verified %d (%d probes)",
		l.Samples, l.Missed, l.Errors, l.P50, l.P90, l.P99, l.Max, l.Metric.P50, l.Metric.P99, l.Metric.Count, l.MsgTypes, l.Verified, l.Probes)
	return nil
}

// churnPhase times changes written at a steady rate.
func (r *runner) churnPhase(ctx context.Context, p Proxy, pr *ProxyRun, n int) error {
	tr := startPhase("churn", r.mon, p)
	var err error
	pr.Churn, err = measureChurn(ctx, p, r.mon, r.objs, n,
		churnOpts{rate: r.o.ChurnRate, dur: r.o.ChurnDuration, timeout: r.o.ChangeTimeout, workers: 32}, r.rng)
	pr.Phases = append(pr.Phases, tr.end(ctx, p))
	if err != nil {
		return err
	}
	ch := pr.Churn
	r.logf("  churn %.0f/s (achieved %.1f/s) for %.0fs: %d samples (%d missed, %d errors): p50 %.0fms p99 %.0fms max %.0fms; %d commits, %.1f changes/commit",
		ch.Rate, ch.Achieved, ch.Seconds, ch.Samples, ch.Missed, ch.Errors, ch.P50, ch.P99, ch.Max, ch.Commits, ch.ChangesPerCommit)
	return nil
}

// extraColdRun measures one more cold sync of p: it starts p into the empty kernel (after
// the same wait for a quiet machine as a phase), waits for the rules, then stops p and
// removes its rules. It returns the cold sync in seconds; when p did not finish within
// the time limit, that run becomes p's recorded cold sync (pr.Cold, with its phase) and
// dnf is set.
func (r *runner) extraColdRun(ctx context.Context, p Proxy, pr *ProxyRun) (s float64, dnf bool, err error) {
	tr := startPhase("cold-sync", r.mon, p)
	c, err := measureCold(ctx, p, r.mon, r.coldOpts())
	if err == nil && c.DNF {
		pr.Cold = c
		pr.Phases = append(pr.Phases, tr.end(ctx, p))
		return 0, true, nil
	}
	r.stopAndClean(ctx, p, pr)
	if err != nil {
		return 0, false, err
	}
	r.logf("  cold sync %.2fs (extra run: stopped and cleaned up)", c.KernelS)
	return c.KernelS, false, nil
}

// realNFTPath is the nft the floor runs (not the wrapper).
func realNFTPath() string {
	if p, err := exec.LookPath("nft"); err == nil {
		return p
	}
	return "/usr/sbin/nft"
}

func roundAll(vs []float64) []string {
	var out []string
	for _, v := range vs {
		out = append(out, fmt.Sprintf("%.2fs", v))
	}
	return out
}

// stopAndClean stops the proxy (and whatever it still runs: its process group), runs its
// own cleanup and checks node-a is empty again; leftovers are recorded, and node-a is
// reset for the proxy's mode either way, so that every cold sync starts from the same
// empty node.
func (r *runner) stopAndClean(ctx context.Context, p Proxy, pr *ProxyRun) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	pid := p.PID()
	if err := p.Stop(); err != nil {
		pr.Errors = append(pr.Errors, "stop: "+err.Error())
	}
	if pid > 0 { // the proxy's process group: tools it started that outlived it
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	if _, err := p.Cleanup(cctx); err != nil {
		pr.CleanupError = err.Error()
	}
	if rs := nodeLeftovers(cctx, r.e.Topo); rs != "" {
		pr.Leftovers = rs
		r.logf("  leftovers after %s's cleanup (removed):\n%s", p.Name(), indent(lastLines(rs, 20), "    "))
	}
	if err := resetNode(cctx, r.e.Topo, p.Mode()); err != nil {
		pr.Errors = append(pr.Errors, err.Error())
	}
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

// teardown stops whatever still runs and removes every namespace and directory.
func (r *runner) teardown() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var errs []error
	for _, p := range r.proxies {
		if p.Running() {
			pid := p.PID()
			errs = append(errs, p.Stop())
			if pid > 0 { // tools it started that outlived it (a proxy that did not finish)
				_ = syscall.Kill(-pid, syscall.SIGKILL)
			}
			_, cerr := p.Cleanup(ctx)
			errs = append(errs, cerr)
		}
	}
	if r.e != nil {
		errs = append(errs, deleteFloorNS(r.e.Topo))
	}
	if r.mon != nil {
		r.mon.Close()
	}
	if r.seeder != nil {
		errs = append(errs, r.seeder.Close())
	}
	if r.ct != nil {
		r.ct.Close()
	}
	if r.e != nil {
		errs = append(errs, r.e.Teardown())
	}
	if r.work != "" && r.o.LogDir != "" {
		errs = append(errs, r.saveLogs())
	}
	if r.work != "" {
		errs = append(errs, os.RemoveAll(r.work))
	}
	if err := errors.Join(errs...); err != nil {
		r.logf("teardown: %v", err)
	}
}

// saveLogs copies the proxies' logs (and the nft wrapper's) into LogDir.
func (r *runner) saveLogs() error {
	if err := os.MkdirAll(r.o.LogDir, 0o755); err != nil {
		return err
	}
	var errs []error
	for _, pr := range r.proxies {
		p := pr.Name()
		logs, _ := filepath.Glob(filepath.Join(r.work, p, "*.log"))
		for _, l := range logs {
			b, err := os.ReadFile(l)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			errs = append(errs, os.WriteFile(filepath.Join(r.o.LogDir, p+"-"+filepath.Base(l)), b, 0o644))
		}
	}
	return errors.Join(errs...)
}

// cpuProfileSeconds is how long the CPU profile of a change phase runs (from its start;
// the metrics client gives up after 30 s).
const cpuProfileSeconds = 20

// coldProfileSeconds is how long the CPU profile of a cold sync runs, from the proxy's
// start.
const coldProfileSeconds = 28

// startCPUProfile starts, when profiling into LogDir, a CPU profile of the proxy over the
// next cpuProfileSeconds (coldProfileSeconds when starting); the channel yields it (nil on error) when done. With starting,
// the proxy is about to be launched: the request is retried until it answers (10 s).
func (r *runner) startCPUProfile(ctx context.Context, p Proxy, starting bool) <-chan []byte {
	if !r.o.Profile || r.o.LogDir == "" {
		return nil
	}
	c := make(chan []byte, 1)
	go func() {
		secs := cpuProfileSeconds
		if starting {
			secs = coldProfileSeconds
		}
		path := fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs)
		b, err := p.Get(ctx, path)
		for deadline := time.Now().Add(10 * time.Second); err != nil && starting && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
			b, err = p.Get(ctx, path)
		}
		if err != nil {
			r.logf("  CPU profile of %s: %v", p.Name(), err)
		}
		c <- b
	}()
	return c
}

// saveProfile writes a profile into LogDir (nothing when b is empty).
func (r *runner) saveProfile(p Proxy, name string, b []byte) {
	if len(b) == 0 || os.MkdirAll(r.o.LogDir, 0o755) != nil {
		return
	}
	path := filepath.Join(r.o.LogDir, name)
	if err := os.WriteFile(path, b, 0o644); err == nil {
		r.logf("  profile of %s: %s", p.Name(), path)
	}
}

// saveHeapProfile fetches the proxy's heap profile into LogDir.
func (r *runner) saveHeapProfile(ctx context.Context, p Proxy, n int) {
	b, err := p.Get(ctx, "/debug/pprof/heap")
	if err != nil {
		r.logf("  heap profile of %s: %v", p.Name(), err)
		return
	}
	path := filepath.Join(r.o.LogDir, fmt.Sprintf("heap-%s-%d.pb.gz", p.Name(), n))
	if err := os.MkdirAll(r.o.LogDir, 0o755); err == nil {
		if err := os.WriteFile(path, b, 0o644); err == nil {
			r.logf("  heap profile: %s", path)
		}
	}
}

// snapshot copies an executable into dir and returns the copy's path.
func snapshot(src, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return "", fmt.Errorf("snapshot of %s: %w", src, err)
	}
	dst := filepath.Join(dir, filepath.Base(src))
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		return "", err
	}
	return dst, nil
}

// fileSHA256 returns the hex SHA-256 of a file ("" if unreadable).
func fileSHA256(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}
