package iptables

import (
	"testing"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/backends/iptables/iptrace"
	"github.com/portico-dev/portico/model"
)

// TestFlows runs every flow of the backend-neutral packet-flow table through the rules
// and sets this backend writes into the fakes of iptables-restore and ipset, with the
// iptables packet tracer: the same table the e2e suite runs with real packets.
func TestFlows(t *testing.T) {
	backendtest.RunFlows(t, backendtest.Subject{
		New: func(t *testing.T, host backendtest.Host) (backends.Backend, func(model.Family) backendtest.Tracer) {
			b, k := fakeBackend(t)
			return b, func(f model.Family) backendtest.Tracer { return iptrace.New(k.rs[f], k.sets, f, host) }
		},
	})
}
