package backends

import (
	"context"
	"errors"

	"github.com/portico-dev/portico/model"
)

// ErrRulesMissing is wrapped by Verifier.Verify when a family's kernel objects are gone or
// were changed by someone else (a `nft flush ruleset`, a deleted or flushed table, a
// firewall reload): the kernel no longer holds what the last successful Sync wrote, and
// only a full Sync puts it back.
var ErrRulesMissing = errors.New("the rules are missing from the kernel or were changed by someone else")

// Verifier is implemented by backends that can tell cheaply whether the kernel still holds
// the objects of a family. The proxier calls Verify periodically for each family that had
// a successful Sync and no failed one since; on ErrRulesMissing it makes the next Sync of
// that family full and runs it at once.
type Verifier interface {
	// Verify checks the kernel objects of family f against what the last successful Sync
	// of f wrote. It returns nil when they are intact (or when no Sync of f has succeeded
	// yet: the next one is full anyway), an error wrapping ErrRulesMissing when they are
	// gone or altered, and any other error when it cannot tell. Its cost must not grow
	// with the number of Services: it reads a fixed part of the backend's objects, never
	// the whole table.
	Verify(ctx context.Context, f model.Family) error
}
