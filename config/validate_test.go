package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// invalidDocuments pairs a document body (after the header) with the
// exact problems it must produce.
var invalidDocuments = []struct {
	name string
	doc  string
	want []string
}{
	{"userspace mode", "mode: userspace",
		[]string{`mode: "userspace" is not a valid proxy mode (valid: iptables, ipvs, nftables)`}},
	{"kernelspace mode", "mode: kernelspace",
		[]string{`mode: "kernelspace" is not a valid proxy mode (valid: iptables, ipvs, nftables)`}},
	{"mode typo", "mode: nftable",
		[]string{`mode: "nftable" is not a valid proxy mode (valid: iptables, ipvs, nftables)`}},
	{"mode wrong case", "mode: IPTables",
		[]string{`mode: "IPTables" is not a valid proxy mode (valid: iptables, ipvs, nftables)`}},
	{"ipvs gated off", "mode: ipvs\nfeatureGates: {KubeProxyIPVS: false}",
		[]string{`mode: "ipvs" is not allowed: the KubeProxyIPVS feature gate is disabled`}},
	{"bad nodePortAddresses CIDR", "nodePortAddresses: [10.0.0.0/8, 10.0.0.0/33]",
		[]string{`nodePortAddresses[1]: "10.0.0.0/33" is not a CIDR or one of primary, localhost, all`}},
	{"bad nodePortAddresses keyword", "nodePortAddresses: [Primary]",
		[]string{`nodePortAddresses[0]: "Primary" is not a CIDR or one of primary, localhost, all`}},
	{"duplicate nodePortAddresses keyword", "nodePortAddresses: [primary, all, primary]",
		[]string{`nodePortAddresses[2]: duplicate keyword "primary"`}},
	{"nftables masqueradeBit", "mode: nftables\nnftables: {masqueradeBit: 32}",
		[]string{`nftables.masqueradeBit: 32 is out of range 0-31`}},
	{"iptables masqueradeBit", "iptables: {masqueradeBit: -1}",
		[]string{`iptables.masqueradeBit: -1 is out of range 0-31`}},
	{"minSyncPeriod above syncPeriod", "iptables: {minSyncPeriod: 45s}",
		[]string{`iptables.minSyncPeriod: "45s" must not be greater than iptables.syncPeriod ("30s")`}},
	{"negative syncPeriod", "iptables: {syncPeriod: -5s, minSyncPeriod: -1s}",
		[]string{
			`iptables.syncPeriod: "-5s" must be greater than 0`,
			`iptables.minSyncPeriod: "-1s" must not be negative`,
			`iptables.minSyncPeriod: "-1s" must not be greater than iptables.syncPeriod ("-5s")`,
		}},
	{"negative nftables minSyncPeriod", "mode: nftables\nnftables: {minSyncPeriod: -1s}",
		[]string{`nftables.minSyncPeriod: "-1s" must not be negative`}},
	{"ipvs minSyncPeriod above syncPeriod", "mode: ipvs\nipvs: {minSyncPeriod: 1m}",
		[]string{`ipvs.minSyncPeriod: "1m0s" must not be greater than ipvs.syncPeriod ("30s")`}},
	{"healthz port", `healthzBindAddress: "0.0.0.0:99999"`,
		[]string{`healthzBindAddress: "0.0.0.0:99999" has an invalid port "99999" (must be 1-65535)`}},
	{"healthz not IP:port", "healthzBindAddress: localhost",
		[]string{`healthzBindAddress: "localhost" is not of the form IP:port`}},
	{"metrics IP", `metricsBindAddress: "foo:10249"`,
		[]string{`metricsBindAddress: "foo:10249" has an invalid IP address "foo"`}},
	{"bindAddress", "bindAddress: not-an-ip",
		[]string{`bindAddress: "not-an-ip" is not a valid IP address`}},
	{"clusterCIDR entry", `clusterCIDR: "10.0.0.0/8,fd00::/129"`,
		[]string{`clusterCIDR[1]: "fd00::/129" is not a valid CIDR`}},
	{"clusterCIDR same family", `clusterCIDR: "10.0.0.0/8,192.168.0.0/16"`,
		[]string{`clusterCIDR: "10.0.0.0/8,192.168.0.0/16" must be a single CIDR or an IPv4/IPv6 pair`}},
	{"clusterCIDR three", `clusterCIDR: "10.0.0.0/8,fd00::/64,192.168.0.0/16"`,
		[]string{`clusterCIDR: "10.0.0.0/8,fd00::/64,192.168.0.0/16" must be a single CIDR or an IPv4/IPv6 pair`}},
	{"detectLocalMode", "detectLocalMode: foo",
		[]string{`detectLocalMode: "foo" is not a valid local traffic detection mode (valid: BridgeInterface, ClusterCIDR, InterfaceNamePrefix, NodeCIDR)`}},
	{"bridge interface", "detectLocalMode: BridgeInterface",
		[]string{`detectLocal.bridgeInterface: must not be empty when detectLocalMode is BridgeInterface`}},
	{"interface prefix", "detectLocalMode: InterfaceNamePrefix",
		[]string{`detectLocal.interfaceNamePrefix: must not be empty when detectLocalMode is InterfaceNamePrefix`}},
	{"conntrack maxPerCore", "conntrack: {maxPerCore: -1}",
		[]string{`conntrack.maxPerCore: -1 must not be negative`}},
	{"conntrack min", "conntrack: {min: -2}",
		[]string{`conntrack.min: -2 must not be negative`}},
	{"conntrack tcpEstablishedTimeout", "conntrack: {tcpEstablishedTimeout: -1s}",
		[]string{`conntrack.tcpEstablishedTimeout: "-1s" must not be negative`}},
	{"conntrack tcpCloseWaitTimeout", "conntrack: {tcpCloseWaitTimeout: -1s}",
		[]string{`conntrack.tcpCloseWaitTimeout: "-1s" must not be negative`}},
	{"conntrack udpTimeout", "conntrack: {udpTimeout: -2s}",
		[]string{`conntrack.udpTimeout: "-2s" must not be negative`}},
	{"conntrack udpStreamTimeout", "conntrack: {udpStreamTimeout: -3s}",
		[]string{`conntrack.udpStreamTimeout: "-3s" must not be negative`}},
	{"ipvs tcpTimeout", "mode: ipvs\nipvs: {tcpTimeout: -1s}",
		[]string{`ipvs.tcpTimeout: "-1s" must not be negative`}},
	{"ipvs tcpFinTimeout", "mode: ipvs\nipvs: {tcpFinTimeout: -1s}",
		[]string{`ipvs.tcpFinTimeout: "-1s" must not be negative`}},
	{"ipvs udpTimeout", "mode: ipvs\nipvs: {udpTimeout: -1s}",
		[]string{`ipvs.udpTimeout: "-1s" must not be negative`}},
	{"ipvs excludeCIDRs", "mode: ipvs\nipvs: {excludeCIDRs: [10.0.0.0/8, bad]}",
		[]string{`ipvs.excludeCIDRs[1]: "bad" is not a valid CIDR`}},
	{"oomScoreAdj", "oomScoreAdj: 1001",
		[]string{`oomScoreAdj: 1001 is out of range -1000 to 1000`}},
	{"burst", "clientConnection: {burst: -1}",
		[]string{`clientConnection.burst: -1 must not be negative`}},
	{"configSyncPeriod", "configSyncPeriod: -1m",
		[]string{`configSyncPeriod: "-1m0s" must be greater than 0`}},
	{"hostnameOverride", `hostnameOverride: "  "`,
		[]string{`hostnameOverride: "  " must not be blank`}},
	{"showHiddenMetricsForVersion", `showHiddenMetricsForVersion: "1.x"`,
		[]string{`showHiddenMetricsForVersion: "1.x" is not of the form <major>.<minor>`}},
	{"logging format", "logging: {format: xml}",
		[]string{`logging.format: "xml" is not a supported log format (valid: json, text)`}},
	{"logging json", "logging: {format: json}",
		[]string{`logging.format: "json" is not supported by portico, which writes klog's text format only (use text)`}},
	{"logging flushFrequency", "logging: {flushFrequency: -1s}",
		[]string{`logging.flushFrequency: "-1s" must be greater than 0`}},
	{"logging vmodule with json", "logging: {format: json, vmodule: [{filePattern: proxier, verbosity: 4}]}",
		[]string{
			`logging.format: "json" is not supported by portico, which writes klog's text format only (use text)`,
			`logging.vmodule: is only supported with the text log format`,
		}},
	{"logging vmodule pattern", "logging: {vmodule: [{filePattern: 'a=b', verbosity: 4}]}",
		[]string{`logging.vmodule[0].filePattern: "a=b" must not contain '=' or ','`}},
	{"logging splitStream", "logging: {options: {text: {splitStream: true}}}",
		[]string{`logging.options.text.splitStream: requires the LoggingAlphaOptions feature gate`}},
	{"logging text options with the gate", "logging: {options: {text: {splitStream: true, infoBufferSize: 1Mi}}}\nfeatureGates: {LoggingAlphaOptions: true}",
		[]string{
			`logging.options.text.splitStream: is not supported by portico, which writes every log line to stderr`,
			`logging.options.text.infoBufferSize: is not supported by portico, which does not buffer info messages`,
		}},
	{"externalIPs off", "featureGates: {AllowServiceExternalIPs: false}",
		[]string{`featureGates: AllowServiceExternalIPs=false is not supported by portico: portico always serves the spec.externalIPs of Services`}},
	{"nftables localhost NodePorts", "mode: nftables\nfeatureGates: {KubeProxyNFTablesLocalhostNodePorts: true}",
		[]string{`featureGates: KubeProxyNFTablesLocalhostNodePorts=true is not supported by portico: portico's nftables mode does not serve NodePorts on loopback addresses`}},
	{"locked gates", "featureGates: {PreferSameTrafficDistribution: false, MultiCIDRServiceAllocator: false}",
		[]string{
			`featureGates: PreferSameTrafficDistribution=false is not supported by portico: the feature is GA and locked on (kube-proxy rejects it too)`,
			`featureGates: MultiCIDRServiceAllocator=false is not supported by portico: the feature is GA and locked on (kube-proxy rejects it too)`,
		}},
}

