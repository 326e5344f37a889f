package config

import (
	"net"
	"net/netip"
	"strings"

	logsapi "k8s.io/component-base/logs/api/v1"
	kubeproxyconfigv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	netutils "k8s.io/utils/net"
)

// buildConfig derives the effective Config from a validated, defaulted
// v1alpha1 configuration, resolving the mode-dependent fields as
// kube-proxy's v1alpha1 conversion does.
func buildConfig(obj *kubeproxyconfigv1alpha1.KubeProxyConfiguration) *Config {
	cc := obj.ClientConnection
	cfg := &Config{
		Effective:           *obj.DeepCopy(),
		Kubeconfig:          cc.Kubeconfig,
		HostnameOverride:    strings.ToLower(strings.TrimSpace(obj.HostnameOverride)),
		QPS:                 cc.QPS,
		Burst:               cc.Burst,
		ContentType:         cc.ContentType,
		AcceptContentTypes:  cc.AcceptContentTypes,
		BindAddress:         parseAddr(obj.BindAddress),
		HealthzBindAddress:  obj.HealthzBindAddress,
		MetricsBindAddress:  obj.MetricsBindAddress,
		BindAddressHardFail: obj.BindAddressHardFail,
		EnableProfiling:     obj.EnableProfiling,
		ConfigSyncPeriod:    obj.ConfigSyncPeriod.Duration,
		DetectLocalMode:     string(obj.DetectLocalMode),
		BridgeInterface:     obj.DetectLocal.BridgeInterface,
		InterfacePrefix:     obj.DetectLocal.InterfaceNamePrefix,
		NodePortAddresses:   parseNodePortAddresses(obj.NodePortAddresses),
		LocalhostNodePorts:  derefOr(obj.IPTables.LocalhostNodePorts, true),
		OOMScoreAdj:         derefOr(obj.OOMScoreAdj, defaultOOMScoreAdj),
		Conntrack:           conntrackConfig(&obj.Conntrack),
		IPVS:                ipvsConfig(&obj.IPVS),
		FeatureGates:        copyGates(obj.FeatureGates),
		Logging:             loggingConfig(&obj.Logging),
	}
	if obj.ClusterCIDR != "" {
		cfg.ClusterCIDRs = parsePrefixes(strings.Split(obj.ClusterCIDR, ","))
	}
	sync, minSync := modeSyncPeriods(obj)
	cfg.SyncPeriod, cfg.MinSyncPeriod = sync.Duration, minSync.Duration
	if obj.Mode == ModeNFTables {
		cfg.MasqueradeAll = obj.NFTables.MasqueradeAll
		cfg.MasqueradeBit = int(derefOr(obj.NFTables.MasqueradeBit, defaultMasqueradeBit))
	} else {
		cfg.MasqueradeAll = obj.IPTables.MasqueradeAll
		cfg.MasqueradeBit = int(derefOr(obj.IPTables.MasqueradeBit, defaultMasqueradeBit))
	}
	return cfg
}

func conntrackConfig(ct *kubeproxyconfigv1alpha1.KubeProxyConntrackConfiguration) ConntrackConfig {
	out := ConntrackConfig{
		MaxPerCore:       derefOr(ct.MaxPerCore, defaultConntrackMaxPerCor),
		Min:              derefOr(ct.Min, defaultConntrackMin),
		UDPTimeout:       ct.UDPTimeout.Duration,
		UDPStreamTimeout: ct.UDPStreamTimeout.Duration,
		TCPBeLiberal:     ct.TCPBeLiberal,
	}
	if ct.TCPEstablishedTimeout != nil {
		out.TCPEstablishedTimeout = ct.TCPEstablishedTimeout.Duration
	}
	if ct.TCPCloseWaitTimeout != nil {
		out.TCPCloseWaitTimeout = ct.TCPCloseWaitTimeout.Duration
	}
	return out
}

// loggingConfig takes the settings of the logging section that portico applies.
func loggingConfig(l *logsapi.LoggingConfiguration) LoggingConfig {
	return LoggingConfig{
		Verbosity:      int(l.Verbosity),
		VModule:        logsapi.VModuleConfigurationPflag(&l.VModule).String(),
		FlushFrequency: l.FlushFrequency.Duration.Duration,
	}
}

func ipvsConfig(ipvs *kubeproxyconfigv1alpha1.KubeProxyIPVSConfiguration) IPVSConfig {
	return IPVSConfig{
		Scheduler:     ipvs.Scheduler,
		ExcludeCIDRs:  parsePrefixes(ipvs.ExcludeCIDRs),
		StrictARP:     ipvs.StrictARP,
		TCPTimeout:    ipvs.TCPTimeout.Duration,
		TCPFinTimeout: ipvs.TCPFinTimeout.Duration,
		UDPTimeout:    ipvs.UDPTimeout.Duration,
	}
}

// parseNodePortAddresses splits nodePortAddresses into keywords and CIDRs.
func parseNodePortAddresses(addrs []string) NodePortAddresses {
	var out NodePortAddresses
	var cidrs []string
	for _, a := range addrs {
		switch a {
		case NodePortAddressesPrimary:
			out.Primary = true
		case NodePortAddressesLocalhost:
			out.Localhost = true
		case NodePortAddressesAll:
			out.All = true
		default:
			cidrs = append(cidrs, a)
		}
	}
	out.CIDRs = parsePrefixes(cidrs)
	return out
}

// parsePrefixes parses CIDRs the way kube-proxy does (accepting IPv4
// octets with leading zeros) and returns them masked. Invalid entries,
// which validation reports when the field is used, are skipped.
func parsePrefixes(cidrs []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range cidrs {
		_, ipnet, err := netutils.ParseCIDRSloppy(s)
		if err != nil {
			continue
		}
		addr, ok := ipToAddr(ipnet.IP)
		if !ok {
			continue
		}
		ones, _ := ipnet.Mask.Size()
		out = append(out, netip.PrefixFrom(addr, ones).Masked())
	}
	return out
}

// parseAddr parses an IP the way kube-proxy does; invalid input (rejected
// by validation) yields the zero Addr.
func parseAddr(s string) netip.Addr {
	addr, _ := ipToAddr(netutils.ParseIPSloppy(s))
	return addr
}

func ipToAddr(ip net.IP) (netip.Addr, bool) {
	if v4 := ip.To4(); v4 != nil {
		return netip.AddrFromSlice(v4)
	}
	return netip.AddrFromSlice(ip)
}

func derefOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}
