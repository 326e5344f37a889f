package config

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeproxyconfigv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	netutils "k8s.io/utils/net"
)

// Feature gates consulted during validation.
const (
	gateKubeProxyIPVS       = "KubeProxyIPVS"
	gateLoggingAlphaOptions = "LoggingAlphaOptions"
)

// checker collects validation problems, naming each field after the flag
// that set it, or else its v1alpha1 JSON path.
type checker struct {
	origin   origins
	problems []string
}

// name returns how to refer to the field at path in messages.
func (c *checker) name(path string) string {
	if flag, ok := c.origin[path]; ok {
		return flag
	}
	return path
}

// add records a problem with the field at path; suffix (e.g. "[1]") is
// appended to the field name.
func (c *checker) add(path, suffix, format string, args ...any) {
	c.problems = append(c.problems, c.name(path)+suffix+": "+fmt.Sprintf(format, args...))
}

// validate checks the defaulted configuration the way kube-proxy's
// validation does and returns every problem found.
func validate(obj *kubeproxyconfigv1alpha1.KubeProxyConfiguration, origin origins) []string {
	c := &checker{origin: origin}
	c.checkGeneral(obj)
	c.checkMode(obj)
	c.checkSyncPeriods(obj)
	if obj.Mode == ModeIPVS {
		c.checkIPVS(&obj.IPVS)
	}
	c.checkDetectLocal(obj)
	c.checkNodePortAddresses(obj.NodePortAddresses)
	c.checkConntrack(&obj.Conntrack)
	c.checkLogging(obj)
	c.checkFeatureGates(obj)
	return c.problems
}

// showHiddenMetricsRE matches the <major>.<minor> format.
var showHiddenMetricsRE = regexp.MustCompile(`^[0-9]+\.[0-9]+$`)

func (c *checker) checkGeneral(obj *kubeproxyconfigv1alpha1.KubeProxyConfiguration) {
	if obj.ClientConnection.Burst < 0 {
		c.add("clientConnection.burst", "", "%d must not be negative", obj.ClientConnection.Burst)
	}
	if obj.HostnameOverride != "" && strings.TrimSpace(obj.HostnameOverride) == "" {
		c.add("hostnameOverride", "", "%q must not be blank", obj.HostnameOverride)
	}
	if netutils.ParseIPSloppy(obj.BindAddress) == nil {
		c.add("bindAddress", "", "%q is not a valid IP address", obj.BindAddress)
	}
	if obj.HealthzBindAddress != "" {
		c.checkHostPort("healthzBindAddress", obj.HealthzBindAddress)
	}
	c.checkHostPort("metricsBindAddress", obj.MetricsBindAddress)
	if v := obj.ShowHiddenMetricsForVersion; v != "" && !showHiddenMetricsRE.MatchString(v) {
		c.add("showHiddenMetricsForVersion", "", "%q is not of the form <major>.<minor>", v)
	}
	if obj.OOMScoreAdj != nil && (*obj.OOMScoreAdj < -1000 || *obj.OOMScoreAdj > 1000) {
		c.add("oomScoreAdj", "", "%d is out of range -1000 to 1000", *obj.OOMScoreAdj)
	}
	if obj.ConfigSyncPeriod.Duration <= 0 {
		c.add("configSyncPeriod", "", "%q must be greater than 0", obj.ConfigSyncPeriod.Duration.String())
	}
}

// checkHostPort checks an IP:port server address.
func (c *checker) checkHostPort(path, value string) {
	host, port, err := net.SplitHostPort(value)
	if err != nil {
		c.add(path, "", "%q is not of the form IP:port", value)
		return
	}
	if netutils.ParseIPSloppy(host) == nil {
		c.add(path, "", "%q has an invalid IP address %q", value, host)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		c.add(path, "", "%q has an invalid port %q (must be 1-65535)", value, port)
	}
}