func TestInvalidDocuments(t *testing.T) {
	for _, tt := range invalidDocuments {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := loadDoc(t, header+tt.doc+"\n")
			checkProblems(t, err, tt.want)
		})
	}
}

// checkProblems asserts that err is a *ValidationError with exactly want.
func checkProblems(t *testing.T, err error, want []string) {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) || !IsUsageError(err) {
		t.Fatalf("err = %v (%T), want a *ValidationError", err, err)
	}
	if !reflect.DeepEqual(ve.Problems, want) {
		t.Errorf("problems:\n got %q\nwant %q", ve.Problems, want)
	}
}

func TestInvalidFlags(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"--proxy-mode=userspace"}, []string{`--proxy-mode: "userspace" is not a valid proxy mode (valid: iptables, ipvs, nftables)`}},
		{[]string{"--mode=kernelspace"}, []string{`--mode: "kernelspace" is not a valid proxy mode (valid: iptables, ipvs, nftables)`}},
		{[]string{"--nodeport-addresses=10.0.0.0/8,10.0.0.0/33"}, []string{`--nodeport-addresses[1]: "10.0.0.0/33" is not a CIDR or one of primary, localhost, all`}},
		{[]string{"--iptables-min-sync-period=45s"}, []string{`--iptables-min-sync-period: "45s" must not be greater than iptables.syncPeriod ("30s")`}},
		{[]string{"--iptables-min-sync-period=45s", "--iptables-sync-period=40s"}, []string{`--iptables-min-sync-period: "45s" must not be greater than --iptables-sync-period ("40s")`}},
		{[]string{"--proxy-mode=nftables", "--iptables-min-sync-period=45s"}, []string{`--iptables-min-sync-period: "45s" must not be greater than nftables.syncPeriod ("30s")`}},
		{[]string{"--proxy-mode=ipvs", "--ipvs-sync-period=-1s"}, []string{`--ipvs-sync-period: "-1s" must be greater than 0`, `ipvs.minSyncPeriod: "1s" must not be greater than --ipvs-sync-period ("-1s")`}},
		{[]string{"--iptables-masquerade-bit=32"}, []string{`--iptables-masquerade-bit: 32 is out of range 0-31`}},
		{[]string{"--cluster-cidr=10.0.0.0/8,bad"}, []string{`--cluster-cidr[1]: "bad" is not a valid CIDR`}},
		{[]string{"--detect-local-mode=BridgeInterface"}, []string{`detectLocal.bridgeInterface: must not be empty when --detect-local-mode is BridgeInterface`}},
		{[]string{"--detect-local-mode=Foo"}, []string{`--detect-local-mode: "Foo" is not a valid local traffic detection mode (valid: BridgeInterface, ClusterCIDR, InterfaceNamePrefix, NodeCIDR)`}},
		{[]string{"--healthz-bind-address=0.0.0.0:99999"}, []string{`--healthz-bind-address: "0.0.0.0:99999" has an invalid port "99999" (must be 1-65535)`}},
		{[]string{"--metrics-port=0"}, []string{`--metrics-port: "" is not of the form IP:port`}},
		{[]string{"--bind-address=foo"}, []string{`--bind-address: "foo" is not a valid IP address`}},
		{[]string{"--conntrack-min=-1"}, []string{`--conntrack-min: -1 must not be negative`}},
		{[]string{"--conntrack-udp-timeout=-1s"}, []string{`--conntrack-udp-timeout: "-1s" must not be negative`}},
		{[]string{"--oom-score-adj=-1001"}, []string{`--oom-score-adj: -1001 is out of range -1000 to 1000`}},
		{[]string{"--kube-api-burst=-1"}, []string{`--kube-api-burst: -1 must not be negative`}},
		{[]string{"--config-sync-period=-1s"}, []string{`--config-sync-period: "-1s" must be greater than 0`}},
		{[]string{"--proxy-mode=ipvs", "--ipvs-exclude-cidrs=bad"}, []string{`--ipvs-exclude-cidrs[0]: "bad" is not a valid CIDR`}},
		{[]string{"--hostname-override=  "}, []string{`--hostname-override: "  " must not be blank`}},
		{[]string{"--feature-gates=AllowServiceExternalIPs=false"}, []string{`--feature-gates: AllowServiceExternalIPs=false is not supported by portico: portico always serves the spec.externalIPs of Services`}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, _, err := loadArgs(t, tt.args...)
			checkProblems(t, err, tt.want)
		})
	}
}

