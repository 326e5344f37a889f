package bench

// The VM side of the IPVS column. This machine's kernel has no IPVS, so both proxies run in
// ipvs mode inside a VM booted by e2e/vm/run.sh (Debian's cloud kernel under qemu), one
// after the other, against the API server of the host's environment, which the VM reaches
// through qemu's user-mode network from inside node-a (ipvs_vm.go is the host side). This
// file is the payload: `portico-bench -vm-payload <spec>` started by the VM's init. It
// prints its results between two marker lines on stdout, which the host reads from the
// VM's console.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Markers framing the base64 JSON results on the VM's console.
const (
	vmResultBegin = "=== portico-bench vm results begin"
	vmResultEnd   = "=== portico-bench vm results end"
)

// VMSpec is what the host hands the payload.
type VMSpec struct {
	N          int         `json:"n"`
	Endpoints  int         `json:"endpoints"`
	Services   []VMService `json:"services"`
	Proxies    []VMProxy   `json:"proxies"`
	Kubeconfig string      `json:"kubeconfig"`
	Namespace  string      `json:"namespace"`
	// Samples one-endpoint changes per proxy, Spacing between them (beyond minSyncPeriod),
	// each waited for at most ChangeTimeout, all within ChangeBudget; a proxy gets
	// ColdLimit for its first sync.
	Samples       int           `json:"samples"`
	Spacing       time.Duration `json:"spacing"`
	ChangeTimeout time.Duration `json:"change_timeout"`
	// ChangeBudget bounds a proxy's changes altogether (kube-proxy's ipvs mode takes
	// seconds per change under emulation); the changes left are not made.
	ChangeBudget time.Duration `json:"change_budget"`
	ColdLimit    time.Duration `json:"cold_limit"`
	// ChangeBase is the first of the never-used addresses the changes introduce.
	ChangeBase string `json:"change_base"`
	Seed       uint64 `json:"seed"`
}

// VMService is one bulk Service: its virtual server and the real servers it must get.
type VMService struct {
	Name      string   `json:"name"`
	ClusterIP string   `json:"cluster_ip"`
	Port      uint16   `json:"port"`
	Endpoints []string `json:"endpoints"`
}

// VMProxy is how the payload runs one proxy: its command line and environment (the tool
// wrapper first in PATH, logging to WrapLog), its cleanup command, its metrics server.
type VMProxy struct {
	Name        string   `json:"name"`
	Argv        []string `json:"argv"`
	Env         []string `json:"env"`
	CleanupArgv []string `json:"cleanup_argv"`
	MetricsURL  string   `json:"metrics_url"`
	WrapLog     string   `json:"wrap_log"`
	Log         string   `json:"log"`
}

// RunVMPayload is the payload: it measures every proxy of the spec in turn and prints
// the results. Its exit code is 0 when the results were printed.
func RunVMPayload(ctx context.Context, specPath string, out io.Writer) int {
	res := &IPVSRun{}
	defer printVMResult(out, res)
	b, err := os.ReadFile(specPath)
	if err != nil {
		res.Errors = append(res.Errors, err.Error())
		return 0
	}
	var spec VMSpec
	if err := json.Unmarshal(b, &spec); err != nil {
		res.Errors = append(res.Errors, fmt.Sprintf("spec %s: %v", specPath, err))
		return 0
	}
	res.N, res.Kernel = spec.N, kernelRelease()
	cs, err := vmClient(ctx, spec.Kubeconfig)
	if err != nil {
		res.Errors = append(res.Errors, err.Error())
		return 0
	}
	rng := rand.New(rand.NewPCG(spec.Seed, spec.Seed^0x5bd1e995))
	for i, p := range spec.Proxies {
		fmt.Fprintf(os.Stderr, "vm-bench: %s at N=%d\n", p.Name, spec.N)
		pr := runVMProxy(ctx, &spec, p, cs, rng, uint32(i)*10000)
		res.Proxies = append(res.Proxies, pr)
	}
	return 0
}

func kernelRelease() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

