package nodesetup

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Paths of the fake tree, relative to its root.
const (
	maxPath         = "proc/sys/net/netfilter/nf_conntrack_max"
	establishedPath = "proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established"
	closeWaitPath   = "proc/sys/net/netfilter/nf_conntrack_tcp_timeout_close_wait"
	liberalPath     = "proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal"
	udpPath         = "proc/sys/net/netfilter/nf_conntrack_udp_timeout"
	udpStreamPath   = "proc/sys/net/netfilter/nf_conntrack_udp_timeout_stream"
	localnetPath    = "proc/sys/net/ipv4/conf/all/route_localnet"
)

// kernelDefaults is a node as the kernel leaves it: 4 CPUs, the kernel's default timeouts.
var kernelDefaults = map[string]string{
	onlineCPUsPath:  "0-3\n",
	maxPath:         "65536\n",
	hashsizePath:    "16384\n",
	establishedPath: "432000\n",
	closeWaitPath:   "60\n",
	liberalPath:     "0\n",
	udpPath:         "30\n",
	udpStreamPath:   "120\n",
	oomScoreAdjPath: "0\n",
}

// fakeTree writes files (path from the root → content) under a temporary root and returns
// the root.
func fakeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for path, content := range files {
		full := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// withDefaults returns kernelDefaults with changes applied.
func withDefaults(changes map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range kernelDefaults {
		out[k] = v
	}
	for k, v := range changes {
		out[k] = v
	}
	return out
}

// readTree returns the trimmed content of path under root, or "<absent>".
func readTree(t *testing.T, root, path string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, path))
	if errors.Is(err, fs.ErrNotExist) {
		return "<absent>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

// checkTree compares the files of root with want.
func checkTree(t *testing.T, root string, want map[string]string) {
	t.Helper()
	for path, v := range want {
		if got := readTree(t, root, path); got != v {
			t.Errorf("/%s = %s, want %s", path, got, v)
		}
	}
}

// readOnlyFiles makes some paths of a tree read-only, as /proc/sys is in an unprivileged
// container, for a root user that the permissions of a temporary file would not stop.
type readOnlyFiles struct {
	files
	readOnly map[string]bool
	writes   map[string]int
	// errno is what a write to a read-only path fails with (EROFS when zero).
	errno syscall.Errno
}

func (r *readOnlyFiles) write(path string, data []byte) error {
	r.writes[path]++
	if r.readOnly[path] {
		errno := r.errno
		if errno == 0 {
			errno = syscall.EROFS
		}
		return &fs.PathError{Op: "open", Path: "/" + path, Err: errno}
	}
	return r.files.write(path, data)
}

// newReadOnly returns a Node over root whose paths ro are read-only.
func newReadOnly(root string, ro ...string) (*Node, *readOnlyFiles) {
	files := &readOnlyFiles{files: dirFiles(root), readOnly: map[string]bool{}, writes: map[string]int{}}
	for _, p := range ro {
		files.readOnly[p] = true
	}
	return &Node{files: files}, files
}

// kubeadmConntrack is what kube-proxy's defaults ask for, plus the optional fields.
var kubeadmConntrack = Conntrack{
	MaxPerCore:            32768,
	Min:                   131072,
	TCPEstablishedTimeout: 24 * time.Hour,
	TCPCloseWaitTimeout:   time.Hour,
	UDPTimeout:            45 * time.Second,
	UDPStreamTimeout:      150 * time.Second,
	TCPBeLiberal:          true,
}

func TestConntrackSetsEveryField(t *testing.T) {
	root := fakeTree(t, kernelDefaults)
	if err := New(root).Apply(t.Context(), Settings{Conntrack: kubeadmConntrack}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	checkTree(t, root, map[string]string{
		maxPath:         "131072", // 4 × 32768 is not more than min
		hashsizePath:    "32768",  // a quarter of it
		establishedPath: "86400",
		closeWaitPath:   "3600",
		liberalPath:     "1",
		udpPath:         "45",
		udpStreamPath:   "150",
	})
}

func TestConntrackMaxScalesWithTheNodesCPUs(t *testing.T) {
	root := fakeTree(t, withDefaults(map[string]string{onlineCPUsPath: "0-7,16-23\n"}))
	if err := New(root).Apply(t.Context(), Settings{Conntrack: Conntrack{MaxPerCore: 32768, Min: 131072}}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	checkTree(t, root, map[string]string{maxPath: "524288", hashsizePath: "131072"})
}

// TestConntrackMaxOnlyRaised: nf_conntrack_max and the hash table size are only ever
// raised; the hash table is checked even when nf_conntrack_max is large enough.
func TestConntrackMaxOnlyRaised(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		max, hashsize           string
		wantMax, wantHashsizeTo string
	}{
		{"both larger", "1000000", "262144", "1000000", "262144"},
		{"hash table smaller", "1000000", "1024", "1000000", "32768"},
		{"both smaller", "1000", "1024", "131072", "32768"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeTree(t, withDefaults(map[string]string{maxPath: tc.max, hashsizePath: tc.hashsize}))
			if err := New(root).Apply(t.Context(), Settings{Conntrack: Conntrack{MaxPerCore: 32768, Min: 131072}}); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			checkTree(t, root, map[string]string{maxPath: tc.wantMax, hashsizePath: tc.wantHashsizeTo})
		})
	}
}

// TestConntrackZeroLeavesAlone: maxPerCore 0 (the e2e harness's setting) touches neither
// nf_conntrack_max nor the hash table, not even to read them, and zero timeouts and a
// false tcpBeLiberal leave their sysctls as they are.
func TestConntrackZeroLeavesAlone(t *testing.T) {
	for _, liberal := range []string{"0", "1"} {
		tree := withDefaults(map[string]string{liberalPath: liberal})
		delete(tree, maxPath)
		delete(tree, hashsizePath)
		root := fakeTree(t, tree)
		n, files := newReadOnly(root)
		if err := n.Apply(t.Context(), Settings{}); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if len(files.writes) != 0 {
			t.Errorf("tcp_be_liberal %s: wrote %v, want nothing written", liberal, files.writes)
		}
		checkTree(t, root, map[string]string{
			maxPath: "<absent>", hashsizePath: "<absent>",
			establishedPath: "432000", closeWaitPath: "60", liberalPath: liberal, udpPath: "30", udpStreamPath: "120",
		})
	}
}

// TestConntrackTimeoutsInWholeSeconds: durations are truncated to seconds, as kube-proxy
// writes them.
func TestConntrackTimeoutsInWholeSeconds(t *testing.T) {
	root := fakeTree(t, kernelDefaults)
	c := Conntrack{TCPEstablishedTimeout: 90*time.Minute + 1500*time.Millisecond, UDPTimeout: 2500 * time.Millisecond}
	if err := New(root).Apply(t.Context(), Settings{Conntrack: c}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	checkTree(t, root, map[string]string{establishedPath: "5401", udpPath: "2"})
}

func TestConntrackMax(t *testing.T) {
	for _, tc := range []struct {
		perCore, min, cpus, want int
	}{
		{0, 131072, 4, 0},             // maxPerCore 0: leave it alone
		{-1, 131072, 4, 0},            // (rejected by validation) the same
		{32768, 131072, 2, 131072},    // scaled below min: min
		{32768, 131072, 4, 131072},    // scaled equal to min: min
		{32768, 131071, 4, 131072},    // scaled above min: scaled
		{32768, 131072, 8, 262144},    // scaled
		{32768, 0, 1, 32768},          // no min
		{32768, 131072, 32, 1 << 20},  // scaled exactly at the cap
		{32768, 131072, 33, 1 << 20},  // scaled above the cap: the cap
		{65536, 4 << 20, 64, 1 << 20}, // the cap wins over a larger min when the scaled value exceeds it
		{1024, 2 << 20, 4, 2 << 20},   // a min above the cap wins over a smaller scaled value
		{100000, 131072, 0, 131072},   // no CPU counted: min
	} {
		if got := ConntrackMax(Conntrack{MaxPerCore: tc.perCore, Min: tc.min}, tc.cpus); got != tc.want {
			t.Errorf("ConntrackMax(maxPerCore %d, min %d, %d CPUs) = %d, want %d", tc.perCore, tc.min, tc.cpus, got, tc.want)
		}
	}
}

func TestCPUs(t *testing.T) {
	for _, tc := range []struct {
		online string
		want   int
	}{
		{"0\n", 1},
		{"0-1\n", 2},
		{"0-3,8-11\n", 8},
		{"garbage", runtime.NumCPU()},
	} {
		if got := New(fakeTree(t, map[string]string{onlineCPUsPath: tc.online})).cpus(); got != tc.want {
			t.Errorf("online %q: %d CPUs, want %d", tc.online, got, tc.want)
		}
	}
	if got := New(t.TempDir()).cpus(); got != runtime.NumCPU() {
		t.Errorf("without %s: %d CPUs, want runtime.NumCPU() = %d", onlineCPUsPath, got, runtime.NumCPU())
	}
}

// TestReadOnlyProcSys: in a container whose /proc/sys is read-only, what already has the
// wanted value (or, for nf_conntrack_max and the hash table, more) is not written, so
// portico starts; anything it would have to change is an error naming the field, the
// sysctl and the value, and kube-proxy exits on it.
func TestReadOnlyProcSys(t *testing.T) {
	ro := []string{maxPath, hashsizePath, establishedPath, closeWaitPath, liberalPath, udpPath, udpStreamPath}
	satisfied := withDefaults(map[string]string{
		maxPath: "1048576", hashsizePath: "262144", establishedPath: "86400", closeWaitPath: "3600",
		liberalPath: "1", udpPath: "45", udpStreamPath: "150",
	})
	n, files := newReadOnly(fakeTree(t, satisfied), ro...)
	if err := n.Apply(t.Context(), Settings{Conntrack: kubeadmConntrack}); err != nil {
		t.Fatalf("Apply with every value already in place: %v", err)
	}
	if len(files.writes) != 0 {
		t.Errorf("wrote %v although every value was in place", files.writes)
	}

	for _, tc := range []struct {
		path, value string
		want        []string
	}{
		{maxPath, "65536", []string{"conntrack.maxPerCore (32768) and conntrack.min (131072)", "net.netfilter.nf_conntrack_max to 131072", "read-only file system"}},
		{hashsizePath, "1024", []string{"conntrack.maxPerCore", "hash table size", "to 32768", "read-only file system"}},
		{establishedPath, "432000", []string{"conntrack.tcpEstablishedTimeout: setting sysctl net.netfilter.nf_conntrack_tcp_timeout_established to 86400", "read-only file system"}},
		{closeWaitPath, "60", []string{"conntrack.tcpCloseWaitTimeout", "nf_conntrack_tcp_timeout_close_wait to 3600"}},
		{liberalPath, "0", []string{"conntrack.tcpBeLiberal", "nf_conntrack_tcp_be_liberal to 1"}},
		{udpPath, "30", []string{"conntrack.udpTimeout", "nf_conntrack_udp_timeout to 45"}},
		{udpStreamPath, "120", []string{"conntrack.udpStreamTimeout", "nf_conntrack_udp_timeout_stream to 150"}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			n, _ := newReadOnly(fakeTree(t, withDefaults(map[string]string{
				maxPath: "1048576", hashsizePath: "262144", establishedPath: "86400", closeWaitPath: "3600",
				liberalPath: "1", udpPath: "45", udpStreamPath: "150", tc.path: tc.value,
			})), ro...)
			err := n.Apply(t.Context(), Settings{Conntrack: kubeadmConntrack})
			if !errors.Is(err, syscall.EROFS) {
				t.Fatalf("Apply error %v, want one wrapping EROFS", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestMissingSysctl: a sysctl the kernel does not have (nf_conntrack not loaded, say) is
// an error, and nothing is created in its place.
func TestMissingSysctl(t *testing.T) {
	tree := withDefaults(nil)
	delete(tree, udpPath)
	root := fakeTree(t, tree)
	err := New(root).Apply(t.Context(), Settings{Conntrack: Conntrack{UDPTimeout: time.Minute}})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "conntrack.udpTimeout") {
		t.Errorf("Apply error %v, want one naming conntrack.udpTimeout and wrapping ErrNotExist", err)
	}
	checkTree(t, root, map[string]string{udpPath: "<absent>"})
}

func TestRouteLocalnet(t *testing.T) {
	root := fakeTree(t, withDefaults(map[string]string{localnetPath: "0\n"}))
	if err := New(root).Apply(t.Context(), Settings{}); err != nil {
		t.Fatal(err)
	}
	checkTree(t, root, map[string]string{localnetPath: "0"})
	if err := New(root).Apply(t.Context(), Settings{RouteLocalnet: true}); err != nil {
		t.Fatal(err)
	}
	checkTree(t, root, map[string]string{localnetPath: "1"})

	n, _ := newReadOnly(fakeTree(t, withDefaults(map[string]string{localnetPath: "0\n"})), localnetPath)
	err := n.Apply(t.Context(), Settings{RouteLocalnet: true})
	if !errors.Is(err, syscall.EROFS) || !strings.Contains(err.Error(), "iptables.localhostNodePorts: setting sysctl net.ipv4.conf.all.route_localnet to 1") {
		t.Errorf("Apply error %v, want one naming iptables.localhostNodePorts and route_localnet", err)
	}
}

func TestIPVSSysctls(t *testing.T) {
	ipvsTree := func(kernel string) map[string]string {
		return withDefaults(map[string]string{
			osReleasePath:                                    kernel + "\n",
			"proc/sys/net/ipv4/vs/conntrack":                 "0",
			"proc/sys/net/ipv4/vs/conn_reuse_mode":           "1",
			"proc/sys/net/ipv4/vs/expire_nodest_conn":        "0",
			"proc/sys/net/ipv4/vs/expire_quiescent_template": "0",
			"proc/sys/net/ipv4/ip_forward":                   "0",
			"proc/sys/net/ipv4/conf/all/arp_ignore":          "0",
			"proc/sys/net/ipv4/conf/all/arp_announce":        "0",
		})
	}
	for _, tc := range []struct {
		kernel    string
		strictARP bool
		reuse     string
		arp       [2]string
	}{
		{"5.4.0-150-generic", false, "0", [2]string{"0", "0"}},
		{"5.9.0", true, "1", [2]string{"1", "2"}},
		{"6.18.44-fc-v1252", false, "1", [2]string{"0", "0"}},
		{"4.0.9", false, "1", [2]string{"0", "0"}},
	} {
		t.Run(tc.kernel, func(t *testing.T) {
			root := fakeTree(t, ipvsTree(tc.kernel))
			if err := New(root).Apply(t.Context(), Settings{IPVS: true, StrictARP: tc.strictARP}); err != nil {
				t.Fatal(err)
			}
			checkTree(t, root, map[string]string{
				"proc/sys/net/ipv4/vs/conntrack":                 "1",
				"proc/sys/net/ipv4/vs/conn_reuse_mode":           tc.reuse,
				"proc/sys/net/ipv4/vs/expire_nodest_conn":        "1",
				"proc/sys/net/ipv4/vs/expire_quiescent_template": "1",
				"proc/sys/net/ipv4/ip_forward":                   "1",
				"proc/sys/net/ipv4/conf/all/arp_ignore":          tc.arp[0],
				"proc/sys/net/ipv4/conf/all/arp_announce":        tc.arp[1],
			})
		})
	}
}

func TestOOMScoreAdj(t *testing.T) {
	root := fakeTree(t, kernelDefaults)
	if err := New(root).SetOOMScoreAdj(t.Context(), -999); err != nil {
		t.Fatalf("SetOOMScoreAdj: %v", err)
	}
	checkTree(t, root, map[string]string{oomScoreAdjPath: "-999"})

	err := New(t.TempDir()).SetOOMScoreAdj(t.Context(), -999)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "oomScoreAdj") {
		t.Errorf("without the file: error %v, want one naming oomScoreAdj and wrapping ErrNotExist", err)
	}

	n, files := newReadOnly(fakeTree(t, kernelDefaults), oomScoreAdjPath)
	err = n.SetOOMScoreAdj(t.Context(), -999)
	if !errors.Is(err, syscall.EROFS) || !strings.Contains(err.Error(), "oomScoreAdj: setting /proc/self/oom_score_adj to -999") {
		t.Errorf("read-only: error %v, want one naming the field, the file and the value", err)
	}
	if files.writes[oomScoreAdjPath] != 2 {
		t.Errorf("read-only: %d attempts, want 2 (kube-proxy tries twice)", files.writes[oomScoreAdjPath])
	}

	// Without CAP_SYS_RESOURCE the kernel refuses a lower value: final, tried once.
	n, files = newReadOnly(fakeTree(t, kernelDefaults), oomScoreAdjPath)
	files.errno = syscall.EACCES
	start := time.Now()
	err = n.SetOOMScoreAdj(t.Context(), -999)
	if !errors.Is(err, fs.ErrPermission) || files.writes[oomScoreAdjPath] != 1 {
		t.Errorf("permission denied: error %v after %d attempts, want ErrPermission after 1", err, files.writes[oomScoreAdjPath])
	}
	if d := time.Since(start); d >= oomRetry {
		t.Errorf("permission denied: took %v, want no wait for a retry", d)
	}
}
