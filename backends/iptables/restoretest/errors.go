package restoretest

import (
	"errors"
	"fmt"
)

// The reasons a restore fails; a *RestoreError wraps one of them (test with errors.Is).
var (
	// ErrSyntax is a line the fake cannot parse (bad option, missing argument, ...).
	ErrSyntax = errors.New("bad argument")
	// ErrUnknownTable is a `*table` line naming a table other than filter, nat, mangle, raw.
	ErrUnknownTable = errors.New("table name invalid")
	// ErrOutsideTable is a chain or rule line (or COMMIT) outside a `*table` block.
	ErrOutsideTable = errors.New("line outside a table")
	// ErrNoCommit is a `*table` block that the input ends (or a new `*table` line opens) before its COMMIT.
	ErrNoCommit = errors.New("COMMIT expected")
	// ErrNoChain is a reference to a chain that does not exist (rule, -F, -X, -j/-g target).
	ErrNoChain = errors.New("no chain/target/match by that name")
	// ErrChainExists is -N of a chain that exists.
	ErrChainExists = errors.New("chain already exists")
	// ErrChainBusy is -X of a chain that rules jump to.
	ErrChainBusy = errors.New("chain is referenced")
	// ErrChainNotEmpty is -X of a chain that still holds rules.
	ErrChainNotEmpty = errors.New("chain is not empty")
	// ErrBuiltinChain is -X of a built-in chain.
	ErrBuiltinChain = errors.New("cannot delete a built-in chain")
	// ErrBadPolicy is a policy other than ACCEPT or DROP on a built-in chain, or a policy on a user chain.
	ErrBadPolicy = errors.New("bad policy")
	// ErrBadIndex is a rule number out of range for -I, -R or -D.
	ErrBadIndex = errors.New("index out of range")
	// ErrNoMatch is -D by rule specification of a rule the chain does not hold.
	ErrNoMatch = errors.New("bad rule (does a matching rule exist in that chain?)")
)

// RestoreError is the error of a failed Restore: the 1-based line number and the text of
// the line that failed, and the reason.
type RestoreError struct {
	// Line is the 1-based number of the line that failed (for ErrNoCommit at the end of
	// the input, one past the last line, as iptables-restore reports it).
	Line int
	// Text is the failing line as given, "" past the end of the input.
	Text string
	// Err is the reason, wrapping one of the Err* values.
	Err error
}

// Error describes the failure like iptables-restore, with the line's text.
func (e *RestoreError) Error() string {
	return fmt.Sprintf("line %d failed: %v: %q", e.Line, e.Err, e.Text)
}

// Unwrap returns the reason.
func (e *RestoreError) Unwrap() error { return e.Err }
