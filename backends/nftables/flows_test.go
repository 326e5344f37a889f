package nftables

import (
	"testing"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/backends/nftables/nfttrace"
	"github.com/portico-dev/portico/model"
)

// TestFlows runs every flow of the backend-neutral packet-flow table through the rules
// this backend renders into knftables.Fake, with the nftables packet tracer: the same
// table the e2e suite runs with real packets.
func TestFlows(t *testing.T) {
	backendtest.RunFlows(t, backendtest.Subject{
		New: func(t *testing.T, host backendtest.Host) (backends.Backend, func(model.Family) backendtest.Tracer) {
			b, fakes := fakeBackend(t)
			return b, func(f model.Family) backendtest.Tracer { return nfttrace.New(fakes[f], f, host) }
		},
	})
}
