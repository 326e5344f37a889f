package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"slices"

	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/config"
	"github.com/portico-dev/portico/model"
	"github.com/portico-dev/portico/proxier"
	"github.com/portico-dev/portico/proxier/compile"
	"github.com/portico-dev/portico/proxier/health"
	"github.com/portico-dev/portico/proxier/kubeapi"
	"github.com/portico-dev/portico/proxier/metrics"
)

// families are the IP families portico programs: both, as kube-proxy does on a
// dual-stack-capable kernel (a single-stack cluster simply has no Services of the other).
var families = []model.Family{model.IPv4, model.IPv6}

// runProxy runs the proxy until ctx is done.
func runProxy(ctx context.Context, cfg *config.Config) error {
	logger := klog.FromContext(ctx)
	nodeName, err := cfg.HostnameOrDefault()
	if err != nil {
		return usageError{err}
	}
	m := metrics.New()
	be, err := newBackend(cfg, m)
	if err != nil {
		return err
	}
	if err := checkTools(cfg); err != nil {
		return err
	}
	sources, err := newSources(cfg, nodeName)
	if err != nil {
		return err
	}
	if err := setUpNode(ctx, cfg); err != nil {
		return err
	}
	setOOMScoreAdj(ctx, cfg)
	firstSync := make(chan struct{})
	go cleanupOtherModesAfter(ctx, cfg, firstSync)
	ph := health.NewProxyHealth(cfg.SyncPeriod, health.WithRecorder(m), health.WithPermissionCheck())
	sh := health.NewServiceHealth(health.Listen, ph.IsHealthy)
	defer func() { _ = sh.Close() }()
	p := proxier.New(sources, be, proxier.Options{
		Node:           nodeConfig(cfg, nodeName),
		MinSyncPeriod:  cfg.MinSyncPeriod,
		SyncPeriod:     cfg.SyncPeriod,
		ResyncPeriod:   cfg.ConfigSyncPeriod,
		Recorder:       m,
		Health:         ph,
		ServiceHealth:  sh,
		Memory:         memory(),
		Events:         startEvents(ctx, cfg, nodeName, m),
		AfterFirstSync: func() { close(firstSync) },
	})
	logger.Info("Starting portico", "version", version, "mode", cfg.Mode, "modeSource", cfg.ModeSource, "node", nodeName)
	g, gctx := errgroup.WithContext(ctx)
	err = startServers(gctx, g, []server{
		{"metricsBindAddress", cfg.MetricsBindAddress, withProfiling(cfg.EnableProfiling, m.Handler(cfg.Mode, configz(cfg))), serverRetry},
		{"healthzBindAddress", cfg.HealthzBindAddress, ph.Handler(), serverRetry},
	}, cfg.BindAddressHardFail)
	if err != nil {
		return err
	}
	go watchPermissions(gctx, cfg, ph)
	g.Go(func() error { return p.Run(gctx) })
	err = g.Wait()
	if ctx.Err() != nil {
		logger.Info("Stopping; the dataplane keeps its rules so that traffic continues")
		return nil
	}
	return err
}

// memory returns the proxier's memory management; GOMEMLIMIT and GOGC, when set, are
// left to the Go runtime alone.
func memory() *proxier.Memory {
	m := proxier.DefaultMemory()
	if os.Getenv("GOMEMLIMIT") != "" {
		m.MinLimit = 0
	}
	if os.Getenv("GOGC") != "" {
		m.StartUpGCPercent = 0
	}
	return m
}

// newBackend builds the backend of the configured mode. It observes the size of the
// backend's transactions in m, and the backend registers its own metrics in m's registry.
func newBackend(cfg *config.Config, m *metrics.Metrics) (backends.Backend, error) {
	opts := backendOptions(cfg)
	opts.Families = kernelFamilies(opts.Families)
	opts.TransactionSize = m.ObserveTransactionSize
	opts.Metrics = m.Registerer()
	be, err := registry().New(cfg.Mode, opts)
	if err != nil {
		return nil, fmt.Errorf("%w (mode from %s)", err, cfg.ModeSource)
	}
	return be, nil
}

