package backends

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers a backend's metric c (called name in errors) in reg and returns it,
// or the equal collector reg already holds (a second backend on the same registry shares
// it). Any other error is appended to errs and c is returned unregistered, still
// recording.
func Register[C prometheus.Collector](reg prometheus.Registerer, name string, c C, errs *[]error) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	*errs = append(*errs, fmt.Errorf("registering %s: %w", name, err))
	return c
}
