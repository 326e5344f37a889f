// Command portico-bench is `make bench`: portico and upstream kube-proxy side by side, both
// in nftables mode at 1,000, 5,000 and 10,000 Services, then both in iptables mode with
// iptables-nft and with iptables-legacy at 1,000 and 10,000 (QUICK=1: everything at 1,000
// only), against the kernel's floor. It writes docs/benchmarks.md, docs/bench-results.json and
// docs/bench-plot.png. Run it as root from the repository root; -render regenerates the
// report and the plot from the JSON alone.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/portico-dev/portico/bench"
	"github.com/portico-dev/portico/e2e/harness/cluster"
)

// cliFlags are the command line's flags.
type cliFlags struct {
	quick, render, profile     bool
	createAPI                  bool
	out, scales, proxies, logs string
	modes, iptScales, earlier  string
	ipvsScales, vmPayload      string
	mergeIPVS                  string
	coldLimit                  time.Duration
	samples, conns, coldRuns   int
	trafficSamples             int
	heavy, rollPods            int
	rollRate                   float64
	churnSec                   time.Duration
	churnRate                  float64
	seed                       uint64
}

// parseFlags defines the flags and parses the command line.
func parseFlags() cliFlags {
	var f cliFlags
	flag.BoolVar(&f.quick, "quick", false, "the quick run: N = 1,000 only, fewer samples (under 10 minutes)")
	flag.StringVar(&f.out, "out", "docs", "directory for benchmarks.md, bench-results.json, bench-plot.png and bench-memory.png")
	flag.BoolVar(&f.render, "render", false, "only regenerate benchmarks.md and the plots from <out>/bench-results.json")
	flag.StringVar(&f.earlier, "merge-earlier", "", "with -render: first add to <out>/bench-results.json the scales of this earlier results file that it lacks, marked as from that run")
	flag.StringVar(&f.scales, "scales", "", "comma-separated Service counts (default 1000,5000,10000,50000; quick: 1000)")
	flag.IntVar(&f.samples, "samples", 0, "one-endpoint change samples per proxy and N (default 100; quick: 10)")
	flag.IntVar(&f.trafficSamples, "traffic-samples", 0, "changes of each kind timed until traffic reaches the new endpoints, per proxy and N (default 30; quick: 5)")
	flag.IntVar(&f.heavy, "heavy", 0, "Services of the endpoint-heavy scenario, -1 to leave it out (default 100; quick: left out)")
	flag.IntVar(&f.rollPods, "roll-pods", 0, "pods of the endpoint-heavy scenario's rolled Service (default 1000)")
	flag.Float64Var(&f.rollRate, "roll-rate", 0, "pods replaced per second by the rolling update (default 5)")
	flag.DurationVar(&f.churnSec, "churn", 0, "churn duration (default 20s; quick: 10s)")
	flag.Float64Var(&f.churnRate, "churn-rate", 0, "changes per second under churn (default 50)")
	flag.IntVar(&f.conns, "conns", 0, "dataplane connections per measurement (default 1000)")
	flag.IntVar(&f.coldRuns, "cold-runs", 0, "cold syncs per proxy and N, and floor loads, the fastest counting (default 5; quick: 2)")
	flag.StringVar(&f.proxies, "proxies", "", "comma-separated proxies to run, in order (default portico,kube-proxy)")
	flag.StringVar(&f.modes, "modes", "", "comma-separated proxy modes, in order (default nftables,iptables-nft,iptables-legacy)")
	flag.StringVar(&f.iptScales, "iptables-scales", "", "comma-separated Service counts at which the iptables modes run (default 1000,10000; quick: 1000)")
	flag.StringVar(&f.ipvsScales, "ipvs-scales", "", "comma-separated Service counts at which ipvs mode runs, in a VM (default 100,1000; quick: 100)")
	flag.StringVar(&f.mergeIPVS, "merge-ipvs", "", "with -render: first put the ipvs runs of this results file (a run limited to -modes ipvs) into <out>/bench-results.json, marked as from that run")
	flag.StringVar(&f.vmPayload, "vm-payload", "", "internal: run as the VM's payload with this spec (the host's side starts it)")
	flag.DurationVar(&f.coldLimit, "cold-limit", 0, "time a proxy gets for its first sync before it counts as not finished (default 3m)")
	flag.StringVar(&f.logs, "logs", "", "directory to keep the proxies' logs in (default: discarded)")
	flag.Uint64Var(&f.seed, "seed", 0, "random seed (default: time-based)")
	flag.BoolVar(&f.profile, "profile", false, "diagnostic: enable the proxies' /debug/pprof and save heap profiles (after the one-endpoint changes) and CPU profiles (their first 20 s) into -logs")
	flag.BoolVar(&f.createAPI, "create-api", false, "create every bulk Service through the API instead of seeding all but the first of each N into etcd (an hour for 50,000: see README)")
	flag.Parse()
	return f
}

