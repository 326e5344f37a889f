package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"
)

// SchemaVersion is the version of the JSON results format.
const SchemaVersion = 1

// Results is everything one run measured; docs/bench-results.json holds it and the
// report is generated from it alone.
type Results struct {
	Schema   int       `json:"schema"`
	Quick    bool      `json:"quick"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Machine  Machine   `json:"machine"`
	Settings Settings  `json:"settings"`
	// ControlPlane lists the control-plane processes that ran (api namespace).
	ControlPlane []string `json:"control_plane"`
	LoadStart    string   `json:"load_start"`
	LoadEnd      string   `json:"load_end"`
	// Baseline runs each proxy with only the real Service (and the apiserver's own).
	Baseline []*ProxyRun `json:"baseline"`
	Scales   []*ScaleRun `json:"scales"`
	// IPVS are the ipvs-mode runs, each inside a VM (this machine's kernel has no IPVS).
	IPVS []*IPVSRun `json:"ipvs,omitempty"`
	// Heavy is the endpoint-heavy scenario (heavy.go), nil when not run.
	Heavy  *HeavyRun `json:"heavy,omitempty"`
	Notes  []string  `json:"notes,omitempty"`
	Errors []string  `json:"errors,omitempty"`
}

// Settings are the run's parameters.
type Settings struct {
	Scales         []int      `json:"scales"`
	Endpoints      int        `json:"endpoints"`
	ChangeSamples  int        `json:"change_samples"`
	ChangeSpacingS float64    `json:"change_spacing_s"`
	ChangeTimeoutS float64    `json:"change_timeout_s"`
	ChurnRate      float64    `json:"churn_rate"`
	ChurnSeconds   float64    `json:"churn_seconds"`
	DataplaneConns int        `json:"dataplane_conns"`
	ColdRuns       int        `json:"cold_runs,omitempty"`
	Modes          []ModeSpec `json:"modes,omitempty"`
	IPTablesScales []int      `json:"iptables_scales,omitempty"`
	// IPVSScales are the N of the VM's ipvs runs, IPVSChangeSamples their changes per
	// proxy (within IPVSChangeBudgetS), IPVSColdLimitS a proxy's time for its first sync
	// there.
	IPVSScales        []int   `json:"ipvs_scales,omitempty"`
	IPVSChangeSamples int     `json:"ipvs_change_samples,omitempty"`
	IPVSColdLimitS    float64 `json:"ipvs_cold_limit_s,omitempty"`
	IPVSChangeBudgetS float64 `json:"ipvs_change_budget_s,omitempty"`
	TrafficSamples    int     `json:"traffic_samples,omitempty"`
	// The endpoint-heavy scenario's parameters (Options).
	HeavyServices      int               `json:"heavy_services,omitempty"`
	HeavyEndpoints     int               `json:"heavy_endpoints,omitempty"`
	RollPods           int               `json:"roll_pods,omitempty"`
	RollRate           float64           `json:"roll_rate,omitempty"`
	HeavyChangeSamples int               `json:"heavy_change_samples,omitempty"`
	ColdLimitS         float64           `json:"cold_limit_s,omitempty"`
	ChangeBudgetS      float64           `json:"iptables_change_budget_s,omitempty"`
	MinSyncPeriod      string            `json:"min_sync_period"`
	SyncPeriod         string            `json:"sync_period"`
	Verbosity          string            `json:"verbosity"`
	ProxyCommands      map[string]string `json:"proxy_commands"`
	MonitorRcvBufMB    int               `json:"monitor_rcvbuf_mib"`
	// BulkCreation is how the bulk Services were created: "etcd" (all but the first of
	// each N seeded into the API server's etcd, seed.go) or "api" (empty in older results).
	BulkCreation string `json:"bulk_creation,omitempty"`
}

// ScaleRun is one N: loading the objects, then each proxy in turn.
type ScaleRun struct {
	N            int         `json:"n"`
	Created      int         `json:"created"`
	LoadSeconds  float64     `json:"load_seconds"`
	LoadAvgStart string      `json:"loadavg_start"`
	LoadAvgEnd   string      `json:"loadavg_end"`
	Proxies      []*ProxyRun `json:"proxies"`
	// From, when set, says that this N was measured in an earlier run (MergeEarlier),
	// not in the run the rest of the results come from.
	From string `json:"from_run,omitempty"`
}

// MergeEarlier adds to r the scales of an earlier run that r did not measure, each
// marked with where it comes from, in the order of N.
func (r *Results) MergeEarlier(old *Results) {
	have := map[int]bool{}
	for _, s := range r.Scales {
		have[s.N] = true
	}
	kind := "full"
	if old.Quick {
		kind = "quick"
	}
	from := fmt.Sprintf("the earlier %s run of %s (portico %s)", kind, old.Started.UTC().Format("2006-01-02 15:04 MST"), short(old.Machine.PorticoCommit, 12))
	for _, s := range old.Scales {
		if have[s.N] {
			continue
		}
		if s.From == "" {
			s.From = from
		}
		r.Scales = append(r.Scales, s)
	}
	sort.SliceStable(r.Scales, func(i, j int) bool { return r.Scales[i].N < r.Scales[j].N })
}

// Proxy returns the run of a proxy by name (nil if none).
func (s *ScaleRun) Proxy(name string) *ProxyRun {
	if s == nil {
		return nil
	}
	return proxyNamed(s.Proxies, name)
}

// proxyNamed returns the run of the named proxy among ps (nil if none).
func proxyNamed(ps []*ProxyRun, name string) *ProxyRun {
	for _, p := range ps {
		if p.Proxy == name {
			return p
		}
	}
	return nil
}

// ProxyRun is one proxy at one N.
type ProxyRun struct {
	Proxy string `json:"proxy"`
	// Mode is the proxy mode of the run (nftables when absent: results from before the
	// iptables columns).
	Mode   ModeSpec `json:"mode,omitzero"`
	N      int      `json:"n"`
	Cold   *Cold    `json:"cold,omitempty"`
	Floor  *Floor   `json:"floor,omitempty"`
	Change *Latency `json:"change,omitempty"`
	// Traffic are the changes timed until a connection reaches a new endpoint.
	Traffic *TrafficChanges `json:"traffic,omitempty"`
	// PeakWithChildrenKiB is the largest sum of the proxy's and its children's RSS,
	// sampled every 100 ms from its launch to its stop (the last cold run's).
	PeakWithChildrenKiB int64  `json:"peak_with_children_kib,omitempty"`
	Churn               *Churn `json:"churn,omitempty"`
	// Rolling is the rolling update of the endpoint-heavy scenario (HeavyRun only).
	Rolling   *Rolling   `json:"rolling,omitempty"`
	Dataplane *Dataplane `json:"dataplane,omitempty"`
	Phases    []*Phase   `json:"phases"`
	// RulesetBefore is node-a's ruleset before the proxy started (should be empty).
	RulesetBefore string `json:"ruleset_before,omitempty"`
	// Leftovers is node-a's ruleset after the proxy's own cleanup (should be empty).
	Leftovers    string   `json:"leftovers,omitempty"`
	CleanupError string   `json:"cleanup_error,omitempty"`
	Errors       []string `json:"errors,omitempty"`
}

// Phase returns a phase by name (nil if none).
func (p *ProxyRun) Phase(name string) *Phase {
	if p == nil {
		return nil
	}
	for _, ph := range p.Phases {
		if ph.Name == name {
			return ph
		}
	}
	return nil
}

// PeakHWM is the proxy's largest VmHWM over its phases (KiB).
func (p *ProxyRun) PeakHWM() int64 {
	var m int64
	for _, ph := range p.Phases {
		m = max(m, ph.Proc.HWMKiB)
	}
	return m
}

// PeakNFT is the largest child's peak RSS over the phases (KiB): the nft runs, in
// iptables mode the iptables and ipset runs too, and the tools still running when a cold
// sync hit its time limit.
func (p *ProxyRun) PeakNFT() int64 {
	var m int64
	for _, ph := range p.Phases {
		m = max(m, ph.NFT.MaxRSSKiB)
	}
	if p.Cold != nil {
		for _, c := range p.Cold.Running {
			m = max(m, c.HWMKiB)
		}
	}
	return m
}

// NFTRunsTotal counts nft runs over the phases.
func (p *ProxyRun) NFTRunsTotal() int {
	n := 0
	for _, ph := range p.Phases {
		n += ph.NFT.Count
	}
	return n
}

// LastCPU is the CPU seconds at the end of the last phase.
func (p *ProxyRun) LastCPU() float64 {
	if len(p.Phases) == 0 {
		return math.NaN()
	}
	return p.Phases[len(p.Phases)-1].Proc.CPU()
}

// Phase is one measured stretch of a proxy's run, with its resource use at the end.
type Phase struct {
	Name      string    `json:"name"`
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
	LoadStart string    `json:"loadavg_start"`
	LoadEnd   string    `json:"loadavg_end"`
	// SettleS is how long the phase waited for the machine to be idle before it started
	// (IdleFrac: the CPUs' idle fraction in the last 500 ms window).
	SettleS  float64    `json:"settle_s"`
	IdleFrac float64    `json:"idle_frac"`
	Proc     ProcSample `json:"proc"`
	// GoMem is the proxy's Go memory statistics at the end (from its /metrics).
	GoMem   GoMem        `json:"go_mem"`
	NFT     NFTRuns      `json:"nft"`
	Monitor MonitorStats `json:"monitor"`
}

// GoMem are a Go process's go_memstats_* gauges, in bytes.
type GoMem struct {
	HeapAlloc    float64 `json:"heap_alloc"`
	HeapInuse    float64 `json:"heap_inuse"`
	HeapIdle     float64 `json:"heap_idle"`
	HeapReleased float64 `json:"heap_released"`
	Sys          float64 `json:"sys"`
	NextGC       float64 `json:"next_gc"`
	// AllocTotal is go_memstats_alloc_bytes_total (bytes allocated since start); GCs
	// the number of collections so far.
	AllocTotal float64 `json:"alloc_total"`
	GCs        float64 `json:"gcs"`
}

// NFTRuns summarises the nft processes a proxy ran during a phase (from the wrapper's log).
type NFTRuns struct {
	Count     int     `json:"count"`
	Failed    int     `json:"failed"`
	MaxRSSKiB int64   `json:"max_rss_kib"`
	WallS     float64 `json:"wall_s"`
	CPUS      float64 `json:"cpu_s"`
	MaxWallS  float64 `json:"max_wall_s"`
	// InBytes is the input of every `nft -f -`; MaxInBytes and MaxInLines the largest.
	InBytes    int64          `json:"in_bytes"`
	MaxInBytes int64          `json:"max_in_bytes"`
	MaxInLines int64          `json:"max_in_lines"`
	Kinds      map[string]int `json:"kinds,omitempty"`
}

// Cold is the cold full sync.
type Cold struct {
	// KernelS is the result: seconds from process start to the commit that completed the
	// rules (see Criterion).
	KernelS float64 `json:"kernel_s"`
	// Criterion says which kernel-side event ended the sync.
	Criterion string `json:"criterion"`
	// AllSeenGenS: the last commit before the kernel was found holding every expected
	// address (polledColdEnd).
	AllSeenGenS float64 `json:"all_seen_gen_s"`
	// MetricGenS: the last commit received before the proxy's
	// kubeproxy_sync_proxy_rules_last_timestamp_seconds covered both families.
	MetricGenS float64 `json:"metric_gen_s"`
	// MetricS: that metric's value minus the process start.
	MetricS float64 `json:"metric_s"`
	// SyncDurationS and SyncCount: kubeproxy_sync_proxy_rules_duration_seconds sum and
	// count at that point (the proxy's own timing of its sync functions).
	SyncDurationS float64  `json:"sync_duration_s"`
	SyncCount     float64  `json:"sync_count"`
	Commits       int      `json:"commits"`
	CommitProcs   []string `json:"commit_procs"`
	Expected      int      `json:"expected"`
	Unseen        int      `json:"unseen"`
	// RunsS are the KernelS of every cold sync of this proxy at this N, in order: the
	// extra runs (started, synced, stopped, rules removed) and last the one the fields
	// above describe, which stays up for the other phases. FastestS is their minimum.
	RunsS    []float64 `json:"runs_s,omitempty"`
	FastestS float64   `json:"fastest_s,omitempty"`
	// TimeLimitS is how long the proxy had to report its first sync. DNF is set when it
	// did not: KernelS is then the time limit, Unseen how many expected addresses had not
	// appeared yet, Commits the commits so far, RestoresDone the restore runs that had
	// completed, and Running the tools it was still running, with their peak RSS so far.
	TimeLimitS   float64        `json:"time_limit_s,omitempty"`
	DNF          bool           `json:"did_not_finish,omitempty"`
	RestoresDone int            `json:"restores_done,omitempty"`
	Running      []runningChild `json:"running_children,omitempty"`
}

// S is the cold sync: the fastest run, as for the floor (the one run in results from
// before runs_s existed).
func (c *Cold) S() float64 {
	if c.FastestS > 0 {
		return c.FastestS
	}
	return c.KernelS
}

// Floor is the time nft takes to load the proxy's ruleset into an empty namespace.
type Floor struct {
	RulesetBytes int64     `json:"ruleset_bytes"`
	RulesetLines int       `json:"ruleset_lines"`
	Runs         []float64 `json:"runs_s"`
	MedianS      float64   `json:"median_s"`
	FastestS     float64   `json:"fastest_s,omitempty"`
	MaxRSSKiB    int64     `json:"max_rss_kib"`
	CPUS         float64   `json:"cpu_s"`
	Error        string    `json:"error,omitempty"`
	// The change floor (iptables mode, floor_change.go): ChangeChain, of ChangeRules
	// rules, rewritten onto the loaded rules; each run and their median, in ms.
	ChangeChain    string    `json:"change_chain,omitempty"`
	ChangeRules    int       `json:"change_rules,omitempty"`
	ChangeRunsMs   []float64 `json:"change_runs_ms,omitempty"`
	ChangeMedianMs float64   `json:"change_median_ms,omitempty"`
	ChangeError    string    `json:"change_error,omitempty"`
}

// Latency is a set of one-endpoint change samples, in milliseconds.
type Latency struct {
	Samples  int            `json:"samples"`
	Missed   int            `json:"missed"`
	Errors   int            `json:"errors"`
	P50      float64        `json:"p50_ms"`
	P90      float64        `json:"p90_ms"`
	P99      float64        `json:"p99_ms"`
	Max      float64        `json:"max_ms"`
	Mean     float64        `json:"mean_ms"`
	AckP50   float64        `json:"api_ack_p50_ms"`
	MsgTypes map[string]int `json:"msg_types,omitempty"`
	Values   []float64      `json:"values_ms"`
	Metric   MetricLatency  `json:"metric"`
	Commits  int            `json:"commits"`
	// Method says how a sample ends when not at the first nf_tables notification holding
	// the new address (iptables-legacy: the proxy's last restore run of the sync). Verified
	// counts the samples a connection from node-a then confirmed (translated to the new
	// address), Probes the connections opened for that.
	Method string `json:"method,omitempty"`
	// FirstMS is the first change after the cold sync, when it is not one of the samples
	// (ipvs mode in the VM), -1 when it did not show.
	FirstMS float64 `json:"first_ms,omitempty"`
	// CutShort is set when the phase's time budget ended it before every sample was taken.
	CutShort bool `json:"cut_short,omitempty"`
	Verified int  `json:"verified,omitempty"`
	Probes   int  `json:"probes,omitempty"`
}

// MetricLatency is the proxy's own kubeproxy_network_programming_duration_seconds over
// the same changes (histogram delta; quantiles interpolated within buckets), in ms.
type MetricLatency struct {
	Count float64 `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Mean  float64 `json:"mean_ms"`
	Hist  Hist    `json:"hist"`
}

