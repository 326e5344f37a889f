// Package config turns kube-proxy's command line and configuration file
// (kubeproxy.config.k8s.io/v1alpha1 KubeProxyConfiguration) into portico's
// validated, effective configuration.
//
// The package follows kube-proxy's own semantics: the same flags, the same
// defaults, the same mode-dependent mapping of the v1alpha1 fields and the
// same validation rules, so that an unchanged kube-proxy DaemonSet and
// ConfigMap can be used to run portico.
package config

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	kubeproxyconfigv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	"sigs.k8s.io/yaml"
)

// Proxy modes accepted in the mode field and by --proxy-mode / --mode.
const (
	// ModeIPTables selects the iptables backend.
	ModeIPTables = "iptables"
	// ModeNFTables selects the nftables backend.
	ModeNFTables = "nftables"
	// ModeIPVS selects the IPVS backend.
	ModeIPVS = "ipvs"
)

// Modes lists the valid proxy modes.
var Modes = []string{ModeIPTables, ModeNFTables, ModeIPVS}

// Where the effective proxy mode came from (Config.ModeSource).
const (
	// ModeSourceFlag means --proxy-mode or --mode was given.
	ModeSourceFlag = "flag"
	// ModeSourceFile means the mode field of the --config file was used.
	ModeSourceFile = "file"
	// ModeSourceDefault means no mode was configured and iptables was chosen.
	ModeSourceDefault = "default"
)

// Local traffic detection modes (Config.DetectLocalMode).
const (
	// LocalModeClusterCIDR treats traffic from the cluster CIDRs as local.
	LocalModeClusterCIDR = "ClusterCIDR"
	// LocalModeNodeCIDR treats traffic from the node's pod CIDRs as local.
	LocalModeNodeCIDR = "NodeCIDR"
	// LocalModeBridgeInterface treats traffic from a bridge interface as local.
	LocalModeBridgeInterface = "BridgeInterface"
	// LocalModeInterfaceNamePrefix treats traffic from interfaces with a
	// given name prefix as local.
	LocalModeInterfaceNamePrefix = "InterfaceNamePrefix"
)

// Keywords allowed in nodePortAddresses besides CIDRs.
const (
	// NodePortAddressesPrimary expands to the node's primary IP(s).
	NodePortAddressesPrimary = "primary"
	// NodePortAddressesLocalhost expands to 127.0.0.0/8 and ::1/128.
	NodePortAddressesLocalhost = "localhost"
	// NodePortAddressesAll expands to 0.0.0.0/0 and ::/0.
	NodePortAddressesAll = "all"
)