func main() {
	f := parseFlags()
	if f.vmPayload != "" {
		os.Exit(bench.RunVMPayload(context.Background(), f.vmPayload, os.Stdout))
	}
	if f.render {
		if err := mergeEarlier(f.out, f.earlier); err != nil {
			fmt.Fprintln(os.Stderr, "portico-bench:", err)
			os.Exit(1)
		}
		if err := mergeIPVS(f.out, f.mergeIPVS); err != nil {
			fmt.Fprintln(os.Stderr, "portico-bench:", err)
			os.Exit(1)
		}
		if err := renderFrom(f.out); err != nil {
			fmt.Fprintln(os.Stderr, "portico-bench:", err)
			os.Exit(1)
		}
		return
	}
	o, err := options(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, "portico-bench:", err)
		os.Exit(2)
	}
	root, err := cluster.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "portico-bench: run it from the repository:", err)
		os.Exit(2)
	}
	o.RepoRoot = root
	o.PorticoBin = envOr("PORTICO_BIN", filepath.Join(root, "bin", "portico"))
	o.BinDir = envOr("PORTICO_CLUSTER_BINS", filepath.Join(root, ".cache", "bin"))
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "portico-bench:", err)
		os.Exit(1)
	}
	o.Partial = filepath.Join(f.out, "bench-results.partial.json")
	start := time.Now()
	o.Log = func(format string, args ...any) {
		fmt.Printf("[%6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "portico-bench: needs root (network namespaces, nftables)")
		os.Exit(2)
	}
	os.Exit(run(o, f.out, start))
}

// options turns the flags into the run's options; flags left at zero keep the defaults.
func options(f cliFlags) (bench.Options, error) {
	o := bench.DefaultOptions(f.quick)
	var err error
	if f.scales != "" {
		if o.Scales, err = parseInts("scales", f.scales); err != nil {
			return o, err
		}
	}
	if f.iptScales != "" {
		if o.IPTablesScales, err = parseInts("iptables-scales", f.iptScales); err != nil {
			return o, err
		}
	}
	if f.ipvsScales != "" {
		if o.IPVSScales, err = parseInts("ipvs-scales", f.ipvsScales); err != nil {
			return o, err
		}
	}
	if f.modes != "" {
		o.Modes = nil
		for _, s := range strings.Split(f.modes, ",") {
			m, err := bench.ParseMode(strings.TrimSpace(s))
			if err != nil {
				return o, err
			}
			o.Modes = append(o.Modes, m)
		}
	}
	if f.coldLimit > 0 {
		o.ColdLimit = f.coldLimit
	}
	if f.samples > 0 {
		o.ChangeSamples = f.samples
	}
	if f.trafficSamples > 0 {
		o.TrafficSamples = f.trafficSamples
	}
	if f.churnSec > 0 {
		o.ChurnDuration = f.churnSec
	}
	if f.churnRate > 0 {
		o.ChurnRate = f.churnRate
	}
	if f.coldRuns > 0 {
		o.ColdRuns = f.coldRuns
	}
	switch {
	case f.heavy < 0:
		o.HeavyServices = 0
	case f.heavy > 0:
		o.HeavyServices = f.heavy
	}
	if f.rollPods > 0 {
		o.RollPods = f.rollPods
	}
	if f.rollRate > 0 {
		o.RollRate = f.rollRate
	}
	if f.conns > 0 {
		o.DataplaneConns = f.conns
	}
	if f.proxies != "" {
		o.Proxies = strings.Split(f.proxies, ",")
	}
	o.Seed = f.seed
	if o.Seed == 0 {
		o.Seed = uint64(time.Now().UnixNano())
	}
	o.LogDir = f.logs
	o.Profile = f.profile
	o.CreateThroughAPI = f.createAPI
	return o, nil
}

