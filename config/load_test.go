package config

import (
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

func TestLoadDefaultDocument(t *testing.T) {
	data, err := os.ReadFile("testdata/kube-proxy-defaults.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, logs := mustLoadDoc(t, string(data))
	if logs.contains("lenient") {
		t.Errorf("the default document did not decode strictly:\n%s", logs)
	}
	want := Config{
		Mode: ModeIPTables, ModeSource: ModeSourceFile,
		QPS: 5, Burst: 10, ContentType: "application/vnd.kubernetes.protobuf",
		BindAddress:        netip.MustParseAddr("0.0.0.0"),
		HealthzBindAddress: "0.0.0.0:10256", MetricsBindAddress: "127.0.0.1:10249",
		SyncPeriod: 30 * time.Second, MinSyncPeriod: time.Second, ConfigSyncPeriod: 15 * time.Minute,
		MasqueradeBit: 14, DetectLocalMode: LocalModeClusterCIDR,
		LocalhostNodePorts: true, OOMScoreAdj: -999,
		Conntrack: ConntrackConfig{
			MaxPerCore: 32768, Min: 131072,
			TCPEstablishedTimeout: 24 * time.Hour, TCPCloseWaitTimeout: time.Hour,
		},
		FeatureGates: map[string]bool{},
		Logging:      LoggingConfig{FlushFrequency: 5 * time.Second},
	}
	checkConfig(t, cfg, &want)

	// With no file at all, kube-proxy ends up with the same configuration.
	noFile, _ := mustLoad(t)
	a, _ := yaml.Marshal(&cfg.Effective)
	b, _ := yaml.Marshal(&noFile.Effective)
	if string(a) != string(b) {
		t.Errorf("defaults differ between the default document and no --config:\n%s\nvs\n%s", a, b)
	}
}

// checkConfig compares cfg with want, ignoring File and Effective.
func checkConfig(t *testing.T, cfg, want *Config) {
	t.Helper()
	got := *cfg
	got.File, got.Effective = "", want.Effective
	if !reflect.DeepEqual(&got, want) {
		t.Errorf("Config mismatch:\n got %+v\nwant %+v", got, *want)
	}
}

func readConfigMap(t *testing.T) *corev1.ConfigMap {
	t.Helper()
	data, err := os.ReadFile("testdata/kubeadm-configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(data, &cm); err != nil {
		t.Fatal(err)
	}
	return &cm
}

func TestLoadKubeadmConfigMap(t *testing.T) {
	cm := readConfigMap(t)
	if cm.Name != "kube-proxy" || cm.Namespace != "kube-system" || cm.Data["kubeconfig.conf"] == "" {
		t.Fatalf("unexpected ConfigMap %s/%s", cm.Namespace, cm.Name)
	}
	doc, err := FromConfigMap(cm)
	if err != nil {
		t.Fatal(err)
	}
	// As the kubeadm DaemonSet runs it.
	cfg, logs := mustLoadDoc(t, string(doc), "--hostname-override=Worker-1")
	want := Config{
		Mode: ModeIPTables, ModeSource: ModeSourceDefault,
		Kubeconfig: "/var/lib/kube-proxy/kubeconfig.conf", HostnameOverride: "worker-1",
		QPS: 5, Burst: 10, ContentType: "application/vnd.kubernetes.protobuf",
		BindAddress:        netip.MustParseAddr("0.0.0.0"),
		HealthzBindAddress: "0.0.0.0:10256", MetricsBindAddress: "127.0.0.1:10249",
		SyncPeriod: 30 * time.Second, MinSyncPeriod: time.Second, ConfigSyncPeriod: 15 * time.Minute,
		MasqueradeBit: 14, DetectLocalMode: LocalModeClusterCIDR,
		ClusterCIDRs: []netip.Prefix{
			netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:10:244::/56"),
		},
		LocalhostNodePorts: true, OOMScoreAdj: -999,
		Conntrack: ConntrackConfig{
			MaxPerCore: 32768, Min: 131072,
			TCPEstablishedTimeout: 24 * time.Hour, TCPCloseWaitTimeout: time.Hour,
		},
		FeatureGates: map[string]bool{},
		Logging:      LoggingConfig{FlushFrequency: 5 * time.Second},
	}
	checkConfig(t, cfg, &want)
	if cfg.Effective.HostnameOverride != "worker-1" {
		t.Errorf("Effective.HostnameOverride = %q", cfg.Effective.HostnameOverride)
	}
	if !logs.contains("defaulting to iptables", "nftables") {
		t.Errorf("no hint about nftables logged:\n%s", logs)
	}
}

func TestConfigMapFileIsRejected(t *testing.T) {
	data, err := os.ReadFile("testdata/kubeadm-configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = loadDoc(t, string(data))
	if err == nil || !strings.Contains(err.Error(), `"config.conf"`) || !IsUsageError(err) {
		t.Fatalf("err = %v, want a usage error naming config.conf", err)
	}
}

func TestFromConfigMap(t *testing.T) {
	cm := readConfigMap(t)
	delete(cm.Data, ConfigMapKey)
	_, err := FromConfigMap(cm)
	if err == nil || !strings.Contains(err.Error(), `"config.conf"`) || !strings.Contains(err.Error(), "kube-system/kube-proxy") {
		t.Errorf("err = %v, want one naming the missing key", err)
	}
	if _, err := FromConfigMap(nil); err == nil {
		t.Error("FromConfigMap(nil) succeeded")
	}
}

func TestModePrecedence(t *testing.T) {
	tests := []struct {
		name       string
		doc        string // "" means no --config
		args       []string
		wantMode   string
		wantSource string
		wantLog    []string // substrings of one log line
		noLog      string
	}{
		{"flag wins over file", header + "mode: ipvs\n", []string{"--proxy-mode=nftables"},
			ModeNFTables, ModeSourceFlag, []string{"overrides the config file", `"--proxy-mode"`, `"flagMode"="nftables"`, `"fileMode"="ipvs"`}, "defaulting"},
		{"--mode alias wins over file", header + "mode: iptables\n", []string{"--mode=ipvs"},
			ModeIPVS, ModeSourceFlag, []string{"overrides the config file", `"--mode"`, `"flagMode"="ipvs"`, `"fileMode"="iptables"`}, "defaulting"},
		{"flag wins over file without mode", header, []string{"--proxy-mode=nftables"},
			ModeNFTables, ModeSourceFlag, []string{"overrides the config file", `"fileMode"=""`}, "defaulting"},
		{"file mode without flag", header + "mode: nftables\n", nil,
			ModeNFTables, ModeSourceFile, nil, "overrides"},
		{"file without mode", header, nil,
			ModeIPTables, ModeSourceDefault, []string{"defaulting to iptables", "nftables is the recommended mode"}, "overrides"},
		{"no file, no flag", "", nil,
			ModeIPTables, ModeSourceDefault, []string{"defaulting to iptables", "nftables is the recommended mode"}, "overrides"},
		{"no file, flag", "", []string{"--proxy-mode=ipvs"},
			ModeIPVS, ModeSourceFlag, nil, "defaulting"},
		{"empty flag is unset", header + "mode: nftables\n", []string{"--proxy-mode="},
			ModeNFTables, ModeSourceFile, nil, "overrides"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg *Config
			var logs *logSink
			if tt.doc == "" {
				cfg, logs = mustLoad(t, tt.args...)
			} else {
				cfg, logs = mustLoadDoc(t, tt.doc, tt.args...)
			}
			if cfg.Mode != tt.wantMode || cfg.ModeSource != tt.wantSource {
				t.Errorf("mode = %q from %q, want %q from %q", cfg.Mode, cfg.ModeSource, tt.wantMode, tt.wantSource)
			}
			if string(cfg.Effective.Mode) != tt.wantMode {
				t.Errorf("Effective.Mode = %q", cfg.Effective.Mode)
			}
			if tt.wantLog != nil && !logs.contains(tt.wantLog...) {
				t.Errorf("no log line with %q:\n%s", tt.wantLog, logs)
			}
			if logs.contains(tt.noLog) {
				t.Errorf("unexpected log line with %q:\n%s", tt.noLog, logs)
			}
		})
	}
}

func TestNFTablesDefaultsNodePortAddressesToPrimary(t *testing.T) {
	cfg, _ := mustLoad(t, "--proxy-mode=nftables")
	if want := (NodePortAddresses{Primary: true}); !reflect.DeepEqual(cfg.NodePortAddresses, want) {
		t.Errorf("NodePortAddresses = %+v, want %+v", cfg.NodePortAddresses, want)
	}
	cfg, _ = mustLoadDoc(t, header+"mode: nftables\nnodePortAddresses: [10.0.0.0/8]\n")
	if cfg.NodePortAddresses.Primary || len(cfg.NodePortAddresses.CIDRs) != 1 {
		t.Errorf("NodePortAddresses = %+v, want only the CIDR", cfg.NodePortAddresses)
	}
	cfg, _ = mustLoad(t, "--proxy-mode=iptables")
	if !reflect.DeepEqual(cfg.NodePortAddresses, NodePortAddresses{}) {
		t.Errorf("iptables NodePortAddresses = %+v, want empty", cfg.NodePortAddresses)
	}
}

func TestHostnameOverride(t *testing.T) {
	doc := header + "hostnameOverride: From-File\n"
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"flag wins over file", []string{"--hostname-override= Node-A "}, "node-a"},
		{"empty flag keeps file", []string{"--hostname-override="}, "from-file"},
		{"file only", nil, "from-file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _ := mustLoadDoc(t, doc, tt.args...)
			if cfg.HostnameOverride != tt.want {
				t.Errorf("HostnameOverride = %q, want %q", cfg.HostnameOverride, tt.want)
			}
			got, err := cfg.HostnameOrDefault()
			if err != nil || got != tt.want {
				t.Errorf("HostnameOrDefault() = %q, %v", got, err)
			}
		})
	}
}

