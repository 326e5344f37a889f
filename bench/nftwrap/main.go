// Command nftwrap stands in for nft in a proxy's PATH during `make bench`: it runs the real
// nft ($NFTWRAP_REAL, default /usr/sbin/nft) with the same arguments, stdin, stdout and
// stderr, waits for it, appends one line about the run to $NFTWRAP_LOG and exits with nft's
// status. The line is
//
//	<unix ns at exit> <maxrss KiB> <wall µs> <user µs> <sys µs> <exit code> <stdin bytes> <stdin lines> <args...>
//
// so that the benchmark reads the exact peak RSS of every nft process a proxy ran, and how
// much input each `nft -f -` got. It is kept tiny (standard library only) so that it adds
// little to each nft run.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	real := os.Getenv("NFTWRAP_REAL")
	if real == "" {
		real = "/usr/sbin/nft"
	}
	cmd := exec.Command(real, os.Args[1:]...)
	cmd.Args[0] = "nft"
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	in := &counter{r: os.Stdin}
	if readsStdin(os.Args[1:]) {
		cmd.Stdin = in // exec copies it to nft through a pipe, counting on the way
	}
	// nft dies with the wrapper (a proxy's context cancellation kills the wrapper).
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
	err := cmd.Wait()
	wall := time.Since(start)
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
		if code < 0 {
			code = 128 + int(ee.Sys().(syscall.WaitStatus).Signal())
		}
	case err != nil:
		code = 126
	}
	if path := os.Getenv("NFTWRAP_LOG"); path != "" {
		var maxrss, user, sys int64
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			maxrss = ru.Maxrss // KiB on Linux
			user = ru.Utime.Sec*1e6 + ru.Utime.Usec
			sys = ru.Stime.Sec*1e6 + ru.Stime.Usec
		}
		line := fmt.Sprintf("%d %d %d %d %d %d %d %d %s\n", time.Now().UnixNano(), maxrss, wall.Microseconds(),
			user, sys, code, in.bytes, in.lines, strings.Join(os.Args[1:], " "))
		// One write of a short line with O_APPEND: lines of concurrent runs do not mix.
		if f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
			_, _ = f.WriteString(line)
			_ = f.Close()
		}
	}
	os.Exit(code)
}

// readsStdin reports whether nft reads its commands from stdin (-f - or --file -).
func readsStdin(args []string) bool {
	for i := 0; i+1 < len(args); i++ {
		if (args[i] == "-f" || args[i] == "--file") && args[i+1] == "-" {
			return true
		}
	}
	return false
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
