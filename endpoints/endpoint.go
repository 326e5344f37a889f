package endpoints

import (
	"cmp"

	"github.com/portico-dev/portico/model"
)

// Endpoint is one endpoint of a Service port as read from EndpointSlices: the model
// endpoint plus the topology data Categorize needs.
type Endpoint struct {
	// Endpoint holds the address, port, locality and conditions.
	model.Endpoint
	// NodeName is the endpoint's nodeName ("" if unset).
	NodeName string
	// Zone is the endpoint's zone ("" if unset).
	Zone string
	// ZoneHints are the names in hints.forZones, sorted and without duplicates.
	ZoneHints []string
	// NodeHints are the names in hints.forNodes, sorted and without duplicates.
	NodeHints []string
}

// PortKey identifies an endpoint port: the port name (the Service port name it serves)
// and its protocol.
type PortKey struct {
	// Name is the port's name; "" for an unnamed port.
	Name string
	// Protocol is the port's protocol.
	Protocol model.Protocol
}

// usable reports whether the endpoint may receive traffic at all: it is ready, or it is
// still serving while terminating.
func (e Endpoint) usable() bool {
	return e.Ready || e.servingTerminating()
}

// servingTerminating reports whether the endpoint is a fallback candidate: terminating
// but still able to serve.
func (e Endpoint) servingTerminating() bool {
	return e.Serving && e.Terminating
}

// compareModel orders model endpoints by address, then port (the model's order).
func compareModel(a, b model.Endpoint) int {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	return cmp.Compare(a.Port, b.Port)
}

// compareEndpoint orders endpoints by address, then port.
func compareEndpoint(a, b Endpoint) int {
	return compareModel(a.Endpoint, b.Endpoint)
}