// TestAPICompression: portico's own flag is off by default and applies with or without a
// config file (no KubeProxyConfiguration field holds it).
func TestAPICompression(t *testing.T) {
	for _, tt := range []struct {
		name string
		doc  bool
		args []string
		want bool
	}{
		{"default", false, nil, false},
		{"flag", false, []string{"--kube-api-compression"}, true},
		{"flag with a config file", true, []string{"--kube-api-compression=true"}, true},
		{"config file only", true, nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var cfg *Config
			if tt.doc {
				cfg, _ = mustLoadDoc(t, header, tt.args...)
			} else {
				cfg, _ = mustLoad(t, tt.args...)
			}
			if cfg.APICompression != tt.want {
				t.Errorf("APICompression = %v, want %v", cfg.APICompression, tt.want)
			}
		})
	}
}

func TestHostnameOrDefault(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	got, err := (&Config{}).HostnameOrDefault()
	if err != nil || got != strings.ToLower(strings.TrimSpace(host)) {
		t.Errorf("HostnameOrDefault() = %q, %v; want the lowercased OS hostname", got, err)
	}
}

func TestFlagsIgnoredWithConfig(t *testing.T) {
	doc := header + "clusterCIDR: 10.0.0.0/8\niptables:\n  syncPeriod: 10s\n"
	cfg, logs := mustLoadDoc(t, doc, "--cluster-cidr=192.168.0.0/16", "--iptables-sync-period=5s",
		"--master=https://api.example:6443", "--cleanup", "--kubeconfig=/flag/kubeconfig")
	if len(cfg.ClusterCIDRs) != 1 || cfg.ClusterCIDRs[0] != netip.MustParsePrefix("10.0.0.0/8") {
		t.Errorf("ClusterCIDRs = %v, want the file's", cfg.ClusterCIDRs)
	}
	if cfg.SyncPeriod != 10*time.Second || cfg.Kubeconfig != "" {
		t.Errorf("SyncPeriod = %v, Kubeconfig = %q; want the file's", cfg.SyncPeriod, cfg.Kubeconfig)
	}
	if cfg.Master != "https://api.example:6443" || !cfg.Cleanup {
		t.Errorf("Master = %q, Cleanup = %v; these flags apply with --config", cfg.Master, cfg.Cleanup)
	}
	for _, flag := range []string{"--cluster-cidr", "--iptables-sync-period", "--kubeconfig"} {
		if !logs.contains("Ignoring command-line flag", `"`+flag+`"`) {
			t.Errorf("no log about ignoring %s:\n%s", flag, logs)
		}
	}
	if logs.contains("Ignoring", "--master") {
		t.Errorf("--master reported as ignored:\n%s", logs)
	}
}

