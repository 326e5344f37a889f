package config

import (
	"net"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	logsapi "k8s.io/component-base/logs/api/v1"
	kubeproxyconfigv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	netutils "k8s.io/utils/net"
)

// setDefaults fills unset (zero) fields with kube-proxy's v1alpha1
// defaults. As upstream, a zero duration or count counts as unset.
func setDefaults(obj *kubeproxyconfigv1alpha1.KubeProxyConfiguration) {
	obj.SetGroupVersionKind(configGVK)
	setAddressDefaults(obj)
	if obj.OOMScoreAdj == nil {
		obj.OOMScoreAdj = ptrTo[int32](defaultOOMScoreAdj)
	}
	setModeDefaults(obj)
	setConntrackDefaults(&obj.Conntrack)
	defaultDuration(&obj.ConfigSyncPeriod, defaultConfigSyncPeriod)
	if obj.ClientConnection.ContentType == "" {
		obj.ClientConnection.ContentType = defaultContentType
	}
	if obj.ClientConnection.QPS == 0 {
		obj.ClientConnection.QPS = defaultQPS
	}
	if obj.ClientConnection.Burst == 0 {
		obj.ClientConnection.Burst = defaultBurst
	}
	if obj.FeatureGates == nil {
		obj.FeatureGates = map[string]bool{}
	}
	logsapi.SetRecommendedLoggingConfiguration(&obj.Logging)
}

// setAddressDefaults defaults the bind address and the server addresses;
// the server defaults follow the IP family of the bind address.
func setAddressDefaults(obj *kubeproxyconfigv1alpha1.KubeProxyConfiguration) {
	if obj.BindAddress == "" {
		obj.BindAddress = defaultBindAddress
	}
	healthzHost, metricsHost := "0.0.0.0", "127.0.0.1"
	if netutils.ParseIPSloppy(obj.BindAddress).To4() == nil {
		healthzHost, metricsHost = "[::]", "[::1]"
	}
	if obj.HealthzBindAddress == "" {
		obj.HealthzBindAddress = healthzHost + ":" + strconv.Itoa(defaultHealthzPort)
	} else {
		obj.HealthzBindAddress = appendPortIfNeeded(obj.HealthzBindAddress, defaultHealthzPort)
	}
	if obj.MetricsBindAddress == "" {
		obj.MetricsBindAddress = metricsHost + ":" + strconv.Itoa(defaultMetricsPort)
	} else {
		obj.MetricsBindAddress = appendPortIfNeeded(obj.MetricsBindAddress, defaultMetricsPort)
	}
}

// setModeDefaults defaults the per-mode sub-structures. Note that, as
// upstream, ipvs.minSyncPeriod has no default.
func setModeDefaults(obj *kubeproxyconfigv1alpha1.KubeProxyConfiguration) {
	defaultDuration(&obj.IPTables.SyncPeriod, defaultSyncPeriod)
	defaultDuration(&obj.IPTables.MinSyncPeriod, defaultMinSyncPeriod)
	if obj.IPTables.LocalhostNodePorts == nil {
		obj.IPTables.LocalhostNodePorts = ptrTo(true)
	}
	if obj.IPTables.MasqueradeBit == nil {
		obj.IPTables.MasqueradeBit = ptrTo[int32](defaultMasqueradeBit)
	}
	defaultDuration(&obj.IPVS.SyncPeriod, defaultSyncPeriod)
	defaultDuration(&obj.NFTables.SyncPeriod, defaultSyncPeriod)
	defaultDuration(&obj.NFTables.MinSyncPeriod, defaultMinSyncPeriod)
	if obj.NFTables.MasqueradeBit == nil {
		obj.NFTables.MasqueradeBit = ptrTo[int32](defaultMasqueradeBit)
	}
}

func setConntrackDefaults(c *kubeproxyconfigv1alpha1.KubeProxyConntrackConfiguration) {
	if c.MaxPerCore == nil {
		c.MaxPerCore = ptrTo[int32](defaultConntrackMaxPerCor)
	}
	if c.Min == nil {
		c.Min = ptrTo[int32](defaultConntrackMin)
	}
	if c.TCPEstablishedTimeout == nil {
		c.TCPEstablishedTimeout = &metav1.Duration{Duration: defaultTCPEstablished}
	}
	if c.TCPCloseWaitTimeout == nil {
		c.TCPCloseWaitTimeout = &metav1.Duration{Duration: defaultTCPCloseWait}
	}
}

// setPlatformDefaults applies the Linux defaults kube-proxy applies once
// the flags and the file have been merged (the proxy mode itself is
// resolved by resolveMode): nodePortAddresses in nftables mode and the
// local traffic detection mode.
func setPlatformDefaults(obj *kubeproxyconfigv1alpha1.KubeProxyConfiguration) {
	if obj.Mode == ModeNFTables && len(obj.NodePortAddresses) == 0 {
		obj.NodePortAddresses = []string{NodePortAddressesPrimary}
	}
	if obj.DetectLocalMode == "" {
		obj.DetectLocalMode = LocalModeClusterCIDR
	}
}

func defaultDuration(d *metav1.Duration, def time.Duration) {
	if d.Duration == 0 {
		d.Duration = def
	}
}

// appendPortIfNeeded adds port to addr when addr is a bare IP; anything
// else (already host:port, or invalid) is returned unchanged for
// validation to judge.
func appendPortIfNeeded(addr string, port int) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	if netutils.ParseIPSloppy(addr) == nil {
		return addr
	}
	return net.JoinHostPort(addr, strconv.Itoa(port))
}

func ptrTo[T any](v T) *T { return &v }

func dur(d time.Duration) metav1.Duration { return metav1.Duration{Duration: d} }
