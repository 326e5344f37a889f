package config

import (
	"slices"

	kubeproxyconfigv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
)

// gateSupport is what portico does with a feature gate that changes what kube-proxy does.
type gateSupport struct {
	// gate is the feature gate's name.
	gate string
	// supported is the value portico behaves as (any other value is rejected).
	supported bool
	// modes limits the check to these proxy modes (nil: every mode).
	modes []string
	// why explains the rejection.
	why string
}

// gateSupports lists the feature gates kube-proxy 1.37 reads to change what it does and
// that portico does not read: portico behaves as with the value listed, so another value
// is rejected instead of being ignored. The gates kube-proxy locks to their default are
// rejected by kube-proxy itself too.
var gateSupports = []gateSupport{
	{gate: "AllowServiceExternalIPs", supported: true,
		why: "portico always serves the spec.externalIPs of Services"},
	{gate: "KubeProxyNFTablesLocalhostNodePorts", supported: false, modes: []string{ModeNFTables},
		why: "portico's nftables mode does not serve NodePorts on loopback addresses"},
	{gate: "PreferSameTrafficDistribution", supported: true,
		why: "the feature is GA and locked on (kube-proxy rejects it too)"},
	{gate: "MultiCIDRServiceAllocator", supported: true,
		why: "the feature is GA and locked on (kube-proxy rejects it too)"},
}

// checkFeatureGates rejects the gates set to a value portico cannot honour, naming the
// gate and the value.
func (c *checker) checkFeatureGates(obj *kubeproxyconfigv1alpha1.KubeProxyConfiguration) {
	for _, g := range gateSupports {
		v, set := obj.FeatureGates[g.gate]
		if !set || v == g.supported || (g.modes != nil && !slices.Contains(g.modes, string(obj.Mode))) {
			continue
		}
		c.add("featureGates", "", "%s=%v is not supported by portico: %s", g.gate, v, g.why)
	}
}