// Config is the validated, effective configuration: the config file (if
// any) with kube-proxy's defaults and the applicable command-line flags
// applied, and the mode-dependent v1alpha1 fields resolved for Mode.
type Config struct {
	// Mode is the proxy mode: one of Modes.
	Mode string
	// ModeSource tells where Mode came from: "flag", "file" or "default".
	ModeSource string
	// File is the --config path, or "" when no file was used.
	File string
	// Effective is the defaulted v1alpha1 view of the configuration, as
	// served at /configz.
	Effective kubeproxyconfigv1alpha1.KubeProxyConfiguration

	// Kubeconfig is the kubeconfig path ("" means in-cluster unless Master
	// is set).
	Kubeconfig string
	// Master overrides the API server address of the kubeconfig.
	Master string
	// HostnameOverride is the node name override, trimmed and lowercased;
	// "" means use the OS hostname (see HostnameOrDefault).
	HostnameOverride string
	// QPS is the client-side rate limit towards the API server.
	QPS float32
	// Burst is the client-side burst towards the API server.
	Burst int32
	// ContentType is the content type of requests sent to the API server.
	ContentType string
	// AcceptContentTypes is the Accept header sent to the API server.
	AcceptContentTypes string
	// APICompression asks the API server for gzipped responses (--kube-api-compression).
	APICompression bool

	// BindAddress overrides the node's primary IP (unspecified means
	// "use the Node object").
	BindAddress netip.Addr
	// HealthzBindAddress is host:port of the health server; "" disables it.
	HealthzBindAddress string
	// MetricsBindAddress is host:port of the metrics server.
	MetricsBindAddress string
	// BindAddressHardFail makes failing to bind a server port fatal.
	BindAddressHardFail bool
	// EnableProfiling enables /debug/pprof on the metrics server.
	EnableProfiling bool

	// SyncPeriod is the full resync period of the selected mode.
	SyncPeriod time.Duration
	// MinSyncPeriod is the minimum time between syncs of the selected mode.
	MinSyncPeriod time.Duration
	// ConfigSyncPeriod is the informer resync period.
	ConfigSyncPeriod time.Duration

	// MasqueradeAll SNATs all traffic sent to service cluster IPs.
	MasqueradeAll bool
	// MasqueradeBit is the fwmark bit used to mark packets needing SNAT.
	MasqueradeBit int

	// DetectLocalMode is ClusterCIDR, NodeCIDR, BridgeInterface or
	// InterfaceNamePrefix.
	DetectLocalMode string
	// ClusterCIDRs are the pod CIDRs of the cluster (ClusterCIDR mode).
	ClusterCIDRs []netip.Prefix
	// BridgeInterface is the pod bridge (BridgeInterface mode).
	BridgeInterface string
	// InterfacePrefix is the pod interface name prefix
	// (InterfaceNamePrefix mode).
	InterfacePrefix string

	// NodePortAddresses restricts the node IPs NodePorts are served on.
	NodePortAddresses NodePortAddresses
	// LocalhostNodePorts allows NodePorts on 127.0.0.0/8 (iptables mode).
	LocalhostNodePorts bool

	// OOMScoreAdj is the oom_score_adj for the process.
	OOMScoreAdj int32
	// Conntrack holds the conntrack sysctl settings.
	Conntrack ConntrackConfig
	// IPVS holds the IPVS mode settings.
	IPVS IPVSConfig

	// FeatureGates are the feature gates, as configured (not validated
	// against a list of known gates).
	FeatureGates map[string]bool
	// Logging is the logging section of the file (text format).
	Logging LoggingConfig

	// Cleanup asks to remove all rules left by any mode and exit.
	Cleanup bool
	// InitOnly asks to perform privileged initialization and exit.
	InitOnly bool
	// WriteConfigTo, when set, asks to write Effective to that path and exit.
	WriteConfigTo string
}

// NodePortAddresses is nodePortAddresses parsed: keywords and CIDRs.
// All false and no CIDRs means the list was empty: NodePorts are served on
// every local IP.
type NodePortAddresses struct {
	// Primary is set by the "primary" keyword.
	Primary bool
	// Localhost is set by the "localhost" keyword.
	Localhost bool
	// All is set by the "all" keyword.
	All bool
	// CIDRs are the remaining entries, masked.
	CIDRs []netip.Prefix
}

// ConntrackConfig holds the conntrack settings kube-proxy applies.
type ConntrackConfig struct {
	// MaxPerCore is the nf_conntrack_max per CPU core (0 leaves it as-is).
	MaxPerCore int32
	// Min is the lower bound of nf_conntrack_max.
	Min int32
	// TCPEstablishedTimeout is the idle timeout of established TCP
	// connections (0 leaves it as-is).
	TCPEstablishedTimeout time.Duration
	// TCPCloseWaitTimeout is the timeout of TCP connections in CLOSE_WAIT
	// (0 leaves it as-is).
	TCPCloseWaitTimeout time.Duration
	// UDPTimeout is the timeout of unreplied UDP flows (0 leaves it as-is).
	UDPTimeout time.Duration
	// UDPStreamTimeout is the timeout of assured UDP flows (0 leaves it
	// as-is).
	UDPStreamTimeout time.Duration
	// TCPBeLiberal sets nf_conntrack_tcp_be_liberal.
	TCPBeLiberal bool
}

