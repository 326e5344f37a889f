package config

import (
	"fmt"
	"math"
	"slices"
	"strings"

	kubeproxyconfigv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	netutils "k8s.io/utils/net"
)

// localModes lists the valid detectLocalMode values, sorted.
var localModes = []string{LocalModeBridgeInterface, LocalModeClusterCIDR, LocalModeInterfaceNamePrefix, LocalModeNodeCIDR}

// nodePortKeywords lists the keywords allowed in nodePortAddresses.
var nodePortKeywords = []string{NodePortAddressesPrimary, NodePortAddressesLocalhost, NodePortAddressesAll}

func (c *checker) checkDetectLocal(obj *kubeproxyconfigv1alpha1.KubeProxyConfiguration) {
	mode := string(obj.DetectLocalMode)
	switch mode {
	case LocalModeBridgeInterface:
		if obj.DetectLocal.BridgeInterface == "" {
			c.add("detectLocal.bridgeInterface", "", "must not be empty when %s is %s", c.name("detectLocalMode"), mode)
		}
	case LocalModeInterfaceNamePrefix:
		if obj.DetectLocal.InterfaceNamePrefix == "" {
			c.add("detectLocal.interfaceNamePrefix", "", "must not be empty when %s is %s", c.name("detectLocalMode"), mode)
		}
	case LocalModeClusterCIDR:
		c.checkClusterCIDR(obj.ClusterCIDR)
	case LocalModeNodeCIDR:
	default:
		c.add("detectLocalMode", "", "%q is not a valid local traffic detection mode (valid: %s)", mode, strings.Join(localModes, ", "))
	}
}

// checkClusterCIDR checks clusterCIDR: empty, one CIDR, or an IPv4/IPv6
// pair, comma-separated.
func (c *checker) checkClusterCIDR(value string) {
	if value == "" {
		return
	}
	cidrs := strings.Split(value, ",")
	if len(cidrs) > 2 {
		c.add("clusterCIDR", "", "%q must be a single CIDR or an IPv4/IPv6 pair", value)
		return
	}
	valid := true
	for i, cidr := range cidrs {
		if _, _, err := netutils.ParseCIDRSloppy(cidr); err != nil {
			c.add("clusterCIDR", fmt.Sprintf("[%d]", i), "%q is not a valid CIDR", cidr)
			valid = false
		}
	}
	if valid && len(cidrs) == 2 {
		if dual, err := netutils.IsDualStackCIDRStrings(cidrs); err == nil && !dual {
			c.add("clusterCIDR", "", "%q must be a single CIDR or an IPv4/IPv6 pair", value)
		}
	}
}

func (c *checker) checkNodePortAddresses(addrs []string) {
	seen := map[string]bool{}
	for i, addr := range addrs {
		index := fmt.Sprintf("[%d]", i)
		if slices.Contains(nodePortKeywords, addr) {
			if seen[addr] {
				c.add("nodePortAddresses", index, "duplicate keyword %q", addr)
			}
			seen[addr] = true
			continue
		}
		if _, _, err := netutils.ParseCIDRSloppy(addr); err != nil {
			c.add("nodePortAddresses", index, "%q is not a CIDR or one of %s", addr, strings.Join(nodePortKeywords, ", "))
		}
	}
}

// checkLogging checks the logging section like component-base does for
// the formats kube-proxy supports (text and json).
func (c *checker) checkLogging(obj *kubeproxyconfigv1alpha1.KubeProxyConfiguration) {
	l := &obj.Logging
	switch l.Format {
	case "text":
	case "json":
		c.add("logging.format", "", "%q is not supported by portico, which writes klog's text format only (use text)", l.Format)
	default:
		c.add("logging.format", "", "%q is not a supported log format (valid: json, text)", l.Format)
	}
	if d := l.FlushFrequency.Duration.Duration; d <= 0 {
		c.add("logging.flushFrequency", "", "%q must be greater than 0", d.String())
	}
	if l.Verbosity > math.MaxInt32 {
		c.add("logging.verbosity", "", "%d must be at most %d", l.Verbosity, math.MaxInt32)
	}
	if len(l.VModule) > 0 && l.Format != "text" {
		c.add("logging.vmodule", "", "is only supported with the text log format")
	}
	for i, item := range l.VModule {
		index := fmt.Sprintf("[%d].filePattern", i)
		if item.FilePattern == "" {
			c.add("logging.vmodule", index, "must not be empty")
		} else if strings.ContainsAny(item.FilePattern, "=,") {
			c.add("logging.vmodule", index, "%q must not contain '=' or ','", item.FilePattern)
		}
		if item.Verbosity > math.MaxInt32 {
			c.add("logging.vmodule", fmt.Sprintf("[%d].verbosity", i), "%d must be at most %d", item.Verbosity, math.MaxInt32)
		}
	}
	c.checkLoggingOptions(obj)
}

// checkLoggingOptions rejects the alpha output options unless the
// LoggingAlphaOptions feature gate is enabled, as kube-proxy does, and the text format's
// even then: portico cannot honour them (the json format's are rejected with it).
func (c *checker) checkLoggingOptions(obj *kubeproxyconfigv1alpha1.KubeProxyConfiguration) {
	if gateEnabled(obj.FeatureGates, gateLoggingAlphaOptions, false) {
		text := obj.Logging.Options.Text
		if text.SplitStream {
			c.add("logging.options.text.splitStream", "", "is not supported by portico, which writes every log line to stderr")
		}
		if text.InfoBufferSize.Value() != 0 {
			c.add("logging.options.text.infoBufferSize", "", "is not supported by portico, which does not buffer info messages")
		}
		return
	}
	opts := map[string]struct {
		split  bool
		buffer int64
	}{
		"logging.options.text": {obj.Logging.Options.Text.SplitStream, obj.Logging.Options.Text.InfoBufferSize.Value()},
		"logging.options.json": {obj.Logging.Options.JSON.SplitStream, obj.Logging.Options.JSON.InfoBufferSize.Value()},
	}
	for _, path := range []string{"logging.options.text", "logging.options.json"} {
		o := opts[path]
		if o.split {
			c.add(path+".splitStream", "", "requires the %s feature gate", gateLoggingAlphaOptions)
		}
		if o.buffer != 0 {
			c.add(path+".infoBufferSize", "", "requires the %s feature gate", gateLoggingAlphaOptions)
		}
	}
}
