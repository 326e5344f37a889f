package config

import (
	"time"

	"github.com/spf13/pflag"
	cliflag "k8s.io/component-base/cli/flag"
)

// Default values shared by the flags and the v1alpha1 defaulting.
const (
	defaultBindAddress        = "0.0.0.0"
	defaultHealthzPort        = 10256
	defaultMetricsPort        = 10249
	defaultHealthzBindAddress = "0.0.0.0:10256"
	defaultMetricsBindAddress = "127.0.0.1:10249"
	defaultOOMScoreAdj        = -999
	defaultMasqueradeBit      = 14
	defaultSyncPeriod         = 30 * time.Second
	defaultMinSyncPeriod      = 1 * time.Second
	defaultConfigSyncPeriod   = 15 * time.Minute
	defaultConntrackMaxPerCor = 32 * 1024
	defaultConntrackMin       = 128 * 1024
	defaultTCPEstablished     = 24 * time.Hour
	defaultTCPCloseWait       = 1 * time.Hour
	defaultContentType        = "application/vnd.kubernetes.protobuf"
	defaultQPS                = 5.0
	defaultBurst              = 10
)

// Flags holds kube-proxy's command-line flags. Register them with AddFlags,
// parse the flag set, then pass both to Load.
type Flags struct {
	// ConfigFile is --config.
	ConfigFile string
	// WriteConfigTo is --write-config-to.
	WriteConfigTo string
	// Cleanup is --cleanup.
	Cleanup bool
	// InitOnly is --init-only.
	InitOnly bool
	// Mode is --proxy-mode (alias --mode).
	Mode string
	// modeFlag is the name of the mode flag that was set last.
	modeFlag string
	// FeatureGates is --feature-gates.
	FeatureGates map[string]bool

	// Kubeconfig is --kubeconfig.
	Kubeconfig string
	// Master is --master.
	Master string
	// ContentType is --kube-api-content-type.
	ContentType string
	// QPS is --kube-api-qps.
	QPS float32
	// Burst is --kube-api-burst.
	Burst int32
	// APICompression is --kube-api-compression.
	APICompression bool

	// HostnameOverride is --hostname-override.
	HostnameOverride string
	// BindAddress is --bind-address.
	BindAddress string
	// HealthzBindAddress is --healthz-bind-address.
	HealthzBindAddress string
	// MetricsBindAddress is --metrics-bind-address.
	MetricsBindAddress string
	// HealthzPort is the deprecated --healthz-port.
	HealthzPort int32
	// MetricsPort is the deprecated --metrics-port.
	MetricsPort int32
	// BindAddressHardFail is --bind-address-hard-fail.
	BindAddressHardFail bool
	// Profiling is --profiling.
	Profiling bool
	// ShowHiddenMetricsForVersion is --show-hidden-metrics-for-version.
	ShowHiddenMetricsForVersion string

	// MasqueradeAll is --masquerade-all.
	MasqueradeAll bool
	// MasqueradeBit is --iptables-masquerade-bit.
	MasqueradeBit int32
	// LocalhostNodePorts is --iptables-localhost-nodeports.
	LocalhostNodePorts bool
	// IPTablesSyncPeriod is --iptables-sync-period.
	IPTablesSyncPeriod time.Duration
	// IPTablesMinSyncPeriod is --iptables-min-sync-period.
	IPTablesMinSyncPeriod time.Duration
	// IPVSSyncPeriod is --ipvs-sync-period.
	IPVSSyncPeriod time.Duration
	// IPVSMinSyncPeriod is --ipvs-min-sync-period.
	IPVSMinSyncPeriod time.Duration
	// IPVSScheduler is --ipvs-scheduler.
	IPVSScheduler string
	// IPVSExcludeCIDRs is --ipvs-exclude-cidrs.
	IPVSExcludeCIDRs []string
	// IPVSStrictARP is --ipvs-strict-arp.
	IPVSStrictARP bool
	// IPVSTCPTimeout is --ipvs-tcp-timeout.
	IPVSTCPTimeout time.Duration
	// IPVSTCPFinTimeout is --ipvs-tcpfin-timeout.
	IPVSTCPFinTimeout time.Duration
	// IPVSUDPTimeout is --ipvs-udp-timeout.
	IPVSUDPTimeout time.Duration

	// DetectLocalMode is --detect-local-mode.
	DetectLocalMode string
	// BridgeInterface is --pod-bridge-interface.
	BridgeInterface string
	// InterfaceNamePrefix is --pod-interface-name-prefix.
	InterfaceNamePrefix string
	// ClusterCIDR is --cluster-cidr (comma-separated).
	ClusterCIDR string
	// NodePortAddresses is --nodeport-addresses.
	NodePortAddresses []string

	// OOMScoreAdj is --oom-score-adj.
	OOMScoreAdj int32
	// ConntrackMaxPerCore is --conntrack-max-per-core.
	ConntrackMaxPerCore int32
	// ConntrackMin is --conntrack-min.
	ConntrackMin int32
	// ConntrackTCPEstablishedTimeout is --conntrack-tcp-timeout-established.
	ConntrackTCPEstablishedTimeout time.Duration
	// ConntrackTCPCloseWaitTimeout is --conntrack-tcp-timeout-close-wait.
	ConntrackTCPCloseWaitTimeout time.Duration
	// ConntrackTCPBeLiberal is --conntrack-tcp-be-liberal.
	ConntrackTCPBeLiberal bool
	// ConntrackUDPTimeout is --conntrack-udp-timeout.
	ConntrackUDPTimeout time.Duration
	// ConntrackUDPStreamTimeout is --conntrack-udp-timeout-stream.
	ConntrackUDPStreamTimeout time.Duration
	// ConfigSyncPeriod is --config-sync-period.
	ConfigSyncPeriod time.Duration
}

