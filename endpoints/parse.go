package endpoints

import (
	"fmt"
	"net/netip"
	"slices"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/portico-dev/portico/model"
)

// slicePort is one valid port of an EndpointSlice.
type slicePort struct {
	key    PortKey
	number uint16
}

// parsePorts returns the valid ports of slice s, recording a problem for each invalid one.
func (m *merger) parsePorts(s *discoveryv1.EndpointSlice) []slicePort {
	out := make([]slicePort, 0, len(s.Ports))
	for i, p := range s.Ports {
		sp, ok, prob := parsePort(i, p)
		if prob != nil {
			m.fail(s, prob)
		}
		if ok {
			out = append(out, sp)
		}
	}
	return out
}

// parsePort converts the i-th port of a slice. It returns ok=false without a problem for
// a port with no number (kube-proxy ignores those too).
func parsePort(i int, p discoveryv1.EndpointPort) (slicePort, bool, *Problem) {
	if p.Port == nil {
		return slicePort{}, false, nil
	}
	if n := *p.Port; n < 1 || n > 65535 {
		return slicePort{}, false, &Problem{Field: fmt.Sprintf("ports[%d].port", i), Value: n, Reason: "is out of range 1-65535"}
	}
	proto := model.TCP
	if p.Protocol != nil {
		var err error
		if proto, err = model.ParseProtocol(string(*p.Protocol)); err != nil {
			return slicePort{}, false, &Problem{Field: fmt.Sprintf("ports[%d].protocol", i), Value: string(*p.Protocol), Reason: "is not one of TCP, UDP, SCTP"}
		}
	}
	name := ""
	if p.Name != nil {
		name = *p.Name
	}
	return slicePort{key: PortKey{Name: name, Protocol: proto}, number: uint16(*p.Port)}, true, nil
}

// parseEndpoints returns the valid endpoints of slice s (with no port set yet),
// recording a problem for each invalid one.
func (m *merger) parseEndpoints(s *discoveryv1.EndpointSlice) []candidate {
	out := make([]candidate, 0, len(s.Endpoints))
	for i, ep := range s.Endpoints {
		e, p := parseEndpoint(i, ep, m.family, m.nodeName)
		if p != nil {
			m.fail(s, p)
			continue
		}
		out = append(out, candidate{ep: e, index: i})
	}
	return out
}

// parseEndpoint converts the i-th endpoint of a slice of the given family.
func parseEndpoint(i int, ep discoveryv1.Endpoint, family model.Family, nodeName string) (Endpoint, *Problem) {
	addr, p := parseAddress(i, ep.Addresses, family)
	if p != nil {
		return Endpoint{}, p
	}
	c := ep.Conditions
	e := Endpoint{
		Endpoint: model.Endpoint{
			Addr: addr,
			// The API's defaults: a nil ready or serving means true.
			Ready:       c.Ready == nil || *c.Ready,
			Serving:     c.Serving == nil || *c.Serving,
			Terminating: c.Terminating != nil && *c.Terminating,
		},
		NodeName: deref(ep.NodeName),
		Zone:     deref(ep.Zone),
	}
	// An endpoint without a nodeName is never local, even on a node with no name.
	e.Local = ep.NodeName != nil && nodeName != "" && *ep.NodeName == nodeName
	if h := ep.Hints; h != nil {
		e.ZoneHints = hintNames(h.ForZones, func(z discoveryv1.ForZone) string { return z.Name })
		e.NodeHints = hintNames(h.ForNodes, func(n discoveryv1.ForNode) string { return n.Name })
	}
	return e, nil
}

// parseAddress parses the first address of the i-th endpoint, which must belong to
// family. The other addresses are ignored, as kube-proxy does.
func parseAddress(i int, addrs []string, family model.Family) (netip.Addr, *Problem) {
	if len(addrs) == 0 {
		return netip.Addr{}, &Problem{Field: fmt.Sprintf("endpoints[%d].addresses", i), Reason: "must have at least one address"}
	}
	addr, err := netip.ParseAddr(addrs[0])
	if err != nil || addr.Zone() != "" || !family.Contains(addr) {
		return netip.Addr{}, &Problem{Field: fmt.Sprintf("endpoints[%d].addresses[0]", i), Value: addrs[0], Reason: "is not a valid " + family.String() + " address"}
	}
	return addr, nil
}

// hintNames returns the names of hints, sorted and without duplicates; nil when there
// are none.
func hintNames[T any](hints []T, name func(T) string) []string {
	if len(hints) == 0 {
		return nil
	}
	out := make([]string, 0, len(hints))
	for _, h := range hints {
		out = append(out, name(h))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// deref returns *s, or "" when s is nil.
func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
