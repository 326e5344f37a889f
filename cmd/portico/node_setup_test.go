package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/config"
	"github.com/portico-dev/portico/proxier/nodesetup"
)

// TestMain points hostRoot at an empty directory, so that no test of this package can
// write the machine's /proc or /sys; tests that need a node tree make one (fakeHost).
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "portico-cmd-host-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	hostRoot = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// Files of the fake node tree, from its root.
const (
	ctMaxPath      = "proc/sys/net/netfilter/nf_conntrack_max"
	ctHashsizePath = "sys/module/nf_conntrack/parameters/hashsize"
	ctEstablished  = "proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established"
	ctCloseWait    = "proc/sys/net/netfilter/nf_conntrack_tcp_timeout_close_wait"
	ctLiberal      = "proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal"
	ctUDP          = "proc/sys/net/netfilter/nf_conntrack_udp_timeout"
	ctUDPStream    = "proc/sys/net/netfilter/nf_conntrack_udp_timeout_stream"
	oomPath        = "proc/self/oom_score_adj"
	cpusPath       = "sys/devices/system/cpu/online"
)

// fakeHost makes a node tree as the kernel leaves it (2 CPUs) and points hostRoot at it
// for the test. It returns a function reading a file of the tree.
func fakeHost(t *testing.T) func(path string) string {
	t.Helper()
	root := t.TempDir()
	for path, v := range map[string]string{
		cpusPath: "0-1", ctMaxPath: "65536", ctHashsizePath: "16384", ctEstablished: "432000", ctCloseWait: "60",
		ctLiberal: "0", ctUDP: "30", ctUDPStream: "120", oomPath: "0",
	} {
		full := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := hostRoot
	hostRoot = root
	t.Cleanup(func() { hostRoot = old })
	return func(path string) string {
		data, err := os.ReadFile(filepath.Join(root, path))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(data))
	}
}

// conntrackDoc sets every conntrack field.
const conntrackDoc = `conntrack:
  maxPerCore: 100000
  min: 1000
  tcpEstablishedTimeout: 2h
  tcpCloseWaitTimeout: 30s
  tcpBeLiberal: true
  udpTimeout: 40s
  udpStreamTimeout: 3m
`

func TestNodeSettingsPerMode(t *testing.T) {
	wantConntrack := nodesetup.Conntrack{
		MaxPerCore: 100000, Min: 1000, TCPEstablishedTimeout: 2 * time.Hour, TCPCloseWaitTimeout: 30 * time.Second,
		TCPBeLiberal: true, UDPTimeout: 40 * time.Second, UDPStreamTimeout: 3 * time.Minute,
	}
	for _, tc := range []struct {
		doc  string
		want nodesetup.Settings
	}{
		{"mode: nftables\n", nodesetup.Settings{}},
		{"mode: nftables\nnodePortAddresses: [localhost]\n", nodesetup.Settings{}},
		{"mode: iptables\n", nodesetup.Settings{RouteLocalnet: true}},
		{"mode: iptables\nnodePortAddresses: [primary]\n", nodesetup.Settings{}},
		{"mode: iptables\niptables: {localhostNodePorts: false}\n", nodesetup.Settings{}},
		{"mode: ipvs\n", nodesetup.Settings{IPVS: true}},
		{"mode: ipvs\nipvs: {strictARP: true}\n", nodesetup.Settings{IPVS: true, StrictARP: true}},
		{"mode: nftables\nipvs: {strictARP: true}\n", nodesetup.Settings{}},
	} {
		want := tc.want
		want.Conntrack = wantConntrack
		if got := nodeSettings(loadFile(t, tc.doc+conntrackDoc)); got != want {
			t.Errorf("%q: settings %+v, want %+v", tc.doc, got, want)
		}
	}
}

// fakeBackend is a backend whose start-up work succeeds or fails.
type fakeBackend struct {
	backends.Backend
	prepareErr error
	prepared   bool
}

