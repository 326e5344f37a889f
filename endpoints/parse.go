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

// parsePorts returns the valid ports of a slice, recording an error for each invalid one.
func (m *merger) parsePorts(slice string, ports []discoveryv1.EndpointPort) []slicePort {
	out := make([]slicePort, 0, len(ports))
	for i, p := range ports {
		sp, ok, err := parsePort(i, p)
		if err != nil {
			m.fail(slice, err)
		}
		if ok {
			out = append(out, sp)
		}
	}
	return out
}

// parsePort converts the i-th port of a slice. It returns ok=false without an error for
// a port with no number (kube-proxy ignores those too).
func parsePort(i int, p discoveryv1.EndpointPort) (slicePort, bool, error) {
	if p.Port == nil {
		return slicePort{}, false, nil
	}
	if n := *p.Port; n < 1 || n > 65535 {
		return slicePort{}, false, fmt.Errorf("ports[%d].port: %d is out of range 1-65535", i, n)
	}
	proto := model.TCP
	if p.Protocol != nil {
		var err error
		if proto, err = model.ParseProtocol(string(*p.Protocol)); err != nil {
			return slicePort{}, false, fmt.Errorf("ports[%d].protocol: %w", i, err)
		}
	}
	name := ""
	if p.Name != nil {
		name = *p.Name
	}
	return slicePort{key: PortKey{Name: name, Protocol: proto}, number: uint16(*p.Port)}, true, nil
}

// parseEndpoints returns the valid endpoints of a slice (with no port set yet),
// recording an error for each invalid one.
func (m *merger) parseEndpoints(slice string, eps []discoveryv1.Endpoint) []candidate {
	out := make([]candidate, 0, len(eps))
	for i, ep := range eps {
		e, err := parseEndpoint(i, ep, m.family, m.nodeName)
		if err != nil {
			m.fail(slice, err)
			continue
		}
		out = append(out, candidate{ep: e, index: i})
	}
	return out
}

// parseEndpoint converts the i-th endpoint of a slice of the given family.
func parseEndpoint(i int, ep discoveryv1.Endpoint, family model.Family, nodeName string) (Endpoint, error) {
	addr, err := parseAddress(i, ep.Addresses, family)
	if err != nil {
		return Endpoint{}, err
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
func parseAddress(i int, addrs []string, family model.Family) (netip.Addr, error) {
	if len(addrs) == 0 {
		return netip.Addr{}, fmt.Errorf("endpoints[%d].addresses: must have at least one address", i)
	}
	addr, err := netip.ParseAddr(addrs[0])
	if err != nil || addr.Zone() != "" || !family.Contains(addr) {
		return netip.Addr{}, fmt.Errorf("endpoints[%d].addresses[0]: %q is not a valid %s address", i, addrs[0], family)
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
