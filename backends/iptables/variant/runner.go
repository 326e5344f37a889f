package variant

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
)

// Runner runs one command and returns what it printed on stdout. Detection and version
// checks go through it so that unit tests can answer with a fake.
type Runner interface {
	// Run runs name with args, feeding stdin when it is not nil. A failure is returned
	// as an error that names the command and carries its stderr.
	Run(ctx context.Context, name string, args []string, stdin io.Reader) ([]byte, error)
}

// Starter is a Runner that can also start a command and wait for it later, so that
// several run at once.
type Starter interface {
	Runner
	// Start starts name with args on the calling thread, so in its network namespace, and
	// returns a function that waits for it (from any goroutine) with Run's result.
	Start(ctx context.Context, name string, args []string, stdin io.Reader) (wait func() ([]byte, error), err error)
}

// Start starts a command with run's Start, or, when run is not a Starter, runs it to the
// end at once and returns its result through wait.
func Start(ctx context.Context, run Runner, name string, args []string, stdin io.Reader) (func() ([]byte, error), error) {
	if s, ok := run.(Starter); ok {
		return s.Start(ctx, name, args, stdin)
	}
	out, err := run.Run(ctx, name, args, stdin)
	return func() ([]byte, error) { return out, err }, nil
}

// ExecRunner runs commands with os/exec, in the network namespace of the calling thread.
type ExecRunner struct{}

// Run runs the command. A program that is not installed yields an error wrapping
// exec.ErrNotFound (so backends.IsNotInstalled holds for it).
func (r ExecRunner) Run(ctx context.Context, name string, args []string, stdin io.Reader) ([]byte, error) {
	wait, err := r.Start(ctx, name, args, stdin)
	if err != nil {
		return nil, err
	}
	return wait()
}

// Start implements Starter: the program is forked from the calling thread.
func (ExecRunner) Start(ctx context.Context, name string, args []string, stdin io.Reader) (func() ([]byte, error), error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &stdout, &stderr, stdin
	failed := func(err error) error {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	if err := cmd.Start(); err != nil {
		return nil, failed(err)
	}
	return func() ([]byte, error) {
		if err := cmd.Wait(); err != nil {
			return stdout.Bytes(), failed(err)
		}
		return stdout.Bytes(), nil
	}, nil
}
