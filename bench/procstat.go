package bench

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times (100 on every Linux
// architecture Go supports).
const clockTicks = 100

// ProcSample is a process's memory and CPU at one moment.
type ProcSample struct {
	At time.Time `json:"at"`
	// HWMKiB is VmHWM (peak resident set), RSSKiB VmRSS, from /proc/<pid>/status.
	HWMKiB int64 `json:"hwm_kib"`
	RSSKiB int64 `json:"rss_kib"`
	// CPU seconds from /proc/<pid>/stat: utime+stime of the process, cutime+cstime of
	// its children that it waited for (nft runs, for portico).
	UserS     float64 `json:"user_s"`
	SysS      float64 `json:"sys_s"`
	ChildUser float64 `json:"child_user_s"`
	ChildSys  float64 `json:"child_sys_s"`
	Threads   int     `json:"threads"`
}

// CPU returns all four CPU times summed.
func (p ProcSample) CPU() float64 { return p.UserS + p.SysS + p.ChildUser + p.ChildSys }

// SampleProc reads /proc/<pid>/status and /proc/<pid>/stat.
func SampleProc(pid int) (ProcSample, error) {
	s := ProcSample{At: time.Now()}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	sc := bufio.NewScanner(strings.NewReader(string(st)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmHWM:":
			s.HWMKiB = v
		case "VmRSS:":
			s.RSSKiB = v
		case "Threads:":
			s.Threads = int(v)
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	str := string(b)
	i := strings.LastIndexByte(str, ')')
	if i < 0 {
		return s, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(str[i+1:])
	// fields after ")" start at field 3; utime is field 14.
	if len(f) < 15 {
		return s, fmt.Errorf("short /proc/%d/stat", pid)
	}
	tick := func(k int) float64 {
		v, _ := strconv.ParseFloat(f[k-3], 64)
		return v / clockTicks
	}
	s.UserS, s.SysS, s.ChildUser, s.ChildSys = tick(14), tick(15), tick(16), tick(17)
	return s, nil
}

// LoadAvg returns the first three fields of /proc/loadavg.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return strings.TrimSpace(string(b))
	}
	return strings.Join(f[:3], " ")
}

// Machine describes the host and the software under test.
type Machine struct {
	CPUModel      string  `json:"cpu_model"`
	Cores         int     `json:"cores"`
	MemoryGiB     float64 `json:"memory_gib"`
	Kernel        string  `json:"kernel"`
	NFT           string  `json:"nft"`
	IPTablesNFT   string  `json:"iptables_nft,omitempty"`
	IPTablesLeg   string  `json:"iptables_legacy,omitempty"`
	IPSet         string  `json:"ipset,omitempty"`
	Go            string  `json:"go"`
	KubeProxy     string  `json:"kube_proxy"`
	KubeAPIServer string  `json:"kube_apiserver"`
	Portico       string  `json:"portico"`
	PorticoCommit string  `json:"portico_commit"`
	PorticoSHA256 string  `json:"portico_sha256"`
	Hostname      string  `json:"hostname"`
}

func cmdOut(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return "unknown (" + strings.TrimSpace(err.Error()) + ")"
	}
	return strings.TrimSpace(string(out))
}

// DescribeMachine collects the machine and version information.
func DescribeMachine(porticoBin, binDir string) Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				kib, _ := strconv.ParseFloat(f[1], 64)
				m.MemoryGiB = kib / (1 << 20)
			}
		}
	}
	m.Kernel = cmdOut("uname", "-r")
	m.NFT = cmdOut("nft", "--version")
	m.IPTablesNFT = cmdOut("iptables-nft", "--version")
	m.IPTablesLeg = cmdOut("iptables-legacy", "--version")
	m.IPSet = cmdOut("ipset", "--version")
	if gv := cmdOut("go", "version"); strings.HasPrefix(gv, "go version") {
		m.Go = strings.TrimPrefix(gv, "go version ")
	}
	m.KubeProxy = cmdOut(binDir+"/kube-proxy", "--version")
	m.KubeAPIServer = cmdOut(binDir+"/kube-apiserver", "--version")
	m.Portico = cmdOut(porticoBin, "version")
	commit := cmdOut("git", "rev-parse", "HEAD")
	if st := cmdOut("git", "status", "--porcelain", "--untracked-files=no"); st != "" && !strings.HasPrefix(st, "unknown") {
		commit += " (working tree has uncommitted changes)"
	}
	m.PorticoCommit = commit
	m.Hostname, _ = os.Hostname()
	return m
}

// cpuTimes reads the aggregate "cpu" line of /proc/stat: idle (idle+iowait) and total
// jiffies.
func cpuTimes() (idle, total float64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("unexpected /proc/stat")
	}
	for i, v := range f[1:] {
		x, _ := strconv.ParseFloat(v, 64)
		if i == 7 { // steal and the guest fields are not time of this machine's work
			break
		}
		total += x
		if i == 3 || i == 4 {
			idle += x
		}
	}
	return idle, total, nil
}

// WaitIdle waits until the machine's CPUs were at least minIdle idle over a window (the
// kernel frees large rulesets in the background after a namespace or table goes away),
// for at most maxWait. It returns the time waited and the last window's idle fraction.
func WaitIdle(minIdle float64, window, maxWait time.Duration) (time.Duration, float64) {
	start := time.Now()
	frac := 0.0
	for time.Since(start) < maxWait {
		i0, t0, err := cpuTimes()
		if err != nil {
			return time.Since(start), 0
		}
		time.Sleep(window)
		i1, t1, err := cpuTimes()
		if err != nil || t1 <= t0 {
			return time.Since(start), 0
		}
		frac = (i1 - i0) / (t1 - t0)
		if frac >= minIdle {
			break
		}
	}
	return time.Since(start), frac
}