// kernelFamilies returns those of fams the kernel supports (proxier.KernelFamilies), for
// the backend to prepare only those; all of fams when it supports none (the proxier's own
// probe then fails the start with the reasons).
func kernelFamilies(fams []model.Family) []model.Family {
	var out []model.Family
	for _, f := range fams {
		if proxier.KernelFamilies(f) == nil {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return fams
	}
	return out
}

// backendOptions maps the configuration to a backend's settings: the selected mode's sync
// periods, iptables.localhostNodePorts in iptables mode only, and the ipvs settings
// whatever the mode (cleaning up every mode's rules honours ipvs.excludeCIDRs), with
// kube-proxy's round-robin scheduler when none is configured. Metrics and the transaction
// observer are the caller's to add: dump and cleanup run without them.
func backendOptions(cfg *config.Config) backends.Options {
	ipvs := cfg.IPVS
	return backends.Options{
		Families:           families,
		MasqueradeBit:      cfg.MasqueradeBit,
		SyncPeriod:         cfg.SyncPeriod,
		MinSyncPeriod:      cfg.MinSyncPeriod,
		LocalhostNodePorts: cfg.ServesLocalhostNodePorts(),
		IPVS: backends.IPVSOptions{
			Scheduler:     ipvs.SchedulerOrDefault(),
			StrictARP:     ipvs.StrictARP,
			TCPTimeout:    ipvs.TCPTimeout,
			TCPFinTimeout: ipvs.TCPFinTimeout,
			UDPTimeout:    ipvs.UDPTimeout,
			ExcludeCIDRs:  slices.Clone(ipvs.ExcludeCIDRs),
		},
	}
}

// apiConfig returns the API client configuration from the kubeconfig (or the in-cluster
// configuration when neither kubeconfig nor master is set), before any clientConnection
// setting.
func apiConfig(cfg *config.Config) (*rest.Config, error) {
	var rc *rest.Config
	var err error
	if cfg.Kubeconfig == "" && cfg.Master == "" {
		rc, err = rest.InClusterConfig()
	} else {
		rc, err = clientcmd.BuildConfigFromFlags(cfg.Master, cfg.Kubeconfig)
	}
	if err != nil {
		return nil, fmt.Errorf("building the API client configuration: %w", err)
	}
	return rc, nil
}

// newSources builds the API list-watches from the kubeconfig (or in-cluster config) and
// the clientConnection settings, with portico's HTTP/2 health check unless the
// environment sets client-go's own variables.
func newSources(cfg *config.Config, nodeName string) (proxier.Sources, error) {
	rc, err := apiConfig(cfg)
	if err != nil {
		return proxier.Sources{}, err
	}
	// A connection whose peer vanished is noticed in 15 s instead of client-go's 45 s.
	if err := kubeapi.SetHealthCheckDefaults(os.LookupEnv, os.Setenv); err != nil {
		return proxier.Sources{}, err
	}
	rc.QPS, rc.Burst = cfg.QPS, int(cfg.Burst)
	rc.ContentType, rc.AcceptContentTypes = cfg.ContentType, cfg.AcceptContentTypes
	rc.UserAgent = "portico/" + version
	// The API server gzips large responses unless told not to; at 10,000 Services that
	// made the initial LIST about 0.3 s slower (docs/benchmarks-analysis.md).
	rc.DisableCompression = !cfg.APICompression
	if tc, err := rest.TLSConfigFor(rc); err == nil && tc == nil && rc.DisableCompression && rc.Proxy == nil {
		// Without TLS settings client-go would use http.DefaultTransport, which asks for
		// gzip whatever DisableCompression says; a proxy setting (the same one as
		// DefaultTransport's) makes it build its own transport.
		rc.Proxy = http.ProxyFromEnvironment
	}
	return kubeapi.Sources(rc, nodeName)
}

// nodeConfig maps the configuration to what compiling needs.
func nodeConfig(cfg *config.Config, nodeName string) compile.NodeConfig {
	npa := cfg.NodePortAddresses
	bind := cfg.BindAddress
	if bind.IsValid() && bind.IsUnspecified() {
		bind = netip.Addr{}
	}
	return compile.NodeConfig{
		Name:     nodeName,
		Families: families,
		NodePorts: compile.NodePortSelector{
			Primary: npa.Primary, Localhost: npa.Localhost, All: npa.All, CIDRs: npa.CIDRs,
		},
		LocalTraffic: compile.LocalTrafficConfig{
			Mode:            cfg.DetectLocalMode,
			ClusterCIDRs:    cfg.ClusterCIDRs,
			BridgeInterface: cfg.BridgeInterface,
			InterfacePrefix: cfg.InterfacePrefix,
		},
		MasqueradeAll:      cfg.MasqueradeAll,
		LocalhostNodePorts: cfg.ServesLocalhostNodePorts(),
		BindAddress:        bind,
	}
}

// withProfiling adds Go's /debug/pprof handlers to the metrics server when enableProfiling
// is set, as kube-proxy does.
func withProfiling(enabled bool, h http.Handler) http.Handler {
	if !enabled {
		return h
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/", h)
	return mux
}

// configz returns the /configz content: the effective configuration.
func configz(cfg *config.Config) func() (any, error) {
	return func() (any, error) {
		eff := cfg.Effective
		eff.APIVersion = "kubeproxy.config.k8s.io/v1alpha1"
		eff.Kind = "KubeProxyConfiguration"
		return eff, nil
	}
}
