package backends

import (
	"errors"
	"fmt"
	"strings"

	"github.com/portico-dev/portico/model"
)

// SkippedError is what Backend.Sync returns when it programmed everything of the table
// except some Service ports: ports whose objects the backend could not render, or that
// the kernel rejected. A skipped port has no rules in the kernel; every other port of the
// table is programmed, so the caller treats the Sync as a success (the next Sync of the
// family need not be full).
//
// The backend keeps trying a skipped port: when a Diff names it again, in every full
// Sync, and after a backoff, which it reports through Deferrer.PendingWork. Ports lists
// the ports this Sync tried and could not program, each once.
type SkippedError struct {
	// Family is the IP family of the table.
	Family model.Family
	// Ports are the skipped ports, sorted by name.
	Ports []SkippedPort
}

// SkippedPort is one Service port that a Sync could not program, and why.
type SkippedPort struct {
	// Name is the Service port.
	Name model.ServicePortName
	// Err says why: the field and value the backend cannot render, or the kernel's
	// message.
	Err error
}

// Error names the port and the reason.
func (p SkippedPort) Error() string {
	return fmt.Sprintf("Service port %s: %v", p.Name, p.Err)
}

// Unwrap returns the reason.
func (p SkippedPort) Unwrap() error { return p.Err }

// Error lists the skipped ports.
func (e *SkippedError) Error() string {
	parts := make([]string, len(e.Ports))
	for i, p := range e.Ports {
		parts[i] = p.Error()
	}
	return fmt.Sprintf("%s: %d Service port(s) not programmed, the others are: %s",
		e.Family, len(e.Ports), strings.Join(parts, "; "))
}

// Unwrap returns the error of each skipped port.
func (e *SkippedError) Unwrap() []error {
	out := make([]error, len(e.Ports))
	for i, p := range e.Ports {
		out[i] = p
	}
	return out
}

// AsSkipped returns the SkippedError in err's chain, if there is one.
func AsSkipped(err error) (*SkippedError, bool) {
	var s *SkippedError
	if errors.As(err, &s) {
		return s, true
	}
	return nil, false
}
