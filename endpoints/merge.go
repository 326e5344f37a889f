package endpoints

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/portico-dev/portico/model"
)

// Merge merges all EndpointSlices of ONE Service for one IP family and groups the
// endpoints by endpoint port. nodeName is this node's name; it sets Endpoint.Local.
//
// Slices of the other IP family are skipped silently; FQDN slices (and unknown address
// types) are skipped with a problem. Conditions get the API's defaults: a nil ready
// means ready, a nil serving means "same as ready", a nil terminating means not
// terminating. Only the first address of an endpoint is used, as kube-proxy does. A bad
// address skips that endpoint, a bad port number or protocol skips that port of that
// slice, each with a problem naming the slice, the field and the value; a port with no
// number is skipped silently. Every problem is a *Problem; only an unsupported family is
// a plain error.
//
// Every port of a slice gets a key in the result, even when no endpoint serves it (its
// list is then empty but not nil). Each list holds one endpoint per address and port,
// sorted by address and port. When the same address and port appear more than once (a
// pod being moved from one slice to another shows up in both for a while, and a pod IP
// can be reused by a new pod before the terminating one is gone), the copy that is not
// terminating wins over a terminating one; between copies that are alike in that
// respect, the one from the slice that sorts first by namespace/name wins, and within a
// slice the earlier endpoint. Errors come in slice order (namespace/name), and within a
// slice in field order (address type, ports, endpoints). Neither the result nor the errors
// depend on the order of the input.
func Merge(slices []*discoveryv1.EndpointSlice, family model.Family, nodeName string) (map[PortKey][]Endpoint, []error) {
	if family != model.IPv4 && family != model.IPv6 {
		return nil, []error{fmt.Errorf("family %s is not supported (IPv4 and IPv6 only)", family)}
	}
	sorted := sortSlices(slices)
	if len(sorted) == 1 && distinctPorts(sorted[0].Ports) {
		m := newMerger(family, nodeName)
		return m.single(sorted[0]), m.errs
	}
	return mergeAll(sorted, family, nodeName)
}

func newMerger(family model.Family, nodeName string) *merger {
	return &merger{family: family, nodeName: nodeName, byPort: map[PortKey]map[netip.AddrPort]candidate{}}
}

// mergeAll is the general path of Merge, for slices already sorted.
func mergeAll(sorted []*discoveryv1.EndpointSlice, family model.Family, nodeName string) (map[PortKey][]Endpoint, []error) {
	m := newMerger(family, nodeName)
	for order, s := range sorted {
		m.addSlice(order, s)
	}
	return m.result(), m.errs
}

// Problem is a field of an EndpointSlice that Merge skipped, together with the endpoint,
// port or slice it belongs to. Its Error names the slice, the field and the value.
type Problem struct {
	// Namespace and Slice name the EndpointSlice.
	Namespace, Slice string
	// Field is the field's path in the slice, e.g. endpoints[2].addresses[0].
	Field string
	// Value is the field's value as written: a string is quoted in the message, any
	// other value printed as is; nil when the problem is that the field is empty.
	Value any
	// Reason says what is wrong, e.g. "is out of range 1-65535".
	Reason string
}

// Error returns "endpointslice <namespace>/<slice>: <field>: <value> <reason>".
func (p *Problem) Error() string {
	value := ""
	switch v := p.Value.(type) {
	case nil:
	case string:
		value = strconv.Quote(v) + " "
	default:
		value = fmt.Sprint(v) + " "
	}
	return "endpointslice " + p.Namespace + "/" + p.Slice + ": " + p.Field + ": " + value + p.Reason
}

// single merges the usual case, one slice whose ports are all distinct, the same way as
// the general path but with a fraction of its allocations (a full compile at start-up
// merges 10,000 of them): the endpoints are parsed once, sorted by address, the copies of
// an address beyond the preferred one dropped, and each port gets its own list.
func (m *merger) single(s *discoveryv1.EndpointSlice) map[PortKey][]Endpoint {
	if !m.wantFamily(s) {
		return map[PortKey][]Endpoint{}
	}
	ports := m.parsePorts(s)
	eps := make([]Endpoint, 0, len(s.Endpoints))
	for i, ep := range s.Endpoints {
		e, p := parseEndpoint(i, ep, m.family, m.nodeName)
		if p != nil {
			m.fail(s, p)
			continue
		}
		eps = append(eps, e)
	}
	slices.SortStableFunc(eps, func(a, b Endpoint) int { return a.Addr.Compare(b.Addr) })
	eps = dropCopies(eps)
	out := make(map[PortKey][]Endpoint, len(ports))
	for i, p := range ports {
		list := eps
		if i < len(ports)-1 {
			list = slices.Clone(eps)
		}
		for j := range list {
			list[j].Port = p.number
		}
		out[p.key] = list
	}
	return out
}