// Churn is the latency under a steady stream of changes.
type Churn struct {
	Latency
	Rate     float64 `json:"rate"`
	Seconds  float64 `json:"seconds"`
	Achieved float64 `json:"achieved_rate"`
	// ChangesPerCommit is how many changes the proxy folded into one commit on average.
	ChangesPerCommit float64 `json:"changes_per_commit"`
}

// TrafficChanges are changes of one endpoint and of all the endpoints of a Service, each
// timed from the API write until a connection from node-a to the ClusterIP is answered by
// a new endpoint (connections opened every ProbeRoundMS, Parallel at a time).
type TrafficChanges struct {
	One          *TrafficLatency `json:"one"`
	All          *TrafficLatency `json:"all"`
	ProbeRoundMS float64         `json:"probe_round_ms"`
}

// TrafficLatency is one kind of traffic change: Traffic until a new endpoint answered,
// Kernel until the first nf_tables notification holding a new address (none with
// iptables-legacy), Connections the probes opened.
type TrafficLatency struct {
	Traffic     Latency `json:"traffic"`
	Kernel      Latency `json:"kernel"`
	Parallel    int     `json:"parallel"`
	Connections int     `json:"connections"`
	LastError   string  `json:"last_error,omitempty"`
}

// Dataplane is connection setup through the real Service's ClusterIP.
type Dataplane struct {
	From        string    `json:"from"`
	Target      string    `json:"target"`
	Conns       int       `json:"conns"`
	OK          int       `json:"ok"`
	Failed      int       `json:"failed"`
	LastError   string    `json:"last_error,omitempty"`
	ConnectP50  float64   `json:"connect_p50_us"`
	ConnectP90  float64   `json:"connect_p90_us"`
	ConnectP99  float64   `json:"connect_p99_us"`
	ConnectMean float64   `json:"connect_mean_us"`
	ConnsPerSec float64   `json:"conns_per_sec"`
	Values      []float64 `json:"-"`
}

