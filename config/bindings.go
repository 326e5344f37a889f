package config

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeproxyconfigv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
)

// flagBinding ties a flag that maps to a configuration field to the v1alpha1
// JSON path it sets and the function that copies its value.
type flagBinding struct {
	// flag is the flag name without dashes.
	flag string
	// path is the v1alpha1 JSON path of the field set, for messages.
	path string
	// apply copies the flag value into the configuration; nil means the
	// flag does not apply to the selected proxy mode.
	apply func()
}

// flagBindings lists the flags kube-proxy maps into its configuration (and
// therefore ignores when --config is given), bound to obj.
func flagBindings(f *Flags, obj *kubeproxyconfigv1alpha1.KubeProxyConfiguration) []flagBinding {
	var b []flagBinding
	b = append(b, clientBindings(f, obj)...)
	b = append(b, serverBindings(f, obj)...)
	b = append(b, modeBindings(f, obj)...)
	b = append(b, ipvsBindings(f, obj)...)
	b = append(b, localBindings(f, obj)...)
	b = append(b, conntrackBindings(f, obj)...)
	return b
}

func clientBindings(f *Flags, obj *kubeproxyconfigv1alpha1.KubeProxyConfiguration) []flagBinding {
	cc := &obj.ClientConnection
	return []flagBinding{
		{"kubeconfig", "clientConnection.kubeconfig", func() { cc.Kubeconfig = f.Kubeconfig }},
		{"kube-api-content-type", "clientConnection.contentType", func() { cc.ContentType = f.ContentType }},
		{"kube-api-qps", "clientConnection.qps", func() { cc.QPS = f.QPS }},
		{"kube-api-burst", "clientConnection.burst", func() { cc.Burst = f.Burst }},
		{"feature-gates", "featureGates", func() { obj.FeatureGates = copyGates(f.FeatureGates) }},
		{"config-sync-period", "configSyncPeriod", func() { obj.ConfigSyncPeriod = dur(f.ConfigSyncPeriod) }},
		{"oom-score-adj", "oomScoreAdj", func() { obj.OOMScoreAdj = ptrTo(f.OOMScoreAdj) }},
	}
}

func serverBindings(f *Flags, obj *kubeproxyconfigv1alpha1.KubeProxyConfiguration) []flagBinding {
	return []flagBinding{
		{"bind-address", "bindAddress", func() { setIfNotEmpty(&obj.BindAddress, f.BindAddress) }},
		{"healthz-bind-address", "healthzBindAddress", func() { setIfNotEmpty(&obj.HealthzBindAddress, f.HealthzBindAddress) }},
		{"metrics-bind-address", "metricsBindAddress", func() { setIfNotEmpty(&obj.MetricsBindAddress, f.MetricsBindAddress) }},
		// The deprecated port flags are applied by applyDeprecatedPorts.
		{"healthz-port", "", func() {}},
		{"metrics-port", "", func() {}},
		{"bind-address-hard-fail", "bindAddressHardFail", func() { obj.BindAddressHardFail = f.BindAddressHardFail }},
		{"profiling", "enableProfiling", func() { obj.EnableProfiling = f.Profiling }},
		{"show-hidden-metrics-for-version", "showHiddenMetricsForVersion", func() { obj.ShowHiddenMetricsForVersion = f.ShowHiddenMetricsForVersion }},
	}
}

// modeBindings binds the flags whose target depends on the proxy mode, as
// kube-proxy's internal configuration maps them back to v1alpha1: the
// iptables-*sync-period flags set the sync periods of the iptables and
// nftables modes, the ipvs-*sync-period flags those of ipvs mode, and
// --masquerade-all sets nftables.masqueradeAll in nftables mode.
func modeBindings(f *Flags, obj *kubeproxyconfigv1alpha1.KubeProxyConfiguration) []flagBinding {
	prefix := modeStruct(string(obj.Mode))
	sync, minSync := modeSyncPeriods(obj)
	ipt := []flagBinding{
		{"iptables-sync-period", prefix + ".syncPeriod", func() { *sync = dur(f.IPTablesSyncPeriod) }},
		{"iptables-min-sync-period", prefix + ".minSyncPeriod", func() { *minSync = dur(f.IPTablesMinSyncPeriod) }},
		{"ipvs-sync-period", "ipvs.syncPeriod", nil},
		{"ipvs-min-sync-period", "ipvs.minSyncPeriod", nil},
	}
	if obj.Mode == ModeIPVS {
		ipt = []flagBinding{
			{"iptables-sync-period", "iptables.syncPeriod", nil},
			{"iptables-min-sync-period", "iptables.minSyncPeriod", nil},
			{"ipvs-sync-period", "ipvs.syncPeriod", func() { *sync = dur(f.IPVSSyncPeriod) }},
			{"ipvs-min-sync-period", "ipvs.minSyncPeriod", func() { *minSync = dur(f.IPVSMinSyncPeriod) }},
		}
	}
	masq := &obj.IPTables.MasqueradeAll
	if obj.Mode == ModeNFTables {
		masq = &obj.NFTables.MasqueradeAll
	}
	return append(ipt,
		flagBinding{"masquerade-all", prefix + ".masqueradeAll", func() { *masq = f.MasqueradeAll }},
		flagBinding{"iptables-masquerade-bit", "iptables.masqueradeBit", func() { obj.IPTables.MasqueradeBit = ptrTo(f.MasqueradeBit) }},
		flagBinding{"iptables-localhost-nodeports", "iptables.localhostNodePorts", func() { obj.IPTables.LocalhostNodePorts = ptrTo(f.LocalhostNodePorts) }},
	)
}