// ignoredWithConfig is appended to the help of flags that kube-proxy
// ignores when --config is given.
const ignoredWithConfig = " Ignored when --config is given."

// AddFlags registers kube-proxy's flags (except the logging flags, which
// the caller registers) on fs, with kube-proxy's names, types and defaults.
func (f *Flags) AddFlags(fs *pflag.FlagSet) {
	f.addGeneralFlags(fs)
	f.addClientFlags(fs)
	f.addServerFlags(fs)
	f.addModeFlags(fs)
	f.addIPVSFlags(fs)
	f.addLocalFlags(fs)
	f.addConntrackFlags(fs)
}

func (f *Flags) addGeneralFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.ConfigFile, "config", "", "Path of a KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1) file. When given, most other flags are ignored.")
	fs.StringVar(&f.WriteConfigTo, "write-config-to", "", "Write the effective configuration to this file and exit.")
	fs.BoolVar(&f.Cleanup, "cleanup", false, "Remove the rules of every proxy mode and exit.")
	fs.BoolVar(&f.InitOnly, "init-only", false, "Only run the steps that need full root privileges, then exit; the proxy can then run with just CAP_NET_ADMIN.")
	fs.Var(cliflag.NewMapStringBool(&f.FeatureGates), "feature-gates", "Comma-separated key=true|false pairs enabling or disabling feature gates."+ignoredWithConfig)
	fs.StringVar(&f.HostnameOverride, "hostname-override", "", "Node name to use instead of the host's name. Applies even when --config is given.")
	fs.Int32Var(&f.OOMScoreAdj, "oom-score-adj", defaultOOMScoreAdj, "oom_score_adj of the process, in [-1000, 1000]."+ignoredWithConfig)
	fs.DurationVar(&f.ConfigSyncPeriod, "config-sync-period", defaultConfigSyncPeriod, "How often the state received from the API server is fully resynced. Must be positive."+ignoredWithConfig)
}

func (f *Flags) addClientFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.Kubeconfig, "kubeconfig", "", "Path of the kubeconfig used to reach the API server (its server can be overridden with --master)."+ignoredWithConfig)
	fs.StringVar(&f.Master, "master", "", "Address of the Kubernetes API server; takes precedence over the kubeconfig's server.")
	fs.StringVar(&f.ContentType, "kube-api-content-type", defaultContentType, "Content type used for requests to the API server."+ignoredWithConfig)
	fs.Float32Var(&f.QPS, "kube-api-qps", defaultQPS, "Queries per second allowed towards the API server."+ignoredWithConfig)
	fs.Int32Var(&f.Burst, "kube-api-burst", defaultBurst, "Burst of queries allowed towards the API server."+ignoredWithConfig)
	fs.BoolVar(&f.APICompression, "kube-api-compression", false, "Ask the API server to gzip its responses (portico's own flag; applies even when --config is given). Off by default, as for kube-controller-manager and kube-scheduler: on a cluster network gzip costs the API server more CPU, and the node more time, than it saves.")
}

