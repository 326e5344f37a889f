package ipsettest

import (
	"errors"
	"fmt"
)

// The reasons a restore line fails; a *RestoreError wraps one of them (test with errors.Is).
var (
	// ErrSyntax is a line the fake cannot parse: unknown command, missing or extra
	// argument, bad address, protocol or port.
	ErrSyntax = errors.New("syntax error")
	// ErrNoSet is a command naming a set that does not exist.
	ErrNoSet = errors.New("the set with the given name does not exist")
	// ErrSetExists is a create of an existing set with a different type, maxelem or timeout.
	ErrSetExists = errors.New("set cannot be created: set with the same name already exists")
	// ErrFamily is an address of the other family than the set's.
	ErrFamily = errors.New("address of the wrong family")
	// ErrFull is an add to a set that holds maxelem entries.
	ErrFull = errors.New("hash is full, cannot add more elements")
	// ErrSwap is a swap of two sets of different types or families.
	ErrSwap = errors.New("the sets cannot be swapped: their type does not match")
	// ErrUnsupported is something the real tool accepts and the fake does not model (see
	// the package comment).
	ErrUnsupported = errors.New("not supported by the fake")
)

// RestoreError is the error of a failed Restore: the 1-based number and text of the line
// that failed, and the reason.
type RestoreError struct {
	// Line is the 1-based number of the failed line.
	Line int
	// Text is the failed line as given.
	Text string
	// Err is the reason, wrapping one of the Err* values.
	Err error
}

// Error describes the failure like ipset restore does, with the line's text.
func (e *RestoreError) Error() string {
	return fmt.Sprintf("Error in line %d: %v: %q", e.Line, e.Err, e.Text)
}

// Unwrap returns the reason.
func (e *RestoreError) Unwrap() error { return e.Err }