func ipvsBindings(f *Flags, obj *kubeproxyconfigv1alpha1.KubeProxyConfiguration) []flagBinding {
	ipvs := &obj.IPVS
	return []flagBinding{
		{"ipvs-scheduler", "ipvs.scheduler", func() { ipvs.Scheduler = f.IPVSScheduler }},
		{"ipvs-exclude-cidrs", "ipvs.excludeCIDRs", func() { ipvs.ExcludeCIDRs = append([]string(nil), f.IPVSExcludeCIDRs...) }},
		{"ipvs-strict-arp", "ipvs.strictARP", func() { ipvs.StrictARP = f.IPVSStrictARP }},
		{"ipvs-tcp-timeout", "ipvs.tcpTimeout", func() { ipvs.TCPTimeout = dur(f.IPVSTCPTimeout) }},
		{"ipvs-tcpfin-timeout", "ipvs.tcpFinTimeout", func() { ipvs.TCPFinTimeout = dur(f.IPVSTCPFinTimeout) }},
		{"ipvs-udp-timeout", "ipvs.udpTimeout", func() { ipvs.UDPTimeout = dur(f.IPVSUDPTimeout) }},
	}
}

func localBindings(f *Flags, obj *kubeproxyconfigv1alpha1.KubeProxyConfiguration) []flagBinding {
	dl := &obj.DetectLocal
	return []flagBinding{
		{"detect-local-mode", "detectLocalMode", func() {
			if f.DetectLocalMode != "" {
				obj.DetectLocalMode = kubeproxyconfigv1alpha1.LocalMode(f.DetectLocalMode)
			}
		}},
		{"pod-bridge-interface", "detectLocal.bridgeInterface", func() { dl.BridgeInterface = f.BridgeInterface }},
		{"pod-interface-name-prefix", "detectLocal.interfaceNamePrefix", func() { dl.InterfaceNamePrefix = f.InterfaceNamePrefix }},
		{"cluster-cidr", "clusterCIDR", func() { obj.ClusterCIDR = f.ClusterCIDR }},
		{"nodeport-addresses", "nodePortAddresses", func() { obj.NodePortAddresses = append([]string(nil), f.NodePortAddresses...) }},
	}
}

func conntrackBindings(f *Flags, obj *kubeproxyconfigv1alpha1.KubeProxyConfiguration) []flagBinding {
	ct := &obj.Conntrack
	return []flagBinding{
		{"conntrack-max-per-core", "conntrack.maxPerCore", func() { ct.MaxPerCore = ptrTo(f.ConntrackMaxPerCore) }},
		{"conntrack-min", "conntrack.min", func() { ct.Min = ptrTo(f.ConntrackMin) }},
		{"conntrack-tcp-timeout-established", "conntrack.tcpEstablishedTimeout", func() { ct.TCPEstablishedTimeout = ptrTo(dur(f.ConntrackTCPEstablishedTimeout)) }},
		{"conntrack-tcp-timeout-close-wait", "conntrack.tcpCloseWaitTimeout", func() { ct.TCPCloseWaitTimeout = ptrTo(dur(f.ConntrackTCPCloseWaitTimeout)) }},
		{"conntrack-tcp-be-liberal", "conntrack.tcpBeLiberal", func() { ct.TCPBeLiberal = f.ConntrackTCPBeLiberal }},
		{"conntrack-udp-timeout", "conntrack.udpTimeout", func() { ct.UDPTimeout = dur(f.ConntrackUDPTimeout) }},
		{"conntrack-udp-timeout-stream", "conntrack.udpStreamTimeout", func() { ct.UDPStreamTimeout = dur(f.ConntrackUDPStreamTimeout) }},
	}
}

// modeStruct returns the v1alpha1 sub-structure holding the mode-dependent
// fields of mode; unknown modes map to iptables, as in kube-proxy's
// conversion.
func modeStruct(mode string) string {
	switch mode {
	case ModeIPVS, ModeNFTables:
		return mode
	default:
		return ModeIPTables
	}
}

// modeSyncPeriods returns the sync periods of the selected mode.
func modeSyncPeriods(obj *kubeproxyconfigv1alpha1.KubeProxyConfiguration) (sync, minSync *metav1.Duration) {
	switch modeStruct(string(obj.Mode)) {
	case ModeIPVS:
		return &obj.IPVS.SyncPeriod, &obj.IPVS.MinSyncPeriod
	case ModeNFTables:
		return &obj.NFTables.SyncPeriod, &obj.NFTables.MinSyncPeriod
	default:
		return &obj.IPTables.SyncPeriod, &obj.IPTables.MinSyncPeriod
	}
}

func setIfNotEmpty(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}

func copyGates(in map[string]bool) map[string]bool {
	out := make(map[string]bool, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}