func (c *checker) checkMode(obj *kubeproxyconfigv1alpha1.KubeProxyConfiguration) {
	mode := string(obj.Mode)
	switch {
	case !slices.Contains(Modes, mode):
		valid := slices.Sorted(slices.Values(Modes))
		c.add("mode", "", "%q is not a valid proxy mode (valid: %s)", mode, strings.Join(valid, ", "))
	case mode == ModeIPVS && !gateEnabled(obj.FeatureGates, gateKubeProxyIPVS, true):
		c.add("mode", "", "%q is not allowed: the %s feature gate is disabled", mode, gateKubeProxyIPVS)
	}
	c.checkMasqueradeBit("iptables.masqueradeBit", obj.IPTables.MasqueradeBit)
	if mode == ModeNFTables {
		c.checkMasqueradeBit("nftables.masqueradeBit", obj.NFTables.MasqueradeBit)
	}
}

func (c *checker) checkMasqueradeBit(path string, bit *int32) {
	if bit != nil && (*bit < 0 || *bit > 31) {
		c.add(path, "", "%d is out of range 0-31", *bit)
	}
}

// checkSyncPeriods checks the sync periods of the selected mode.
func (c *checker) checkSyncPeriods(obj *kubeproxyconfigv1alpha1.KubeProxyConfiguration) {
	prefix := modeStruct(string(obj.Mode))
	syncPath, minPath := prefix+".syncPeriod", prefix+".minSyncPeriod"
	sync, minSync := modeSyncPeriods(obj)
	if sync.Duration <= 0 {
		c.add(syncPath, "", "%q must be greater than 0", sync.Duration.String())
	}
	if minSync.Duration < 0 {
		c.add(minPath, "", "%q must not be negative", minSync.Duration.String())
	}
	if minSync.Duration > sync.Duration {
		c.add(minPath, "", "%q must not be greater than %s (%q)",
			minSync.Duration.String(), c.name(syncPath), sync.Duration.String())
	}
}

func (c *checker) checkIPVS(ipvs *kubeproxyconfigv1alpha1.KubeProxyIPVSConfiguration) {
	c.checkNonNegative("ipvs.tcpTimeout", ipvs.TCPTimeout)
	c.checkNonNegative("ipvs.tcpFinTimeout", ipvs.TCPFinTimeout)
	c.checkNonNegative("ipvs.udpTimeout", ipvs.UDPTimeout)
	for i, cidr := range ipvs.ExcludeCIDRs {
		if _, _, err := netutils.ParseCIDRSloppy(cidr); err != nil {
			c.add("ipvs.excludeCIDRs", fmt.Sprintf("[%d]", i), "%q is not a valid CIDR", cidr)
		}
	}
}

func (c *checker) checkNonNegative(path string, d metav1.Duration) {
	if d.Duration < 0 {
		c.add(path, "", "%q must not be negative", d.Duration.String())
	}
}

func (c *checker) checkConntrack(ct *kubeproxyconfigv1alpha1.KubeProxyConntrackConfiguration) {
	if ct.MaxPerCore != nil && *ct.MaxPerCore < 0 {
		c.add("conntrack.maxPerCore", "", "%d must not be negative", *ct.MaxPerCore)
	}
	if ct.Min != nil && *ct.Min < 0 {
		c.add("conntrack.min", "", "%d must not be negative", *ct.Min)
	}
	if ct.TCPEstablishedTimeout != nil {
		c.checkNonNegative("conntrack.tcpEstablishedTimeout", *ct.TCPEstablishedTimeout)
	}
	if ct.TCPCloseWaitTimeout != nil {
		c.checkNonNegative("conntrack.tcpCloseWaitTimeout", *ct.TCPCloseWaitTimeout)
	}
	c.checkNonNegative("conntrack.udpTimeout", ct.UDPTimeout)
	c.checkNonNegative("conntrack.udpStreamTimeout", ct.UDPStreamTimeout)
}

// gateEnabled returns the configured state of a feature gate, or def.
func gateEnabled(gates map[string]bool, name string, def bool) bool {
	if v, ok := gates[name]; ok {
		return v
	}
	return def
}