func (f *Flags) addServerFlags(fs *pflag.FlagSet) {
	f.BindAddress = defaultBindAddress
	f.HealthzBindAddress = defaultHealthzBindAddress
	f.MetricsBindAddress = defaultMetricsBindAddress
	fs.Var(&typedString{p: &f.BindAddress, typ: "ip"}, "bind-address", "IP to treat as the node's primary IP instead of the one from the Node object (despite the name, nothing binds to it)."+ignoredWithConfig)
	fs.Var(&typedString{p: &f.HealthzBindAddress, typ: "ipport"}, "healthz-bind-address", "IP and port (or just IP) the health check server listens on."+ignoredWithConfig)
	fs.Var(&typedString{p: &f.MetricsBindAddress, typ: "ipport"}, "metrics-bind-address", "IP and port (or just IP) the metrics server listens on; use 0.0.0.0:10249 or [::]:10249 for all interfaces."+ignoredWithConfig)
	fs.Int32Var(&f.HealthzPort, "healthz-port", defaultHealthzPort, "Port of the health check server; 0 disables it.")
	_ = fs.MarkDeprecated("healthz-port", "use --healthz-bind-address instead.")
	fs.Int32Var(&f.MetricsPort, "metrics-port", defaultMetricsPort, "Port of the metrics server.")
	_ = fs.MarkDeprecated("metrics-port", "use --metrics-bind-address instead.")
	fs.BoolVar(&f.BindAddressHardFail, "bind-address-hard-fail", false, "Exit when a server port cannot be bound."+ignoredWithConfig)
	fs.BoolVar(&f.Profiling, "profiling", false, "Serve profiling data under /debug/pprof."+ignoredWithConfig)
	fs.StringVar(&f.ShowHiddenMetricsForVersion, "show-hidden-metrics-for-version", "", "Previous minor version (<major>.<minor>, e.g. 1.36) whose hidden metrics are still shown."+ignoredWithConfig)
}

func (f *Flags) addModeFlags(fs *pflag.FlagSet) {
	fs.Var(&modeValue{f: f, name: "proxy-mode"}, "proxy-mode", "Proxy backend: 'iptables' (the default when unset), 'nftables' (recommended) or 'ipvs'. Takes precedence over the mode field of --config. --mode is an alias.")
	fs.Var(&modeValue{f: f, name: "mode"}, "mode", "Alias of --proxy-mode: both set the same value.")
	fs.BoolVar(&f.MasqueradeAll, "masquerade-all", false, "SNAT all traffic sent to Service cluster IPs (some CNI plugins need this)."+ignoredWithConfig)
	fs.Int32Var(&f.MasqueradeBit, "iptables-masquerade-bit", defaultMasqueradeBit, "Bit of the fwmark used to mark packets needing SNAT in iptables and ipvs modes, in [0, 31]."+ignoredWithConfig)
	fs.BoolVar(&f.LocalhostNodePorts, "iptables-localhost-nodeports", true, "Allow reaching NodePort services via 127.0.0.0/8 (iptables mode and IPv4 only)."+ignoredWithConfig)
	fs.DurationVar(&f.IPTablesSyncPeriod, "iptables-sync-period", defaultSyncPeriod, "Period of full resyncs in iptables and nftables modes (e.g. '5s', '1m'). Must be positive."+ignoredWithConfig)
	fs.DurationVar(&f.IPTablesMinSyncPeriod, "iptables-min-sync-period", defaultMinSyncPeriod, "Minimum time between two syncs in iptables and nftables modes; 0 syncs on every change."+ignoredWithConfig)
}

func (f *Flags) addIPVSFlags(fs *pflag.FlagSet) {
	fs.DurationVar(&f.IPVSSyncPeriod, "ipvs-sync-period", defaultSyncPeriod, "Period of full resyncs in ipvs mode (e.g. '5s', '1m'). Must be positive."+ignoredWithConfig)
	fs.DurationVar(&f.IPVSMinSyncPeriod, "ipvs-min-sync-period", defaultMinSyncPeriod, "Minimum time between two syncs in ipvs mode; 0 syncs on every change."+ignoredWithConfig)
	fs.StringVar(&f.IPVSScheduler, "ipvs-scheduler", "", "IPVS scheduler used in ipvs mode."+ignoredWithConfig)
	fs.StringSliceVar(&f.IPVSExcludeCIDRs, "ipvs-exclude-cidrs", nil, "Comma-separated CIDRs whose IPVS services are never cleaned up."+ignoredWithConfig)
	fs.BoolVar(&f.IPVSStrictARP, "ipvs-strict-arp", false, "Set arp_ignore=1 and arp_announce=2."+ignoredWithConfig)
	fs.DurationVar(&f.IPVSTCPTimeout, "ipvs-tcp-timeout", 0, "Idle timeout of IPVS TCP connections; 0 leaves the kernel value."+ignoredWithConfig)
	fs.DurationVar(&f.IPVSTCPFinTimeout, "ipvs-tcpfin-timeout", 0, "Timeout of IPVS TCP connections after a FIN; 0 leaves the kernel value."+ignoredWithConfig)
	fs.DurationVar(&f.IPVSUDPTimeout, "ipvs-udp-timeout", 0, "Timeout of IPVS UDP packets; 0 leaves the kernel value."+ignoredWithConfig)
}