// Save writes the results as indented JSON (NaN and infinite values, which JSON cannot
// hold, are written as 0; every figure has a count beside it that tells it is missing).
func (r *Results) Save(path string) error {
	sanitize(reflect.ValueOf(r))
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// LoadResults reads a results file.
func LoadResults(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// percentile returns the q-quantile (0..1) of vs by linear interpolation between order
// statistics; NaN when empty.
func percentile(vs []float64, q float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	if lo == hi {
		return s[lo]
	}
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}

func mean(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	t := 0.0
	for _, v := range vs {
		t += v
	}
	return t / float64(len(vs))
}

func maxOf(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	m := vs[0]
	for _, v := range vs {
		m = max(m, v)
	}
	return m
}

// finish fills the summary fields from Values.
func (l *Latency) finish() {
	l.P50, l.P90, l.P99 = percentile(l.Values, 0.5), percentile(l.Values, 0.9), percentile(l.Values, 0.99)
	l.Max, l.Mean = maxOf(l.Values), mean(l.Values)
}

// sanitize replaces NaN and infinite floats reachable from v by 0.
func sanitize(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			sanitize(v.Elem())
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				sanitize(v.Field(i))
			}
		}
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			sanitize(v.Index(i))
		}
	case reflect.Float32, reflect.Float64:
		if f := v.Float(); (math.IsNaN(f) || math.IsInf(f, 0)) && v.CanSet() {
			v.SetFloat(0)
		}
	}
}