func TestModeFlagNamedInFileProblems(t *testing.T) {
	// The mode comes from the flag, the rest from the file.
	_, _, err := loadDoc(t, header+"mode: iptables\nnftables: {masqueradeBit: 40}\n", "--proxy-mode=nftable")
	checkProblems(t, err, []string{`--proxy-mode: "nftable" is not a valid proxy mode (valid: iptables, ipvs, nftables)`})
	_, _, err = loadDoc(t, header+"mode: iptables\nnftables: {masqueradeBit: 40}\n", "--proxy-mode=nftables")
	checkProblems(t, err, []string{`nftables.masqueradeBit: 40 is out of range 0-31`})
}

func TestAllProblemsReported(t *testing.T) {
	doc := header + `mode: userspace
healthzBindAddress: "0.0.0.0:0"
detectLocalMode: foo
nodePortAddresses: [all, 10.0.0.0/33, all]
conntrack: {min: -1}
oomScoreAdj: -2000
logging: {format: xml}
`
	_, _, err := loadDoc(t, doc, "--hostname-override= ")
	want := []string{
		`--hostname-override: " " must not be blank`,
		`healthzBindAddress: "0.0.0.0:0" has an invalid port "0" (must be 1-65535)`,
		`oomScoreAdj: -2000 is out of range -1000 to 1000`,
		`mode: "userspace" is not a valid proxy mode (valid: iptables, ipvs, nftables)`,
		`detectLocalMode: "foo" is not a valid local traffic detection mode (valid: BridgeInterface, ClusterCIDR, InterfaceNamePrefix, NodeCIDR)`,
		`nodePortAddresses[1]: "10.0.0.0/33" is not a CIDR or one of primary, localhost, all`,
		`nodePortAddresses[2]: duplicate keyword "all"`,
		`conntrack.min: -1 must not be negative`,
		`logging.format: "xml" is not a supported log format (valid: json, text)`,
	}
	checkProblems(t, err, want)
	if got := err.Error(); got != strings.Join(want, "\n") {
		t.Errorf("Error() = %q, want one problem per line", got)
	}
}

func TestIsUsageError(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&ValidationError{Problems: []string{"x"}}, true},
		{&FileError{Path: "p", Err: errors.New("boom")}, true},
		{fmt.Errorf("wrapped: %w", &ValidationError{}), true},
		{errors.New("other"), false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := IsUsageError(tt.err); got != tt.want {
			t.Errorf("IsUsageError(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
