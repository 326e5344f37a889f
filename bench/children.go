package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// descendants returns the PIDs of every process below pid (children first, then theirs),
// read from /proc/<pid>/stat's parent field.
func descendants(pid int) []int {
	parent := map[int][]int{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		child, _ := strconv.Atoi(filepath.Base(d))
		ppid, _ := strconv.Atoi(f[1])
		parent[ppid] = append(parent[ppid], child)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range parent[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// notExecuted reports whether process pid runs its parent's program: a child between
// its fork (Go forks with CLONE_VFORK|CLONE_VM) and its exec, which shares its parent's
// memory, so that its RSS is the parent's (sampling both counted the proxy twice).
func notExecuted(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return false
	}
	exe, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "exe"))
	if err != nil {
		return false
	}
	parentExe, err := os.Readlink(filepath.Join("/proc", f[1], "exe"))
	return err == nil && exe == parentExe
}

// runningChild is a process a proxy had started and that was still running.
type runningChild struct {
	PID    int    `json:"pid"`
	Name   string `json:"name"`
	HWMKiB int64  `json:"hwm_kib"`
}

// sampleChildren returns the proxy's running descendants with their peak RSS so far.
func sampleChildren(pid int) []runningChild {
	var out []runningChild
	for _, c := range descendants(pid) {
		s, err := SampleProc(c)
		if err != nil {
			continue
		}
		name, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", c))
		out = append(out, runningChild{PID: c, Name: strings.TrimSpace(string(name)), HWMKiB: s.HWMKiB})
	}
	return out
}

// killChildren sends SIGKILL to pid's descendants, the deepest first (a tool before its
// wrapper, so that the wrapper still logs the tool's peak RSS), and waits up to a second
// for them to go. They are the proxy's own children: started by this benchmark.
func killChildren(pid int) error {
	ds := descendants(pid)
	var errs []error
	for i := len(ds) - 1; i >= 0; i-- {
		if err := syscall.Kill(ds[i], syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("killing pid %d (a child of %d): %w", ds[i], pid, err))
		}
		time.Sleep(20 * time.Millisecond)
	}
	deadline := time.Now().Add(time.Second)
	for _, d := range ds {
		for time.Now().Before(deadline) {
			if err := syscall.Kill(d, 0); errors.Is(err, syscall.ESRCH) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return errors.Join(errs...)
}