func TestFlagsWithoutConfig(t *testing.T) {
	cfg, _ := mustLoad(t, "--kubeconfig=/k", "--kube-api-qps=20", "--kube-api-burst=40",
		"--cluster-cidr=10.0.0.0/8,fd00::/64", "--nodeport-addresses=primary,192.168.0.0/16",
		"--masquerade-all", "--iptables-masquerade-bit=4", "--conntrack-min=7",
		"--feature-gates=Foo=true,Bar=false", "--healthz-bind-address=10.1.2.3", "--bind-address=010.0.0.1")
	if cfg.Kubeconfig != "/k" || cfg.QPS != 20 || cfg.Burst != 40 || !cfg.MasqueradeAll || cfg.MasqueradeBit != 4 {
		t.Errorf("client/masquerade flags not applied: %+v", cfg)
	}
	wantCIDRs := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/64")}
	if !reflect.DeepEqual(cfg.ClusterCIDRs, wantCIDRs) {
		t.Errorf("ClusterCIDRs = %v", cfg.ClusterCIDRs)
	}
	wantNP := NodePortAddresses{Primary: true, CIDRs: []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16")}}
	if !reflect.DeepEqual(cfg.NodePortAddresses, wantNP) {
		t.Errorf("NodePortAddresses = %+v", cfg.NodePortAddresses)
	}
	if cfg.Conntrack.Min != 7 || !reflect.DeepEqual(cfg.FeatureGates, map[string]bool{"Foo": true, "Bar": false}) {
		t.Errorf("Conntrack.Min = %d, FeatureGates = %v", cfg.Conntrack.Min, cfg.FeatureGates)
	}
	if cfg.HealthzBindAddress != "10.1.2.3:10256" || cfg.BindAddress != netip.MustParseAddr("10.0.0.1") {
		t.Errorf("HealthzBindAddress = %q, BindAddress = %v", cfg.HealthzBindAddress, cfg.BindAddress)
	}
}

func TestDeprecatedPortFlags(t *testing.T) {
	cfg, _ := mustLoad(t, "--healthz-port=0")
	if cfg.HealthzBindAddress != "" {
		t.Errorf("--healthz-port=0: HealthzBindAddress = %q, want disabled", cfg.HealthzBindAddress)
	}
	cfg, _ = mustLoad(t, "--healthz-bind-address=127.0.0.1", "--healthz-port=1234")
	if cfg.HealthzBindAddress != "127.0.0.1:1234" {
		t.Errorf("HealthzBindAddress = %q, want 127.0.0.1:1234", cfg.HealthzBindAddress)
	}
}

func TestModeDependentFields(t *testing.T) {
	doc := header + `iptables: {syncPeriod: 10s, minSyncPeriod: 2s, masqueradeAll: true, masqueradeBit: 12}
ipvs: {syncPeriod: 20s, minSyncPeriod: 3s}
nftables: {syncPeriod: 40s, minSyncPeriod: 4s, masqueradeAll: false, masqueradeBit: 20}
`
	tests := []struct {
		mode          string
		sync, minSync time.Duration
		masqAll       bool
		masqBit       int
	}{
		{ModeIPTables, 10 * time.Second, 2 * time.Second, true, 12},
		{ModeIPVS, 20 * time.Second, 3 * time.Second, true, 12},
		{ModeNFTables, 40 * time.Second, 4 * time.Second, false, 20},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			cfg, _ := mustLoadDoc(t, doc+"mode: "+tt.mode+"\n")
			if cfg.SyncPeriod != tt.sync || cfg.MinSyncPeriod != tt.minSync {
				t.Errorf("sync periods = %v/%v, want %v/%v", cfg.SyncPeriod, cfg.MinSyncPeriod, tt.sync, tt.minSync)
			}
			if cfg.MasqueradeAll != tt.masqAll || cfg.MasqueradeBit != tt.masqBit {
				t.Errorf("masquerade = %v/%d, want %v/%d", cfg.MasqueradeAll, cfg.MasqueradeBit, tt.masqAll, tt.masqBit)
			}
		})
	}
}