func (f *fakeBackend) Prepare(context.Context) error {
	f.prepared = true
	return f.prepareErr
}

func TestInitNode(t *testing.T) {
	read := fakeHost(t)
	cfg := loadFile(t, "mode: nftables\n"+conntrackDoc)
	be := &fakeBackend{}
	if err := initNode(t.Context(), cfg, be); err != nil {
		t.Fatalf("initNode: %v", err)
	}
	for path, want := range map[string]string{
		ctMaxPath: "200000", ctHashsizePath: "50000", ctEstablished: "7200", ctCloseWait: "30",
		ctLiberal: "1", ctUDP: "40", ctUDPStream: "180",
		oomPath: "0", // set by the proxy only, as in kube-proxy
	} {
		if got := read(path); got != want {
			t.Errorf("/%s = %s, want %s", path, got, want)
		}
	}
	if !be.prepared {
		t.Error("the backend's start-up checks did not run")
	}

	be.prepareErr = errors.New("nft: not found")
	if err := initNode(t.Context(), cfg, be); err == nil || !strings.Contains(err.Error(), "mode nftables cannot run on this node: nft: not found") {
		t.Errorf("initNode with a failing backend: %v, want the mode named", err)
	}
}

// apiServer is an API server that counts the requests it gets.
func apiServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		http.Error(w, "no", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	return srv, &requests
}

// TestInitOnlyCommand runs `portico --init-only`: it never contacts the API server, and
// fails when the mode's dataplane cannot run (here: no nft on the PATH) after the node
// set-up, as kube-proxy.
func TestInitOnlyCommand(t *testing.T) {
	read := fakeHost(t)
	srv, requests := apiServer(t)
	if got := read(ctEstablished); got != "432000" {
		t.Fatalf("the fake host starts with established timeout %s, want 432000", got)
	}
	t.Setenv("PATH", t.TempDir())
	code, msg, _ := run(t, "--init-only", "--master="+srv.URL, "--config="+writeConfig(t, "mode: nftables\n"+conntrackDoc))
	if code != exitError || !strings.Contains(msg, "nftables mode needs the nft binary (Debian: apt-get install nftables)") {
		t.Errorf("nftables without nft: exit %d, error %q; want %d saying what to install", code, msg, exitError)
	}
	if got := read(ctEstablished); got != "7200" {
		t.Errorf("nftables: established timeout %s, want 7200 (set before the dataplane check)", got)
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("--init-only sent %d requests to the API server", n)
	}
}

// TestInitOnlyFailsOnSettings: a setting that cannot be applied makes --init-only fail,
// naming the field.
func TestInitOnlyFailsOnSettings(t *testing.T) {
	fakeHost(t)
	if err := os.Remove(filepath.Join(hostRoot, ctUDP)); err != nil {
		t.Fatal(err)
	}
	err := initNode(t.Context(), loadFile(t, "mode: nftables\n"+conntrackDoc), &fakeBackend{})
	if err == nil || !strings.Contains(err.Error(), "setting up the node: conntrack.udpTimeout: setting sysctl net.netfilter.nf_conntrack_udp_timeout to 40") {
		t.Errorf("initNode: %v, want an error naming conntrack.udpTimeout", err)
	}
}

func TestSetOOMScoreAdj(t *testing.T) {
	read := fakeHost(t)
	setOOMScoreAdj(t.Context(), loadFile(t, "oomScoreAdj: -500\n"))
	if got := read(oomPath); got != "-500" {
		t.Errorf("oom_score_adj %s, want -500", got)
	}
	setOOMScoreAdj(t.Context(), loadFile(t, "mode: nftables\n"))
	if got := read(oomPath); got != "-999" {
		t.Errorf("oom_score_adj %s, want kube-proxy's default -999", got)
	}
	// Failing is not fatal: nothing to return, nothing panics.
	hostRoot = t.TempDir()
	setOOMScoreAdj(t.Context(), &config.Config{OOMScoreAdj: -999})
}
