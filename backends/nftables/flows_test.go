package nftables

import (
	"context"
	"testing"

	"sigs.k8s.io/knftables"

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
			fakes := map[model.Family]*knftables.Fake{
				model.IPv4: knftables.NewFake(knftables.IPv4Family, tableName),
				model.IPv6: knftables.NewFake(knftables.IPv6Family, tableName),
			}
			b := New(backends.Options{MasqueradeBit: 14, Families: []model.Family{model.IPv4, model.IPv6}},
				WithInterfaces(
					func(f model.Family) (knftables.Interface, error) { return fakes[f], nil },
					func(_ context.Context, f model.Family) (string, error) { return fakes[f].Dump(), nil },
				))
			return b, func(f model.Family) backendtest.Tracer { return nfttrace.New(fakes[f], f, host) }
		},
	})
}