// parseInts reads a comma-separated list of positive counts (flag -name).
func parseInts(name, v string) ([]int, error) {
	var out []int
	for _, s := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad -%s value %q", name, s)
		}
		out = append(out, n)
	}
	return out, nil
}

// run runs the benchmark until done or interrupted, writes the results into out and
// returns the exit code.
func run(o bench.Options, out string, start time.Time) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "\nportico-bench failed after %s: %v\npartial results: %s\n", time.Since(start).Round(time.Second), err, o.Partial)
		if res != nil {
			_ = res.Save(o.Partial)
		}
		return 1
	}
	if err := write(out, res); err != nil {
		fmt.Fprintln(os.Stderr, "portico-bench:", err)
		return 1
	}
	_ = os.Remove(o.Partial)
	fmt.Printf("\nbenchmark finished in %s: %s, %s, %s\n", time.Since(start).Round(time.Second),
		filepath.Join(out, "benchmarks.md"), filepath.Join(out, "bench-results.json"), filepath.Join(out, "bench-plot.png"))
	return 0
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// write saves the JSON and generates the report and the plot from it.
func write(out string, res *bench.Results) error {
	if err := res.Save(filepath.Join(out, "bench-results.json")); err != nil {
		return err
	}
	return renderFrom(out)
}

// mergeEarlier adds the scales of the earlier results file (none when earlier is "")
// that <out>/bench-results.json lacks, and saves it.
func mergeEarlier(out, earlier string) error {
	return mergeInto(out, earlier, "the earlier results", (*bench.Results).MergeEarlier)
}

// mergeIPVS puts the ipvs runs of another results file into <out>/bench-results.json.
func mergeIPVS(out, from string) error {
	return mergeInto(out, from, "the ipvs results", (*bench.Results).MergeIPVS)
}

// mergeInto merges the results file from (what) into <out>/bench-results.json with merge;
// nothing without from.
func mergeInto(out, from, what string, merge func(res, other *bench.Results)) error {
	if from == "" {
		return nil
	}
	other, err := bench.LoadResults(from)
	if err != nil {
		return fmt.Errorf("reading %s: %w", what, err)
	}
	path := filepath.Join(out, "bench-results.json")
	res, err := bench.LoadResults(path)
	if err != nil {
		return fmt.Errorf("reading the results: %w", err)
	}
	merge(res, other)
	return res.Save(path)
}

func renderFrom(out string) error {
	res, err := bench.LoadResults(filepath.Join(out, "bench-results.json"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "benchmarks.md"), []byte(bench.Report(res, "bench-plot.png", "bench-memory.png")), 0o644); err != nil {
		return err
	}
	if err := writePlot(filepath.Join(out, "bench-plot.png"), res, bench.Plot); err != nil {
		return err
	}
	return writePlot(filepath.Join(out, "bench-memory.png"), res, bench.PlotMemory)
}

// writePlot draws a plot of res into the file at path.
func writePlot(path string, res *bench.Results, plot func(*bench.Results, io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := plot(res, f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