// S is the floor: the fastest run (the median in results from before fastest_s existed).
func (f *Floor) S() float64 {
	if f.FastestS > 0 {
		return f.FastestS
	}
	return f.MedianS
}

// IPVSRun is both proxies in ipvs mode at one N, one after the other in the same VM
// (Debian's cloud kernel under qemu's software emulation), against the objects of the
// host's API server.
type IPVSRun struct {
	N      int    `json:"n"`
	Kernel string `json:"kernel"`
	// VM says how the VM was run (emulation, CPUs, memory); WallS is the VM's whole run,
	// boot to power-off, on the host's clock.
	VM      string          `json:"vm,omitempty"`
	WallS   float64         `json:"wall_s,omitempty"`
	Proxies []*IPVSProxyRun `json:"proxies"`
	Errors  []string        `json:"errors,omitempty"`
	// From, when set, says that this N was measured in another run (MergeIPVS).
	From string `json:"from_run,omitempty"`
}

// MergeIPVS replaces r's ipvs runs by those of another run, each marked with where it
// comes from, and adds that run's ipvs settings.
func (r *Results) MergeIPVS(other *Results) {
	kind := "full"
	if other.Quick {
		kind = "quick"
	}
	from := fmt.Sprintf("the %s run of %s (portico %s)", kind, other.Started.UTC().Format("2006-01-02 15:04 MST"), short(other.Machine.PorticoCommit, 12))
	r.IPVS = nil
	for _, run := range other.IPVS {
		if run.From == "" {
			run.From = from
		}
		r.IPVS = append(r.IPVS, run)
	}
	s := other.Settings
	r.Settings.IPVSScales, r.Settings.IPVSChangeSamples = s.IPVSScales, s.IPVSChangeSamples
	r.Settings.IPVSColdLimitS, r.Settings.IPVSChangeBudgetS = s.IPVSColdLimitS, s.IPVSChangeBudgetS
	for k, v := range s.ProxyCommands {
		if strings.HasSuffix(k, "-ipvs") {
			r.Settings.ProxyCommands[k] = v
		}
	}
}

