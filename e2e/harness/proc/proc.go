// Package proc runs the long-lived processes of the e2e harness (etcd, kube-apiserver,
// portico, ...), optionally inside a network namespace, with their output in a log file.
package proc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is one long-running binary, optionally inside a network namespace (through
// `ip netns exec`, which execs in place, so the PID is the binary's). It can be started
// again after it stopped; its log file is appended to.
type Process struct {
	name    string
	argv    []string
	ns      string // full namespace name; "" runs in the caller's namespace
	logPath string
	// Detach, when set before Start, lets the process outlive the caller (no
	// parent-death signal), for environments kept running after the caller exits.
	Detach bool

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the current run has been waited for
	err  error         // the current run's Wait result
}

// New returns a Process named name that runs argv in namespace ns ("" for the caller's)
// with its output appended to logPath. Nothing starts before Start.
func New(name, ns, logPath string, argv []string) *Process {
	return &Process{name: name, ns: ns, logPath: logPath, argv: argv}
}

// Name returns the process's name.
func (p *Process) Name() string { return p.name }

// LogPath returns the path of the process's log file.
func (p *Process) LogPath() string { return p.logPath }

// Start launches the process. Unless Detach is set, the child gets SIGKILL if the caller
// dies; it always gets its own process group, so that a terminal's ^C reaches only the
// caller.
func (p *Process) Start() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !isClosed(p.done) {
		return 0, fmt.Errorf("proc: %s already running (pid %d)", p.name, p.cmd.Process.Pid)
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("proc: %s log: %w", p.name, err)
	}
	fmt.Fprintf(logf, "=== %s starting at %s: %s\n", p.name, time.Now().Format(time.RFC3339Nano), strings.Join(p.argv, " "))
	argv := p.argv
	if p.ns != "" {
		argv = append([]string{"ip", "netns", "exec", p.ns}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if p.Detach {
		cmd.SysProcAttr.Pdeathsig = 0
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return 0, fmt.Errorf("proc: start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.err = cmd, done, nil
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return cmd.Process.Pid, nil
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Exited returns a channel closed when the current run ends (nil if never started).
func (p *Process) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// ExitErr returns the current run's exit status once it ended.
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// PID returns the current run's PID, 0 if never started.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Running reports whether the current run is alive.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !isClosed(p.done)
}

// Stop sends SIGTERM, then SIGKILL after grace, and waits for the process to be reaped.
// Stopping a process that is not running is a no-op.
func (p *Process) Stop(grace time.Duration) error {
	return p.signalAndWait(syscall.SIGTERM, grace)
}

// Kill sends SIGKILL at once (a crash) and waits for the process to be reaped.
func (p *Process) Kill(grace time.Duration) error {
	return p.signalAndWait(syscall.SIGKILL, grace)
}

func (p *Process) signalAndWait(sig syscall.Signal, grace time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || isClosed(done) {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return nil
	case <-time.After(grace):
	}
	_ = cmd.Process.Kill()
	select {
	case <-done:
		return nil
	case <-time.After(grace):
		return fmt.Errorf("proc: %s (pid %d) still alive after SIGKILL", p.name, cmd.Process.Pid)
	}
}

// Tail returns the last n lines of the process's log.
func (p *Process) Tail(n int) string {
	return TailFile(p.logPath, n)
}

// TailFile returns the last n lines of a file (read from its last 16 KiB).
func TailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	const window = 16 << 10
	if st, err := f.Stat(); err == nil && st.Size() > window {
		_, _ = f.Seek(-window, io.SeekEnd)
	}
	b, err := io.ReadAll(f)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Sprintf("(log unreadable: %v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