func TestModeDependentFlags(t *testing.T) {
	tests := []struct {
		name          string
		args          []string
		sync, minSync time.Duration
		ignored       string
	}{
		{"iptables", []string{"--iptables-sync-period=9s", "--iptables-min-sync-period=2s"}, 9 * time.Second, 2 * time.Second, ""},
		{"nftables uses the iptables flags", []string{"--proxy-mode=nftables", "--iptables-sync-period=9s"}, 9 * time.Second, time.Second, ""},
		{"ipvs", []string{"--proxy-mode=ipvs", "--ipvs-sync-period=7s"}, 7 * time.Second, time.Second, ""},
		{"ipvs ignores iptables flags", []string{"--proxy-mode=ipvs", "--iptables-sync-period=9s"}, 30 * time.Second, time.Second, "--iptables-sync-period"},
		{"iptables ignores ipvs flags", []string{"--ipvs-sync-period=7s"}, 30 * time.Second, time.Second, "--ipvs-sync-period"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, logs := mustLoad(t, tt.args...)
			if cfg.SyncPeriod != tt.sync || cfg.MinSyncPeriod != tt.minSync {
				t.Errorf("sync periods = %v/%v, want %v/%v", cfg.SyncPeriod, cfg.MinSyncPeriod, tt.sync, tt.minSync)
			}
			if tt.ignored != "" && !logs.contains("does not apply", tt.ignored) {
				t.Errorf("no log about ignoring %s:\n%s", tt.ignored, logs)
			}
		})
	}
	cfg, _ := mustLoad(t, "--proxy-mode=nftables", "--iptables-sync-period=9s", "--masquerade-all")
	if cfg.Effective.NFTables.SyncPeriod.Duration != 9*time.Second || !cfg.Effective.NFTables.MasqueradeAll {
		t.Errorf("Effective.NFTables = %+v, want the flags mapped there", cfg.Effective.NFTables)
	}
	// An ipvs config file has no default minSyncPeriod (unlike the flags).
	cfg, _ = mustLoadDoc(t, header+"mode: ipvs\n")
	if cfg.SyncPeriod != 30*time.Second || cfg.MinSyncPeriod != 0 {
		t.Errorf("ipvs file sync periods = %v/%v, want 30s/0s", cfg.SyncPeriod, cfg.MinSyncPeriod)
	}
}

