package config

import (
	"io"
	"testing"

	"github.com/spf13/pflag"
)

func newFlagSet() (*Flags, *pflag.FlagSet) {
	var f Flags
	fs := pflag.NewFlagSet("portico", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f.AddFlags(fs)
	return &f, fs
}

func TestFlagNamesTypesDefaults(t *testing.T) {
	_, fs := newFlagSet()
	want := map[string][2]string{ // name: {type, default}
		"config":                            {"string", ""},
		"write-config-to":                   {"string", ""},
		"cleanup":                           {"bool", "false"},
		"init-only":                         {"bool", "false"},
		"feature-gates":                     {"mapStringBool", ""},
		"proxy-mode":                        {"ProxyMode", ""},
		"mode":                              {"ProxyMode", ""},
		"kubeconfig":                        {"string", ""},
		"master":                            {"string", ""},
		"kube-api-content-type":             {"string", "application/vnd.kubernetes.protobuf"},
		"kube-api-qps":                      {"float32", "5"},
		"kube-api-burst":                    {"int32", "10"},
		"kube-api-compression":              {"bool", "false"},
		"hostname-override":                 {"string", ""},
		"bind-address":                      {"ip", "0.0.0.0"},
		"healthz-bind-address":              {"ipport", "0.0.0.0:10256"},
		"metrics-bind-address":              {"ipport", "127.0.0.1:10249"},
		"healthz-port":                      {"int32", "10256"},
		"metrics-port":                      {"int32", "10249"},
		"bind-address-hard-fail":            {"bool", "false"},
		"profiling":                         {"bool", "false"},
		"show-hidden-metrics-for-version":   {"string", ""},
		"masquerade-all":                    {"bool", "false"},
		"iptables-masquerade-bit":           {"int32", "14"},
		"iptables-localhost-nodeports":      {"bool", "true"},
		"iptables-sync-period":              {"duration", "30s"},
		"iptables-min-sync-period":          {"duration", "1s"},
		"ipvs-sync-period":                  {"duration", "30s"},
		"ipvs-min-sync-period":              {"duration", "1s"},
		"ipvs-scheduler":                    {"string", ""},
		"ipvs-exclude-cidrs":                {"stringSlice", "[]"},
		"ipvs-strict-arp":                   {"bool", "false"},
		"ipvs-tcp-timeout":                  {"duration", "0s"},
		"ipvs-tcpfin-timeout":               {"duration", "0s"},
		"ipvs-udp-timeout":                  {"duration", "0s"},
		"detect-local-mode":                 {"LocalMode", ""},
		"pod-bridge-interface":              {"string", ""},
		"pod-interface-name-prefix":         {"string", ""},
		"cluster-cidr":                      {"string", ""},
		"nodeport-addresses":                {"stringSlice", "[]"},
		"oom-score-adj":                     {"int32", "-999"},
		"conntrack-max-per-core":            {"int32", "32768"},
		"conntrack-min":                     {"int32", "131072"},
		"conntrack-tcp-timeout-established": {"duration", "24h0m0s"},
		"conntrack-tcp-timeout-close-wait":  {"duration", "1h0m0s"},
		"conntrack-tcp-be-liberal":          {"bool", "false"},
		"conntrack-udp-timeout":             {"duration", "0s"},
		"conntrack-udp-timeout-stream":      {"duration", "0s"},
		"config-sync-period":                {"duration", "15m0s"},
	}
	for name, tv := range want {
		fl := fs.Lookup(name)
		if fl == nil {
			t.Errorf("flag --%s is missing", name)
			continue
		}
		if fl.Value.Type() != tv[0] || fl.DefValue != tv[1] {
			t.Errorf("--%s: type %q default %q, want %q %q", name, fl.Value.Type(), fl.DefValue, tv[0], tv[1])
		}
		if fl.Usage == "" {
			t.Errorf("--%s has no help text", name)
		}
	}
	fs.VisitAll(func(fl *pflag.Flag) {
		if _, ok := want[fl.Name]; !ok {
			t.Errorf("unexpected flag --%s", fl.Name)
		}
	})
	for _, name := range []string{"v", "vmodule", "nftables-sync-period"} {
		if fs.Lookup(name) != nil {
			t.Errorf("flag --%s must not be registered", name)
		}
	}
}

func TestModeAlias(t *testing.T) {
	for _, args := range [][]string{
		{"--mode=ipvs"},
		{"--proxy-mode=ipvs"},
		{"--proxy-mode=nftables", "--mode=ipvs"},
	} {
		f, fs := newFlagSet()
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		if f.Mode != ModeIPVS {
			t.Errorf("%q: Mode = %q, want ipvs", args, f.Mode)
		}
		if got := fs.Lookup("proxy-mode").Value.String(); got != ModeIPVS {
			t.Errorf("%q: --proxy-mode reads %q", args, got)
		}
	}
}

func TestEmptyAddressFlagKeepsDefault(t *testing.T) {
	f, fs := newFlagSet()
	if err := fs.Parse([]string{"--bind-address=", "--healthz-bind-address="}); err != nil {
		t.Fatal(err)
	}
	if f.BindAddress != "0.0.0.0" || f.HealthzBindAddress != "0.0.0.0:10256" {
		t.Errorf("BindAddress = %q, HealthzBindAddress = %q", f.BindAddress, f.HealthzBindAddress)
	}
}