// printVMResult writes the results as base64 JSON in 76-column lines between the markers
// (a console line holds no more reliably).
func printVMResult(out io.Writer, res *IPVSRun) {
	b, err := json.Marshal(res)
	if err != nil {
		b = []byte(fmt.Sprintf(`{"errors":[%q]}`, err.Error()))
	}
	enc := base64.StdEncoding.EncodeToString(b)
	fmt.Fprintln(out, vmResultBegin)
	for len(enc) > 76 {
		fmt.Fprintln(out, enc[:76])
		enc = enc[76:]
	}
	fmt.Fprintln(out, enc)
	fmt.Fprintln(out, vmResultEnd)
}

// ParseVMResult finds the results between the markers in the VM's console output.
func ParseVMResult(console string) (*IPVSRun, error) {
	i := strings.Index(console, vmResultBegin)
	j := strings.Index(console, vmResultEnd)
	if i < 0 || j < i {
		return nil, fmt.Errorf("no results in the VM's output")
	}
	var enc strings.Builder
	for _, l := range strings.Split(console[i+len(vmResultBegin):j], "\n") {
		enc.WriteString(strings.TrimSpace(l))
	}
	b, err := base64.StdEncoding.DecodeString(enc.String())
	if err != nil {
		return nil, fmt.Errorf("the VM's results: %w", err)
	}
	var r IPVSRun
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("the VM's results: %w", err)
	}
	return &r, nil
}

// vmClient connects to the API server through the VM's network (waiting up to a minute
// for it to answer).
func vmClient(ctx context.Context, kubeconfig string) (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	cfg.QPS, cfg.Burst, cfg.UserAgent = 100, 200, "portico-bench-vm"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := cs.Discovery().ServerVersion()
		if err == nil {
			return cs, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("the API server at %s does not answer from the VM: %w", cfg.Host, err)
		}
		time.Sleep(time.Second)
	}
}

// runVMProxy runs one proxy: cold sync, one-endpoint changes, stop, cleanup.
func runVMProxy(ctx context.Context, spec *VMSpec, p VMProxy, cs kubernetes.Interface, rng *rand.Rand, addrOff uint32) *IPVSProxyRun {
	pr := &IPVSProxyRun{Proxy: p.Name}
	if tbl, err := readProcIPVS(); err == nil && len(tbl) > 0 {
		pr.Errors = append(pr.Errors, fmt.Sprintf("IPVS held %d virtual servers before the start", len(tbl)))
	}
	logf, err := os.Create(p.Log)
	if err != nil {
		pr.Errors = append(pr.Errors, err.Error())
		return pr
	}
	defer logf.Close()
	cmd := exec.Command(p.Argv[0], p.Argv[1:]...)
	cmd.Env, cmd.Stdout, cmd.Stderr = append(os.Environ(), p.Env...), logf, logf
	mem := &memSampler{}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		pr.Errors = append(pr.Errors, fmt.Sprintf("starting %s: %v", p.Name, err))
		return pr
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stopMem := mem.run(cmd.Process.Pid, 100*time.Millisecond)
	pr.Cold = vmCold(ctx, spec, p, t0, exited)
	if !pr.Cold.DNF && pr.Cold.Error == "" {
		fmt.Fprintf(os.Stderr, "vm-bench: %s cold sync %.2fs (IPVS %.2fs, reported %.2fs)\n", p.Name, pr.Cold.S, pr.Cold.IPVSS, pr.Cold.MetricS)
		pr.SettleS = waitProxyQuiet(cmd.Process.Pid, 30*time.Second).Seconds()
		fmt.Fprintf(os.Stderr, "vm-bench: %s quiet after %.1fs\n", p.Name, pr.SettleS)
		pr.Change = vmChanges(ctx, spec, cs, rng, addrOff)
	}
	pr.Proc, _ = SampleProc(cmd.Process.Pid)
	stopMem()
	pr.PeakWithChildrenKiB, pr.PeakChildKiB = mem.peak()
	stopVMProxy(cmd, exited)
	pr.LogTail = lastLines(readTail(p.Log, 64<<10), 25)
	pr.NFT = readWrapLog(p.WrapLog, 0)
	pr.CleanupError, pr.Leftovers = vmCleanup(ctx, p)
	return pr
}