func TestIPVSConfig(t *testing.T) {
	doc := header + `mode: ipvs
ipvs: {scheduler: lc, excludeCIDRs: [10.1.0.0/16], strictARP: true, tcpTimeout: 5s, tcpFinTimeout: 6s, udpTimeout: 7s}
`
	cfg, _ := mustLoadDoc(t, doc)
	want := IPVSConfig{
		Scheduler: "lc", ExcludeCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, StrictARP: true,
		TCPTimeout: 5 * time.Second, TCPFinTimeout: 6 * time.Second, UDPTimeout: 7 * time.Second,
	}
	if !reflect.DeepEqual(cfg.IPVS, want) {
		t.Errorf("IPVS = %+v, want %+v", cfg.IPVS, want)
	}
	if got := cfg.IPVS.SchedulerOrDefault(); got != "lc" {
		t.Errorf("SchedulerOrDefault() = %q, want the configured lc", got)
	}
}

// TestIPVSSchedulerDefault checks that an empty ipvs.scheduler means round robin, as in
// kube-proxy, while the configuration (and /configz) keeps it empty.
func TestIPVSSchedulerDefault(t *testing.T) {
	for _, args := range [][]string{nil, {"--ipvs-scheduler="}} {
		cfg, _ := mustLoadDoc(t, header+"mode: ipvs\n", args...)
		if cfg.IPVS.Scheduler != "" || cfg.Effective.IPVS.Scheduler != "" {
			t.Errorf("%q: scheduler %q, effective %q; want both empty as configured", args, cfg.IPVS.Scheduler, cfg.Effective.IPVS.Scheduler)
		}
		if got := cfg.IPVS.SchedulerOrDefault(); got != "rr" {
			t.Errorf("%q: SchedulerOrDefault() = %q, want rr", args, got)
		}
	}
	cfg, _ := mustLoad(t, "--proxy-mode=ipvs", "--ipvs-scheduler=sh")
	if got := cfg.IPVS.SchedulerOrDefault(); got != "sh" {
		t.Errorf("--ipvs-scheduler=sh: SchedulerOrDefault() = %q", got)
	}
}

func TestWriteFileRoundTrip(t *testing.T) {
	cfg, _ := mustLoad(t, "--proxy-mode=nftables", "--cluster-cidr=10.0.0.0/8")
	path := writeFile(t, "")
	if err := cfg.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	back, logs, err := loadArgs(t, "--config="+path)
	if err != nil {
		t.Fatal(err)
	}
	if logs.contains("lenient") || back.Mode != ModeNFTables || len(back.ClusterCIDRs) != 1 {
		t.Errorf("round trip lost data: mode %q, CIDRs %v\n%s", back.Mode, back.ClusterCIDRs, logs)
	}
}