// Proxy returns the run of a proxy by name (nil if none).
func (r *IPVSRun) Proxy(name string) *IPVSProxyRun {
	if r == nil {
		return nil
	}
	for _, p := range r.Proxies {
		if p.Proxy == name {
			return p
		}
	}
	return nil
}

// IPVSProxyRun is one proxy in ipvs mode in the VM.
type IPVSProxyRun struct {
	Proxy  string    `json:"proxy"`
	Cold   *IPVSCold `json:"cold,omitempty"`
	Change *Latency  `json:"change,omitempty"`
	// Proc is the proxy at the end of the changes; PeakWithChildrenKiB the largest sum of
	// the proxy's and its children's RSS sampled every 100 ms, PeakChildKiB the largest
	// child's RSS in those samples; NFT the tool runs (nft, iptables, ipset) the wrapper
	// logged, with the exact peak RSS of each.
	Proc                ProcSample `json:"proc"`
	PeakWithChildrenKiB int64      `json:"peak_with_children_kib"`
	PeakChildKiB        int64      `json:"peak_child_kib"`
	// SettleS is how long the changes waited after the cold sync for the proxy to be
	// quiet (under 5 % of a CPU over half a second, at most 30 s).
	SettleS float64 `json:"settle_s"`
	NFT     NFTRuns `json:"tools"`
	LogTail string  `json:"log_tail,omitempty"`
	// Leftovers is what IPVS still held after the proxy's own cleanup (should be empty).
	Leftovers    string   `json:"leftovers,omitempty"`
	CleanupError string   `json:"cleanup_error,omitempty"`
	Errors       []string `json:"errors,omitempty"`
}

// IPVSCold is a cold sync in the VM, in seconds from the proxy's launch.
type IPVSCold struct {
	// S is the result: the later of IPVSS and MetricS.
	S float64 `json:"s"`
	// IPVSS is the first read of /proc/net/ip_vs (every PollMS) that showed every bulk
	// Service's virtual server with all its real servers; FirstVSS the first that showed
	// one of them.
	IPVSS    float64 `json:"ipvs_s"`
	FirstVSS float64 `json:"first_vs_s"`
	PollMS   int64   `json:"poll_ms"`
	// MetricS is the proxy's own kubeproxy_sync_proxy_rules_last_timestamp_seconds (every
	// family) minus the launch.
	MetricS float64 `json:"metric_s"`
	// Expected bulk Services, Complete those complete at the end, and the kernel's virtual
	// and real servers then (the latter counted when IPVS was complete).
	Expected       int     `json:"expected"`
	Complete       int     `json:"complete"`
	VirtualServers int     `json:"virtual_servers"`
	RealServers    int     `json:"real_servers"`
	LimitS         float64 `json:"limit_s"`
	DNF            bool    `json:"did_not_finish,omitempty"`
	Error          string  `json:"error,omitempty"`
}