func (f *Flags) addLocalFlags(fs *pflag.FlagSet) {
	fs.Var(&typedString{p: &f.DetectLocalMode, typ: "LocalMode"}, "detect-local-mode", "How to tell local (pod) traffic apart: ClusterCIDR, NodeCIDR, BridgeInterface or InterfaceNamePrefix."+ignoredWithConfig)
	fs.StringVar(&f.BridgeInterface, "pod-bridge-interface", "", "With --detect-local-mode=BridgeInterface, traffic entering from this bridge is local."+ignoredWithConfig)
	fs.StringVar(&f.InterfaceNamePrefix, "pod-interface-name-prefix", "", "With --detect-local-mode=InterfaceNamePrefix, traffic entering from interfaces whose name starts with this prefix is local."+ignoredWithConfig)
	fs.StringVar(&f.ClusterCIDR, "cluster-cidr", "", "Pod CIDR of the cluster, or a comma-separated IPv4/IPv6 pair; with --detect-local-mode=ClusterCIDR, traffic from it is local."+ignoredWithConfig)
	fs.StringSliceVar(&f.NodePortAddresses, "nodeport-addresses", nil, "CIDRs and keywords selecting the node IPs NodePorts are served on. Keywords: 'primary' (the Node's primary IPs), 'localhost' (127.0.0.0/8, ::1/128), 'all' (0.0.0.0/0, ::/0). Unset means all IPs in iptables and ipvs modes and 'primary' in nftables mode."+ignoredWithConfig)
}

func (f *Flags) addConntrackFlags(fs *pflag.FlagSet) {
	fs.Int32Var(&f.ConntrackMaxPerCore, "conntrack-max-per-core", defaultConntrackMaxPerCor, "Conntrack entries allowed per CPU core; 0 leaves the limit (and --conntrack-min) alone."+ignoredWithConfig)
	fs.Int32Var(&f.ConntrackMin, "conntrack-min", defaultConntrackMin, "Lower bound of the conntrack table size, whatever --conntrack-max-per-core gives."+ignoredWithConfig)
	fs.DurationVar(&f.ConntrackTCPEstablishedTimeout, "conntrack-tcp-timeout-established", defaultTCPEstablished, "Idle timeout of established TCP connections; 0 leaves the kernel value."+ignoredWithConfig)
	fs.DurationVar(&f.ConntrackTCPCloseWaitTimeout, "conntrack-tcp-timeout-close-wait", defaultTCPCloseWait, "Timeout of TCP connections in CLOSE_WAIT."+ignoredWithConfig)
	fs.BoolVar(&f.ConntrackTCPBeLiberal, "conntrack-tcp-be-liberal", false, "Set nf_conntrack_tcp_be_liberal to 1."+ignoredWithConfig)
	fs.DurationVar(&f.ConntrackUDPTimeout, "conntrack-udp-timeout", 0, "Idle timeout of unreplied UDP flows; 0 leaves the kernel value."+ignoredWithConfig)
	fs.DurationVar(&f.ConntrackUDPStreamTimeout, "conntrack-udp-timeout-stream", 0, "Idle timeout of assured UDP flows; 0 leaves the kernel value."+ignoredWithConfig)
}

// typedString is a string flag with a descriptive type name. As in
// kube-proxy, setting it to "" leaves the previous value in place.
type typedString struct {
	p   *string
	typ string
}

// String returns the current value.
func (s *typedString) String() string { return *s.p }

// Set stores a non-empty value.
func (s *typedString) Set(v string) error {
	if v != "" {
		*s.p = v
	}
	return nil
}

// Type returns the type name shown in the help.
func (s *typedString) Type() string { return s.typ }

// modeValue backs both --proxy-mode and --mode and remembers which one was
// set last, so that messages can name it.
type modeValue struct {
	f    *Flags
	name string
}

// String returns the current mode.
func (m *modeValue) String() string { return m.f.Mode }

// Set stores the mode and remembers which flag set it.
func (m *modeValue) Set(v string) error {
	m.f.Mode = v
	m.f.modeFlag = m.name
	return nil
}

// Type returns the type name shown in the help, as kube-proxy.
func (m *modeValue) Type() string { return "ProxyMode" }
