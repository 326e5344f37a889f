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

// ExecRunner runs commands with os/exec, in the network namespace of the calling thread.
type ExecRunner struct{}

// Run runs the command. A program that is not installed yields an error wrapping
// exec.ErrNotFound (so backends.IsNotInstalled holds for it).
func (ExecRunner) Run(ctx context.Context, name string, args []string, stdin io.Reader) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &stdout, &stderr, stdin
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err,
			strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}
