package config

import (
	"testing"
	"time"
)

// TestSupportedGateValues: the gates portico checks are accepted with the value portico
// behaves as, and KubeProxyNFTablesLocalhostNodePorts outside nftables mode (where
// kube-proxy does not read it either).
func TestSupportedGateValues(t *testing.T) {
	for _, doc := range []string{
		"featureGates: {AllowServiceExternalIPs: true, PreferSameTrafficDistribution: true, MultiCIDRServiceAllocator: true}",
		"mode: nftables\nfeatureGates: {KubeProxyNFTablesLocalhostNodePorts: false, NFTablesNetlink: false}",
		"mode: iptables\nfeatureGates: {KubeProxyNFTablesLocalhostNodePorts: true}",
		"featureGates: {SomeGateOfAnotherComponent: true}",
	} {
		mustLoadDoc(t, header+doc+"\n")
	}
}

func TestLoggingSection(t *testing.T) {
	cfg, _ := mustLoadDoc(t, header+`logging:
  format: text
  verbosity: 4
  flushFrequency: 2s
  vmodule: [{filePattern: proxier, verbosity: 5}, {filePattern: "health*", verbosity: 3}]
`)
	want := LoggingConfig{Verbosity: 4, VModule: "proxier=5,health*=3", FlushFrequency: 2 * time.Second}
	if cfg.Logging != want {
		t.Errorf("Logging = %+v, want %+v", cfg.Logging, want)
	}
}

func TestSetsRouteLocalnet(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want bool
	}{
		{"iptables, every address", []string{"--proxy-mode=iptables"}, true},
		{"iptables, localhost", []string{"--proxy-mode=iptables", "--nodeport-addresses=localhost"}, true},
		{"iptables, all", []string{"--proxy-mode=iptables", "--nodeport-addresses=all"}, true},
		{"iptables, a CIDR with 127.0.0.1", []string{"--proxy-mode=iptables", "--nodeport-addresses=127.0.0.0/16"}, true},
		{"iptables, IPv6 only: IPv4 means every address", []string{"--proxy-mode=iptables", "--nodeport-addresses=fd00::/64"}, true},
		{"iptables, an IPv4 CIDR", []string{"--proxy-mode=iptables", "--nodeport-addresses=10.0.0.0/8,::1/128"}, false},
		{"iptables, primary", []string{"--proxy-mode=iptables", "--nodeport-addresses=primary"}, false},
		{"iptables, localhostNodePorts off", []string{"--proxy-mode=iptables", "--iptables-localhost-nodeports=false"}, false},
		{"nftables", []string{"--proxy-mode=nftables", "--nodeport-addresses=localhost"}, false},
		{"ipvs", []string{"--proxy-mode=ipvs"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _ := mustLoad(t, tc.args...)
			if got := cfg.SetsRouteLocalnet(); got != tc.want {
				t.Errorf("SetsRouteLocalnet() = %v, want %v", got, tc.want)
			}
		})
	}
}
