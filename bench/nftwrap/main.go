// Command nftwrap stands in for the kernel tools in a proxy's PATH during `make bench`:
// nft, and in iptables mode the iptables, ip6tables and ipset commands. Named after the tool
// it stands for (a link to it), it runs the real tool with the same arguments, stdin, stdout
// and stderr, waits for it, appends one line about the run to $NFTWRAP_LOG and exits with
// the tool's status. The line is
//
//	<unix ns at exit> <maxrss KiB> <wall µs> <user µs> <sys µs> <exit code> <stdin bytes> <stdin lines> <args...>
//
// where args are nft's arguments as given, and for any other tool its name first, so that
// the benchmark reads the exact peak RSS of every process a proxy ran, and how much input
// each restore got. The real tool is $NFTWRAP_REAL for nft (default /usr/sbin/nft), else the
// tool's name searched in $NFTWRAP_SYSPATH (default the system directories). With
// $NFTWRAP_IPTABLES set to nft or legacy, the plain names kube-proxy runs (iptables,
// iptables-save, iptables-restore and their ip6tables twins) run that variant's program, as
// the alternatives system of a host set to that variant would. It is kept tiny (standard
// library only) so that it adds little to each run.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const defaultSysPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func main() {
	name := filepath.Base(os.Args[0])
	real, logArgs, err := resolve(name, os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "nftwrap: %v\n", err)
		os.Exit(127)
	}
	cmd := exec.Command(real, os.Args[1:]...)
	cmd.Args[0] = filepath.Base(real) // multi-call binaries (xtables-*-multi) dispatch on it
	if name == "nft" {
		cmd.Args[0] = "nft"
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	in := &counter{r: os.Stdin}
	if readsStdin(name, os.Args[1:]) {
		cmd.Stdin = in // exec copies it to the tool through a pipe, counting on the way
	}
	// The tool dies with the wrapper (a proxy's context cancellation kills the wrapper).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "nftwrap: %v\n", err)
		os.Exit(127)
	}
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	code := exitCode(err)
	logRun(cmd, time.Since(start), code, in, logArgs)
	os.Exit(code)
}

// resolve finds the real program for the wrapper's name and returns it with the
// arguments to log.
func resolve(name string, args []string) (string, []string, error) {
	if name == "nft" {
		real := os.Getenv("NFTWRAP_REAL")
		if real == "" {
			real = "/usr/sbin/nft"
		}
		return real, args, nil
	}
	target := variantName(name, os.Getenv("NFTWRAP_IPTABLES"))
	sysPath := os.Getenv("NFTWRAP_SYSPATH")
	if sysPath == "" {
		sysPath = defaultSysPath
	}
	for _, dir := range filepath.SplitList(sysPath) {
		p := filepath.Join(dir, target)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, append([]string{target}, args...), nil
		}
	}
	return "", nil, fmt.Errorf("%s: %w", target, exec.ErrNotFound)
}

// variantName maps a plain iptables command to variant v's ("iptables-restore" with "nft":
// "iptables-nft-restore"); other names, and every name without a variant, are kept.
func variantName(name, v string) string {
	if v == "" {
		return name
	}
	for _, base := range []string{"iptables", "ip6tables"} {
		switch name {
		case base:
			return base + "-" + v
		case base + "-save", base + "-restore":
			return base + "-" + v + strings.TrimPrefix(name, base)
		}
	}
	return name
}

// exitCode turns Wait's error into the tool's exit code (128+signal when killed).
func exitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code := ee.ExitCode()
		if code < 0 {
			code = 128 + int(ee.Sys().(syscall.WaitStatus).Signal())
		}
		return code
	case err != nil:
		return 126
	}
	return 0
}

// logRun appends the run's line to $NFTWRAP_LOG.
func logRun(cmd *exec.Cmd, wall time.Duration, code int, in *counter, args []string) {
	path := os.Getenv("NFTWRAP_LOG")
	if path == "" {
		return
	}
	var maxrss, user, sys int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		maxrss = ru.Maxrss // KiB on Linux
		user = ru.Utime.Sec*1e6 + ru.Utime.Usec
		sys = ru.Stime.Sec*1e6 + ru.Stime.Usec
	}
	line := fmt.Sprintf("%d %d %d %d %d %d %d %d %s\n", time.Now().UnixNano(), maxrss, wall.Microseconds(),
		user, sys, code, in.bytes, in.lines, strings.Join(args, " "))
	// One write of a short line with O_APPEND: lines of concurrent runs do not mix.
	if f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		_, _ = f.WriteString(line)
		_ = f.Close()
	}
}

// readsStdin reports whether the tool reads its commands from stdin: nft with -f - (or
// --file -), every *-restore without a file argument, and ipset restore.
func readsStdin(name string, args []string) bool {
	switch {
	case name == "nft":
		for i := 0; i+1 < len(args); i++ {
			if (args[i] == "-f" || args[i] == "--file") && args[i+1] == "-" {
				return true
			}
		}
		return false
	case strings.HasSuffix(name, "-restore"):
		for _, a := range args {
			if !strings.HasPrefix(a, "-") && !isNumber(a) {
				return false // a file argument
			}
		}
		return true
	case name == "ipset":
		for _, a := range args {
			if a == "-file" || a == "-f" {
				return false
			}
			if a == "restore" || a == "-R" {
				return true
			}
		}
	}
	return false
}

func isNumber(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// counter counts the bytes and lines read through it.
type counter struct {
	r            io.Reader
	bytes, lines int64
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.bytes += int64(n)
	c.lines += int64(bytes.Count(p[:n], []byte{'\n'}))
	return n, err
}