// dropCopies keeps one endpoint per address of eps (sorted stably by address, so the
// copies of an address are in slice order): the first that is not terminating, else the
// first, as candidate.beats chooses.
func dropCopies(eps []Endpoint) []Endpoint {
	out := eps[:0]
	for i := 0; i < len(eps); {
		j, best := i+1, i
		for j < len(eps) && eps[j].Addr == eps[i].Addr {
			j++
		}
		for k := i; k < j; k++ {
			if !eps[k].Terminating {
				best = k
				break
			}
		}
		out = append(out, eps[best])
		i = j
	}
	return out
}

// distinctPorts reports whether no two ports of a slice share a name and protocol (two
// that do merge into one list, which only the general path does).
func distinctPorts(ports []discoveryv1.EndpointPort) bool {
	for i := range ports {
		for j := range i {
			if deref(ports[i].Name) == deref(ports[j].Name) && protocolOf(ports[i]) == protocolOf(ports[j]) {
				return false
			}
		}
	}
	return true
}

// protocolOf returns the protocol a port's entries are merged under (TCP when unset), or
// what is written when that is not a protocol.
func protocolOf(p discoveryv1.EndpointPort) string {
	if p.Protocol == nil {
		return model.TCP.String()
	}
	if proto, err := model.ParseProtocol(string(*p.Protocol)); err == nil {
		return proto.String()
	}
	return "invalid " + string(*p.Protocol)
}

// candidate is one copy of an endpoint with its position in the input, used to choose
// between duplicates.
type candidate struct {
	ep    Endpoint
	slice int // position of the slice in sortSlices order
	index int // position of the endpoint in its slice
}

// beats reports whether c is preferred over other (same address and port): not
// terminating first, then the earlier slice, then the earlier endpoint.
func (c candidate) beats(other candidate) bool {
	if c.ep.Terminating != other.ep.Terminating {
		return !c.ep.Terminating
	}
	return cmp.Or(cmp.Compare(c.slice, other.slice), cmp.Compare(c.index, other.index)) < 0
}

// merger accumulates the endpoints and errors of the slices of one Service.
type merger struct {
	family   model.Family
	nodeName string
	byPort   map[PortKey]map[netip.AddrPort]candidate
	errs     []error
}

// addSlice parses one slice and adds each of its endpoints under each of its ports.
func (m *merger) addSlice(order int, s *discoveryv1.EndpointSlice) {
	if !m.wantFamily(s) {
		return
	}
	ports := m.parsePorts(s)
	eps := m.parseEndpoints(s)
	for _, p := range ports {
		set := m.byPort[p.key]
		if set == nil {
			set = map[netip.AddrPort]candidate{}
			m.byPort[p.key] = set
		}
		for _, c := range eps {
			c.slice = order
			c.ep.Port = p.number
			addCandidate(set, c)
		}
	}
}

// addCandidate stores c in set unless a preferred copy of the same endpoint is there.
func addCandidate(set map[netip.AddrPort]candidate, c candidate) {
	key := c.ep.AddrPort()
	if old, ok := set[key]; ok && !c.beats(old) {
		return
	}
	set[key] = c
}

// wantFamily reports whether slice s belongs to the merged family. It records a problem
// for address types other than IPv4 and IPv6.
func (m *merger) wantFamily(s *discoveryv1.EndpointSlice) bool {
	switch s.AddressType {
	case discoveryv1.AddressTypeIPv4:
		return m.family == model.IPv4
	case discoveryv1.AddressTypeIPv6:
		return m.family == model.IPv6
	}
	m.fail(s, &Problem{Field: "addressType", Value: string(s.AddressType), Reason: "is not supported (IPv4 and IPv6 only)"})
	return false
}

// fail records p, a problem of slice s.
func (m *merger) fail(s *discoveryv1.EndpointSlice, p *Problem) {
	p.Namespace, p.Slice = s.Namespace, s.Name
	m.errs = append(m.errs, p)
}

// result returns the merged endpoints, each list sorted by address and port.
func (m *merger) result() map[PortKey][]Endpoint {
	out := make(map[PortKey][]Endpoint, len(m.byPort))
	for key, set := range m.byPort {
		list := make([]Endpoint, 0, len(set))
		for c := range maps.Values(set) {
			list = append(list, c.ep)
		}
		slices.SortFunc(list, compareEndpoint)
		out[key] = list
	}
	return out
}

// sortSlices returns the non-nil slices ordered by namespace, name, UID and resource
// version, so that merging does not depend on the order of the input.
func sortSlices(in []*discoveryv1.EndpointSlice) []*discoveryv1.EndpointSlice {
	out := make([]*discoveryv1.EndpointSlice, 0, len(in))
	for _, s := range in {
		if s != nil {
			out = append(out, s)
		}
	}
	slices.SortStableFunc(out, func(a, b *discoveryv1.EndpointSlice) int {
		return cmp.Or(
			cmp.Compare(a.Namespace, b.Namespace),
			cmp.Compare(a.Name, b.Name),
			cmp.Compare(a.UID, b.UID),
			cmp.Compare(a.ResourceVersion, b.ResourceVersion),
		)
	})
	return out
}