// stopVMProxy sends SIGTERM, then SIGKILL after 10 s, and waits for the exit.
func stopVMProxy(cmd *exec.Cmd, exited <-chan struct{}) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

func readTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// vmCleanup runs the proxy's cleanup command and reports what IPVS still holds after it.
func vmCleanup(ctx context.Context, p VMProxy) (errText, leftovers string) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, p.CleanupArgv[0], p.CleanupArgv[1:]...)
	cmd.Env = append(os.Environ(), p.Env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		errText = fmt.Sprintf("%v: %s", err, lastLines(string(out), 5))
	}
	tbl, err := readProcIPVS()
	if err != nil {
		return errText, "reading /proc/net/ip_vs: " + err.Error()
	}
	if len(tbl) > 0 {
		leftovers = fmt.Sprintf("%d virtual servers", len(tbl))
	}
	return errText, leftovers
}

// memSampler samples a process and its descendants together.
type memSampler struct {
	mu              sync.Mutex
	together, child int64
	// trace, when set, gets one line per sample: milliseconds since start, the process's
	// RSS and its descendants' (KiB).
	trace io.Writer
	start time.Time
}

// run samples pid every interval until the returned stop is called.
func (m *memSampler) run(pid int, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			m.sample(pid)
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); <-finished }
}

// wrapperBinary is the tool wrapper's file name (bench/nftwrap), on the host and in the
// VM; the tools' names are links to it.
const wrapperBinary = "nftwrap"

// isWrapper reports whether process pid runs the tool wrapper.
func isWrapper(pid int) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return err == nil && filepath.Base(exe) == wrapperBinary
}

// sample adds one sample of pid and its descendants (the tool wrapper left out).
func (m *memSampler) sample(pid int) {
	s, err := SampleProc(pid)
	if err != nil {
		return
	}
	sum, biggest := s.RSSKiB, int64(0)
	for _, c := range descendants(pid) {
		if isWrapper(c) {
			continue // the benchmark's instrument, not the proxy's: its tool is counted
		}
		if notExecuted(c) {
			continue // its parent's memory, shared until the exec
		}
		if cs, err := SampleProc(c); err == nil {
			sum += cs.RSSKiB
			biggest = max(biggest, cs.RSSKiB)
		}
	}
	m.mu.Lock()
	m.together, m.child = max(m.together, sum), max(m.child, biggest)
	if m.trace != nil {
		fmt.Fprintf(m.trace, "%d\t%d\t%d\n", time.Since(m.start).Milliseconds(), s.RSSKiB, sum-s.RSSKiB)
	}
	m.mu.Unlock()
}

func (m *memSampler) peak() (together, child int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.together, m.child
}

// scrapeURL fetches and parses a metrics URL.
func scrapeURL(ctx context.Context, url string) (Scrape, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	body, err := fetch(ctx, http.DefaultClient, url)
	if err != nil {
		return nil, err
	}
	return parseScrape(body, url)
}

// waitProxyQuiet waits, at most max, until the proxy and its children use less than 5 %
// of a CPU over half a second: what a proxy does right after its first sync (portico
// removes other modes' rules, kube-proxy its own leftovers) is not part of a change.
func waitProxyQuiet(pid int, max time.Duration) time.Duration {
	start := time.Now()
	cpu := func() float64 {
		total := 0.0
		for _, p := range append([]int{pid}, descendants(pid)...) {
			if s, err := SampleProc(p); err == nil {
				total += s.CPU()
			}
		}
		return total
	}
	prev := cpu()
	for time.Since(start) < max {
		time.Sleep(500 * time.Millisecond)
		cur := cpu()
		if cur-prev < 0.025 {
			break
		}
		prev = cur
	}
	return time.Since(start)
}
