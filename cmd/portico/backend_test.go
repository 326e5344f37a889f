package main

import (
	"io"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/backends/nftables"
	"github.com/portico-dev/portico/config"
	"github.com/portico-dev/portico/model"
	"github.com/portico-dev/portico/proxier/metrics"
)

// loadFile loads the configuration from a file holding body, as `portico --config` does.
func loadFile(t *testing.T, body string) *config.Config {
	t.Helper()
	flags := &config.Flags{}
	fs := pflag.NewFlagSet("portico", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	flags.AddFlags(fs)
	if err := fs.Parse([]string{"--config=" + writeConfig(t, body)}); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(flags, fs, klog.Background())
	if err != nil {
		t.Fatalf("loading %q: %v", body, err)
	}
	return cfg
}

// sections are the mode-dependent parts of the test configuration file: each mode's sync
// periods differ, localhostNodePorts is set (it only applies to iptables mode) and every
// ipvs setting is given.
const sections = `iptables: {syncPeriod: 11s, minSyncPeriod: 2s, localhostNodePorts: true, masqueradeBit: 9}
nftables: {syncPeriod: 12s, minSyncPeriod: 3s, masqueradeBit: 9}
ipvs: {syncPeriod: 13s, minSyncPeriod: 4s, scheduler: lc, strictARP: true, tcpTimeout: 5s,
  tcpFinTimeout: 6s, udpTimeout: 7s, excludeCIDRs: [10.1.0.0/16, "fd00:1::/64"]}
`

// TestBackendOptionsFromConfigFile checks that the backend gets the selected mode's sync
// periods, localhostNodePorts in iptables mode only, and the ipvs settings.
func TestBackendOptionsFromConfigFile(t *testing.T) {
	ipvs := backends.IPVSOptions{
		Scheduler: "lc", StrictARP: true,
		TCPTimeout: 5 * time.Second, TCPFinTimeout: 6 * time.Second, UDPTimeout: 7 * time.Second,
		ExcludeCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("fd00:1::/64")},
	}
	for _, tc := range []struct {
		mode          string
		sync, minSync time.Duration
		localhost     bool
	}{
		{config.ModeIPTables, 11 * time.Second, 2 * time.Second, true},
		{config.ModeNFTables, 12 * time.Second, 3 * time.Second, false},
		{config.ModeIPVS, 13 * time.Second, 4 * time.Second, false},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			got := backendOptions(loadFile(t, "mode: "+tc.mode+"\n"+sections))
			want := backends.Options{
				Families: []model.Family{model.IPv4, model.IPv6}, MasqueradeBit: 9,
				SyncPeriod: tc.sync, MinSyncPeriod: tc.minSync, LocalhostNodePorts: tc.localhost, IPVS: ipvs,
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Options = %+v\nwant      %+v", got, want)
			}
			// The compiler decides the loopback NodePort frontends from the same setting.
			if nc := nodeConfig(loadFile(t, "mode: "+tc.mode+"\n"+sections), "node-a"); nc.LocalhostNodePorts != tc.localhost {
				t.Errorf("nodeConfig.LocalhostNodePorts = %t, want %t", nc.LocalhostNodePorts, tc.localhost)
			}
		})
	}
}

// TestBackendOptionsDefaults checks kube-proxy's defaults: localhostNodePorts on in
// iptables mode, the round-robin IPVS scheduler when none is configured.
func TestBackendOptionsDefaults(t *testing.T) {
	got := backendOptions(loadFile(t, "mode: iptables\n"))
	if !got.LocalhostNodePorts || got.SyncPeriod != 30*time.Second || got.MinSyncPeriod != time.Second {
		t.Errorf("iptables defaults: localhost %v, sync %v/%v; want true, 30s/1s",
			got.LocalhostNodePorts, got.SyncPeriod, got.MinSyncPeriod)
	}
	if got.IPVS.Scheduler != "rr" {
		t.Errorf("IPVS scheduler %q, want rr", got.IPVS.Scheduler)
	}
	if got := backendOptions(loadFile(t, "mode: iptables\niptables: {localhostNodePorts: false}\n")); got.LocalhostNodePorts {
		t.Error("iptables.localhostNodePorts: false did not reach the backend")
	}
}

// TestNewBackendRegistersItsMetrics checks that the backend the proxy runs registers its
// own metrics in the registry /metrics serves.
func TestNewBackendRegistersItsMetrics(t *testing.T) {
	m := metrics.New()
	if _, err := newBackend(loadFile(t, "mode: nftables\n"), m); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{nftables.MetricSyncFailures, nftables.MetricCleanupFailures, nftables.MetricChains} {
		probe := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "probe"})
		if err := prometheus.NewRegistry().Register(probe); err != nil {
			t.Fatalf("test bug: %v", err)
		}
		if err := m.Registry().Register(probe); err == nil {
			t.Errorf("%s is not registered in the metrics registry", name)
		}
	}
}