// LoggingConfig is the logging section of the configuration. portico writes klog's text
// format; the json format is rejected by validation.
type LoggingConfig struct {
	// Verbosity is logging.verbosity, klog's -v.
	Verbosity int
	// VModule is logging.vmodule in klog's --vmodule syntax (pattern=N,...).
	VModule string
	// FlushFrequency is logging.flushFrequency: how often buffered log lines are flushed.
	FlushFrequency time.Duration
}

// DefaultIPVSScheduler is the IPVS scheduler kube-proxy uses when ipvs.scheduler is
// empty: round robin.
const DefaultIPVSScheduler = "rr"

// IPVSConfig holds the settings of the ipvs mode.
type IPVSConfig struct {
	// Scheduler is the IPVS scheduler as configured ("" means DefaultIPVSScheduler; see
	// SchedulerOrDefault).
	Scheduler string
	// ExcludeCIDRs are left alone when cleaning up IPVS services.
	ExcludeCIDRs []netip.Prefix
	// StrictARP sets arp_ignore=1 and arp_announce=2.
	StrictARP bool
	// TCPTimeout is the idle timeout of IPVS TCP sessions (0 leaves it).
	TCPTimeout time.Duration
	// TCPFinTimeout is the IPVS TCP timeout after a FIN (0 leaves it).
	TCPFinTimeout time.Duration
	// UDPTimeout is the IPVS UDP timeout (0 leaves it).
	UDPTimeout time.Duration
}

// SchedulerOrDefault returns the IPVS scheduler to use: Scheduler, or
// DefaultIPVSScheduler when it is empty, as kube-proxy does. (The configuration itself,
// and so /configz, keeps the empty value, as kube-proxy's does.)
func (c IPVSConfig) SchedulerOrDefault() string {
	if c.Scheduler == "" {
		return DefaultIPVSScheduler
	}
	return c.Scheduler
}

// ServesLocalhostNodePorts reports whether NodePorts answer on the node's IPv4 loopback
// addresses: iptables mode's localhostNodePorts (the other modes never serve them).
func (c *Config) ServesLocalhostNodePorts() bool {
	return c.Mode == ModeIPTables && c.LocalhostNodePorts
}

// SetsRouteLocalnet reports whether the node needs net.ipv4.conf.all.route_localnet=1, as
// kube-proxy decides it: in iptables mode with localhostNodePorts, when nodePortAddresses
// lets NodePorts answer on 127.0.0.1 (see NodePortAddresses.SelectsIPv4Loopback).
func (c *Config) SetsRouteLocalnet() bool {
	return c.ServesLocalhostNodePorts() && c.NodePortAddresses.SelectsIPv4Loopback()
}

// SelectsIPv4Loopback reports whether the IPv4 part of nodePortAddresses contains
// 127.0.0.1, as kube-proxy reads it: an empty IPv4 part means 0.0.0.0/0, "all" and
// "localhost" contain it, and "primary" stands for the node's IPv4 address (taken as not
// loopback: it is not known before the Node is read).
func (n NodePortAddresses) SelectsIPv4Loopback() bool {
	if n.All || n.Localhost {
		return true
	}
	loopback := netip.MustParseAddr("127.0.0.0")
	ipv4 := n.Primary
	for _, p := range n.CIDRs {
		if p.Addr().Is4() {
			ipv4 = true
			if p.Contains(loopback) {
				return true
			}
		}
	}
	return !ipv4
}

// HostnameOrDefault returns the node name: the hostname override if set,
// else the OS hostname, trimmed and lowercased as kube-proxy does.
func (c *Config) HostnameOrDefault() (string, error) {
	name := c.HostnameOverride
	if name == "" {
		h, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("determining hostname: %w", err)
		}
		name = h
	}
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "" {
		return "", fmt.Errorf("hostname is empty")
	}
	return name, nil
}

// WriteFile writes the effective v1alpha1 configuration (Effective) as
// YAML to path, as --write-config-to asks.
func (c *Config) WriteFile(path string) error {
	data, err := yaml.Marshal(&c.Effective)
	if err != nil {
		return fmt.Errorf("encoding the configuration: %w", err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("writing the configuration: %w", err)
	}
	return nil
}
