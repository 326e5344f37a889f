package endpoints

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-dev/portico/model"
)

func ptr[T any](v T) *T { return &v }

// eslice builds an EndpointSlice in namespace "ns".
func eslice(name string, at discoveryv1.AddressType, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: name},
		AddressType: at,
		Ports:       ports,
		Endpoints:   eps,
	}
}

// eport builds a named port.
func eport(name string, proto corev1.Protocol, n int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptr(name), Protocol: ptr(proto), Port: ptr(n)}
}

// tcp is a single unnamed TCP port.
func tcp(n int32) []discoveryv1.EndpointPort {
	return []discoveryv1.EndpointPort{eport("", corev1.ProtocolTCP, n)}
}

// cond builds conditions; nil arguments stay unset.
func cond(ready, serving, terminating *bool) discoveryv1.EndpointConditions {
	return discoveryv1.EndpointConditions{Ready: ready, Serving: serving, Terminating: terminating}
}

var (
	yes         = ptr(true)
	no          = ptr(false)
	readyCond   = cond(yes, yes, no)
	termServing = cond(no, yes, yes)
)

// addr builds an endpoint with one address and the given conditions.
func addr(a string, c discoveryv1.EndpointConditions) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{a}, Conditions: c}
}

// onNode returns e placed on a node.
func onNode(e discoveryv1.Endpoint, node string) discoveryv1.Endpoint {
	e.NodeName = ptr(node)
	return e
}

// renderMerged renders Merge's output: every endpoint with its flags and topology data.
func renderMerged(m map[PortKey][]Endpoint) map[PortKey][]string {
	if m == nil {
		return nil
	}
	out := map[PortKey][]string{}
	for k, eps := range m {
		list := []string{}
		for _, e := range eps {
			s := e.String() + "/" + flagString(e.Endpoint)
			if e.NodeName != "" || e.Zone != "" {
				s += fmt.Sprintf(" node=%s zone=%s", e.NodeName, e.Zone)
			}
			if e.ZoneHints != nil || e.NodeHints != nil {
				s += fmt.Sprintf(" zh=%v nh=%v", e.ZoneHints, e.NodeHints)
			}
			list = append(list, s)
		}
		out[k] = list
	}
	return out
}

// errStrings returns the messages of errs; nil when there are none.
func errStrings(errs []error) []string {
	var out []string
	for _, err := range errs {
		out = append(out, err.Error())
	}
	return out
}

var (
	unnamedTCP = PortKey{Protocol: model.TCP}
	httpTCP    = PortKey{Name: "http", Protocol: model.TCP}
)

type mergeCase struct {
	name     string
	slices   []*discoveryv1.EndpointSlice
	family   model.Family
	node     string
	want     map[PortKey][]string
	wantErrs []string
}

func mergeCases() []mergeCase {
	return []mergeCase{
		{
			name:   "no slices",
			family: model.IPv4,
			want:   map[PortKey][]string{},
		},
		{
			name:   "nil slices ignored",
			slices: []*discoveryv1.EndpointSlice{nil, eslice("a", discoveryv1.AddressTypeIPv4, tcp(80), addr("10.0.0.1", readyCond)), nil},
			family: model.IPv4,
			want:   map[PortKey][]string{unnamedTCP: {"10.0.0.1:80/rs"}},
		},
		{
			name: "several slices per Service",
			slices: []*discoveryv1.EndpointSlice{
				eslice("b", discoveryv1.AddressTypeIPv4, tcp(80), addr("10.0.0.3", readyCond), addr("10.0.0.1", readyCond)),
				eslice("a", discoveryv1.AddressTypeIPv4, tcp(80), addr("10.0.0.2", readyCond), addr("10.0.0.10", termServing)),
			},
			family: model.IPv4,
			want: map[PortKey][]string{unnamedTCP: {
				"10.0.0.1:80/rs", "10.0.0.2:80/rs", "10.0.0.3:80/rs", "10.0.0.10:80/st",
			}},
		},
		{
			name: "duplicate across slices: not terminating beats terminating",
			slices: []*discoveryv1.EndpointSlice{
				eslice("a", discoveryv1.AddressTypeIPv4, tcp(80), onNode(addr("10.0.0.1", termServing), "old")),
				eslice("b", discoveryv1.AddressTypeIPv4, tcp(80), onNode(addr("10.0.0.1", cond(no, no, no)), "new")),
			},
			family: model.IPv4,
			want:   map[PortKey][]string{unnamedTCP: {"10.0.0.1:80/ node=new zone="}},
		},
		{
			name: "duplicate across slices: first slice by name wins among equals",
			slices: []*discoveryv1.EndpointSlice{
				eslice("b", discoveryv1.AddressTypeIPv4, tcp(80), onNode(addr("10.0.0.1", readyCond), "from-b")),
				eslice("a", discoveryv1.AddressTypeIPv4, tcp(80), onNode(addr("10.0.0.1", cond(no, nil, nil)), "from-a")),
			},
			family: model.IPv4,
			want:   map[PortKey][]string{unnamedTCP: {"10.0.0.1:80/s node=from-a zone="}},
		},
		{
			name: "duplicate across slices: both terminating, first slice wins",
			slices: []*discoveryv1.EndpointSlice{
				eslice("b", discoveryv1.AddressTypeIPv4, tcp(80), onNode(addr("10.0.0.1", termServing), "from-b")),
				eslice("a", discoveryv1.AddressTypeIPv4, tcp(80), onNode(addr("10.0.0.1", cond(no, no, yes)), "from-a")),
			},
			family: model.IPv4,
			want:   map[PortKey][]string{unnamedTCP: {"10.0.0.1:80/t node=from-a zone="}},
		},
		{
			name: "duplicate within a slice: reused IP of a terminating pod",
			slices: []*discoveryv1.EndpointSlice{
				eslice("a", discoveryv1.AddressTypeIPv4, tcp(80),
					onNode(addr("10.0.0.1", termServing), "old-pod"),
					onNode(addr("10.0.0.1", readyCond), "new-pod")),
			},
			family: model.IPv4,
			want:   map[PortKey][]string{unnamedTCP: {"10.0.0.1:80/rs node=new-pod zone="}},
		},
		{
			name: "same address with different port numbers is kept twice",
			slices: []*discoveryv1.EndpointSlice{
				eslice("a", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{eport("http", corev1.ProtocolTCP, 8080)}, addr("10.0.0.1", readyCond)),
				eslice("b", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{eport("http", corev1.ProtocolTCP, 80)}, addr("10.0.0.1", readyCond)),
			},
			family: model.IPv4,
			want:   map[PortKey][]string{httpTCP: {"10.0.0.1:80/rs", "10.0.0.1:8080/rs"}},
		},
		{
			name: "named ports map to their own keys",
			slices: []*discoveryv1.EndpointSlice{
				eslice("a", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{eport("http", corev1.ProtocolTCP, 8080)}, addr("10.0.0.1", readyCond)),
				eslice("b", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{eport("metrics", corev1.ProtocolTCP, 9090)}, addr("10.0.0.2", readyCond)),
			},
			family: model.IPv4,
			want: map[PortKey][]string{
				httpTCP:                                {"10.0.0.1:8080/rs"},
				{Name: "metrics", Protocol: model.TCP}: {"10.0.0.2:9090/rs"},
			},
		},
		{
			name: "one slice with several ports and protocols",
			slices: []*discoveryv1.EndpointSlice{
				eslice("a", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{
					eport("dns", corev1.ProtocolUDP, 53),
					eport("dns", corev1.ProtocolTCP, 53),
					eport("sctp", corev1.ProtocolSCTP, 9999),
				}, addr("10.0.0.1", readyCond)),
			},
			family: model.IPv4,
			want: map[PortKey][]string{
				{Name: "dns", Protocol: model.UDP}:   {"10.0.0.1:53/rs"},
				{Name: "dns", Protocol: model.TCP}:   {"10.0.0.1:53/rs"},
				{Name: "sctp", Protocol: model.SCTP}: {"10.0.0.1:9999/rs"},
			},
		},
		{
			name: "nil port name and protocol default to unnamed TCP, nil number skipped",
			slices: []*discoveryv1.EndpointSlice{
				eslice("a", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{
					{Port: ptr(int32(80))},
					{Name: ptr("nonumber")},
				}, addr("10.0.0.1", readyCond)),
			},
			family: model.IPv4,
			want:   map[PortKey][]string{unnamedTCP: {"10.0.0.1:80/rs"}},
		},
		{
			name:   "port without endpoints gets an empty list",
			slices: []*discoveryv1.EndpointSlice{eslice("a", discoveryv1.AddressTypeIPv4, tcp(80))},
			family: model.IPv4,
			want:   map[PortKey][]string{unnamedTCP: {}},
		},
		{
			name: "FQDN slice is skipped with an error",
			slices: []*discoveryv1.EndpointSlice{
				eslice("foo-abc", discoveryv1.AddressTypeFQDN, tcp(80), addr("example.com", readyCond)),
				eslice("foo-def", discoveryv1.AddressTypeIPv4, tcp(80), addr("10.0.0.1", readyCond)),
			},
			family:   model.IPv4,
			want:     map[PortKey][]string{unnamedTCP: {"10.0.0.1:80/rs"}},
			wantErrs: []string{`endpointslice ns/foo-abc: addressType: "FQDN" is not supported (IPv4 and IPv6 only)`},
		},
		{
			name:     "unknown address type is skipped with an error",
			slices:   []*discoveryv1.EndpointSlice{eslice("a", "IPv5", tcp(80), addr("10.0.0.1", readyCond))},
			family:   model.IPv4,
			want:     map[PortKey][]string{},
			wantErrs: []string{`endpointslice ns/a: addressType: "IPv5" is not supported (IPv4 and IPv6 only)`},
		},
		{
			name: "slices of the other family are skipped silently",
			slices: []*discoveryv1.EndpointSlice{
				eslice("v4", discoveryv1.AddressTypeIPv4, tcp(80), addr("10.0.0.1", readyCond)),
				eslice("v6", discoveryv1.AddressTypeIPv6, tcp(80), addr("fd00::1", readyCond)),
			},
			family: model.IPv6,
			want:   map[PortKey][]string{unnamedTCP: {"[fd00::1]:80/rs"}},
		},
		{
			name: "bad IP skips just that endpoint",
			slices: []*discoveryv1.EndpointSlice{
				eslice("name", discoveryv1.AddressTypeIPv4, tcp(80),
					addr("10.0.0.1", readyCond), addr("10.0.0.2", readyCond), addr("10.0.0.300", readyCond)),
			},
			family:   model.IPv4,
			want:     map[PortKey][]string{unnamedTCP: {"10.0.0.1:80/rs", "10.0.0.2:80/rs"}},
			wantErrs: []string{`endpointslice ns/name: endpoints[2].addresses[0]: "10.0.0.300" is not a valid IPv4 address`},
		},
		{
			name: "wrong-family address in an IPv4 slice",
			slices: []*discoveryv1.EndpointSlice{
				eslice("a", discoveryv1.AddressTypeIPv4, tcp(80), addr("fd00::1", readyCond), addr("10.0.0.1", readyCond)),
			},
			family:   model.IPv4,
			want:     map[PortKey][]string{unnamedTCP: {"10.0.0.1:80/rs"}},
			wantErrs: []string{`endpointslice ns/a: endpoints[0].addresses[0]: "fd00::1" is not a valid IPv4 address`},
		},
		{
			name: "wrong-family and zoned addresses in an IPv6 slice",
			slices: []*discoveryv1.EndpointSlice{
				eslice("a", discoveryv1.AddressTypeIPv6, tcp(80),
					addr("10.0.0.1", readyCond), addr("fe80::1%eth0", readyCond), addr("fd00::1", readyCond)),
			},
			family: model.IPv6,
			want:   map[PortKey][]string{unnamedTCP: {"[fd00::1]:80/rs"}},
			wantErrs: []string{
				`endpointslice ns/a: endpoints[0].addresses[0]: "10.0.0.1" is not a valid IPv6 address`,
				`endpointslice ns/a: endpoints[1].addresses[0]: "fe80::1%eth0" is not a valid IPv6 address`,
			},
		},
		{
			name: "endpoint without address",
			slices: []*discoveryv1.EndpointSlice{
				eslice("a", discoveryv1.AddressTypeIPv4, tcp(80), discoveryv1.Endpoint{}, addr("10.0.0.1", readyCond)),
			},
			family:   model.IPv4,
			want:     map[PortKey][]string{unnamedTCP: {"10.0.0.1:80/rs"}},
			wantErrs: []string{`endpointslice ns/a: endpoints[0].addresses: must have at least one address`},
		},
		{
			name: "only the first address is used",
			slices: []*discoveryv1.EndpointSlice{
				eslice("a", discoveryv1.AddressTypeIPv4, tcp(80),
					discoveryv1.Endpoint{Addresses: []string{"10.0.0.2", "10.0.0.1", "bogus"}}),
			},
			family: model.IPv4,
			want:   map[PortKey][]string{unnamedTCP: {"10.0.0.2:80/rs"}},
		},
		{
			name: "out-of-range and unknown-protocol ports skip only that port",
			slices: []*discoveryv1.EndpointSlice{
				eslice("name", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{
					eport("big", corev1.ProtocolTCP, 70000),
					eport("icmp", "ICMP", 1),
					eport("zero", corev1.ProtocolUDP, 0),
					eport("http", corev1.ProtocolTCP, 80),
				}, addr("10.0.0.1", readyCond)),
			},
			family: model.IPv4,
			want:   map[PortKey][]string{httpTCP: {"10.0.0.1:80/rs"}},
			wantErrs: []string{
				`endpointslice ns/name: ports[0].port: 70000 is out of range 1-65535`,
				`endpointslice ns/name: ports[1].protocol: "ICMP" is not one of TCP, UDP, SCTP`,
				`endpointslice ns/name: ports[2].port: 0 is out of range 1-65535`,
			},
		},
		{
			name: "nil conditions get the API defaults",
			slices: []*discoveryv1.EndpointSlice{
				eslice("a", discoveryv1.AddressTypeIPv4, tcp(80),
					addr("10.0.0.1", cond(nil, nil, nil)),
					addr("10.0.0.2", cond(no, nil, nil)),
					addr("10.0.0.3", cond(no, yes, nil)),
					addr("10.0.0.4", cond(nil, no, yes)),
					addr("10.0.0.5", cond(yes, nil, no)),
				),
			},
			family: model.IPv4,
			want: map[PortKey][]string{unnamedTCP: {
				"10.0.0.1:80/rs", "10.0.0.2:80/s", "10.0.0.3:80/s", "10.0.0.4:80/rt", "10.0.0.5:80/rs",
			}},
		},
		{
			name: "locality, zone and hints",
			slices: []*discoveryv1.EndpointSlice{
				eslice("a", discoveryv1.AddressTypeIPv4, tcp(80),
					discoveryv1.Endpoint{
						Addresses: []string{"10.0.0.1"},
						NodeName:  ptr("node-a"),
						Zone:      ptr("zone-a"),
						Hints: &discoveryv1.EndpointHints{
							ForZones: []discoveryv1.ForZone{{Name: "zone-b"}, {Name: "zone-a"}, {Name: "zone-b"}},
							ForNodes: []discoveryv1.ForNode{{Name: "node-c"}, {Name: "node-a"}},
						},
					},
					onNode(addr("10.0.0.2", readyCond), "node-b"),
					addr("10.0.0.3", readyCond),
				),
			},
			family: model.IPv4,
			node:   "node-a",
			want: map[PortKey][]string{unnamedTCP: {
				"10.0.0.1:80/lrs node=node-a zone=zone-a zh=[zone-a zone-b] nh=[node-a node-c]",
				"10.0.0.2:80/rs node=node-b zone=",
				"10.0.0.3:80/rs",
			}},
		},
		{
			name: "no endpoint is local on a node without a name",
			slices: []*discoveryv1.EndpointSlice{
				eslice("a", discoveryv1.AddressTypeIPv4, tcp(80), onNode(addr("10.0.0.1", readyCond), "")),
			},
			family: model.IPv4,
			want:   map[PortKey][]string{unnamedTCP: {"10.0.0.1:80/rs"}},
		},
		{
			name: "errors ordered by slice, then field",
			slices: []*discoveryv1.EndpointSlice{
				eslice("b", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{eport("", "ICMP", 1)},
					addr("x", readyCond)),
				eslice("a", discoveryv1.AddressTypeIPv4, tcp(80),
					addr("10.0.0.1", readyCond), addr("y", readyCond)),
				eslice("c", discoveryv1.AddressTypeFQDN, tcp(80)),
			},
			family: model.IPv4,
			want:   map[PortKey][]string{unnamedTCP: {"10.0.0.1:80/rs"}},
			wantErrs: []string{
				`endpointslice ns/a: endpoints[1].addresses[0]: "y" is not a valid IPv4 address`,
				`endpointslice ns/b: ports[0].protocol: "ICMP" is not one of TCP, UDP, SCTP`,
				`endpointslice ns/b: endpoints[0].addresses[0]: "x" is not a valid IPv4 address`,
				`endpointslice ns/c: addressType: "FQDN" is not supported (IPv4 and IPv6 only)`,
			},
		},
		{
			name:     "unsupported family",
			slices:   []*discoveryv1.EndpointSlice{eslice("a", discoveryv1.AddressTypeIPv4, tcp(80))},
			family:   0,
			wantErrs: []string{`family Family(0) is not supported (IPv4 and IPv6 only)`},
		},
	}
}

func TestMerge(t *testing.T) {
	for _, tt := range mergeCases() {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := Merge(tt.slices, tt.family, tt.node)
			if r := renderMerged(got); !reflect.DeepEqual(r, tt.want) {
				t.Errorf("endpoints = %#v, want %#v", r, tt.want)
			}
			if e := errStrings(errs); !reflect.DeepEqual(e, tt.wantErrs) {
				t.Errorf("errors =\n%s\nwant\n%s", strings.Join(e, "\n"), strings.Join(tt.wantErrs, "\n"))
			}
		})
	}
}

// TestMergeShuffled checks that every case gives the same result whatever the order of
// its slices.
func TestMergeShuffled(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tt := range mergeCases() {
		t.Run(tt.name, func(t *testing.T) {
			for range 20 {
				in := append([]*discoveryv1.EndpointSlice(nil), tt.slices...)
				rng.Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
				got, errs := Merge(in, tt.family, tt.node)
				if r := renderMerged(got); !reflect.DeepEqual(r, tt.want) {
					t.Fatalf("order %v: endpoints = %#v, want %#v", names(in), r, tt.want)
				}
				if e := errStrings(errs); !reflect.DeepEqual(e, tt.wantErrs) {
					t.Fatalf("order %v: errors = %q, want %q", names(in), e, tt.wantErrs)
				}
			}
		})
	}
}

// names lists the slice names in order, for failure messages.
func names(in []*discoveryv1.EndpointSlice) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		if s == nil {
			out = append(out, "<nil>")
			continue
		}
		out = append(out, s.Name)
	}
	return out
}

// TestMergeThenCategorize feeds Merge's output to Categorize, as the proxier does.
func TestMergeThenCategorize(t *testing.T) {
	zoned := func(a, node, zone string) discoveryv1.Endpoint {
		e := onNode(addr(a, readyCond), node)
		e.Zone = ptr(zone)
		e.Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: zone}}}
		return e
	}
	merged, errs := Merge([]*discoveryv1.EndpointSlice{
		eslice("b", discoveryv1.AddressTypeIPv4, tcp(80), zoned("10.0.0.2", "node-b", "zone-b")),
		eslice("a", discoveryv1.AddressTypeIPv4, tcp(80), zoned("10.0.0.1", "node-a", "zone-a"), zoned("10.0.0.3", "node-c", "zone-a")),
	}, model.IPv4, "node-a")
	if errs != nil {
		t.Fatalf("Merge errors: %v", errs)
	}
	r := Categorize(merged[unnamedTCP], bothSets, topoA)
	if got, want := render(r.Cluster), []string{"10.0.0.1:80/lrs", "10.0.0.3:80/rs"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Cluster = %q, want %q", got, want)
	}
	if got, want := render(r.Local), []string{"10.0.0.1:80/lrs"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Local = %q, want %q", got, want)
	}
	if !r.HasAny {
		t.Error("HasAny = false, want true")
	}
}

// TestMergeSingleSliceMatchesGeneral: the single-slice path of Merge gives the result and
// the errors of the general path, over random slices with duplicate addresses, invalid
// entries and ports of every kind.
func TestMergeSingleSliceMatchesGeneral(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	pick := func(n int) int { return rng.IntN(n) }
	addrs := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "fd00::1", "x"}
	bools := []*bool{nil, yes, no}
	protos := []*corev1.Protocol{nil, ptr(corev1.ProtocolTCP), ptr(corev1.ProtocolUDP), ptr(corev1.Protocol("XYZ"))}
	types := []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6, discoveryv1.AddressTypeFQDN}
	fast := 0
	for i := range 2000 {
		var ports []discoveryv1.EndpointPort
		for range 1 + pick(3) {
			p := discoveryv1.EndpointPort{Name: ptr([]string{"", "a", "b"}[pick(3)]), Protocol: protos[pick(len(protos))]}
			if pick(5) > 0 {
				p.Port = ptr(int32([]int{80, 81, 0}[pick(3)]))
			}
			ports = append(ports, p)
		}
		var eps []discoveryv1.Endpoint
		for range pick(9) {
			e := addr(addrs[pick(len(addrs))], cond(bools[pick(3)], bools[pick(3)], bools[pick(3)]))
			if pick(2) == 0 {
				e = onNode(e, []string{"node-a", "node-b"}[pick(2)])
			}
			eps = append(eps, e)
		}
		in := []*discoveryv1.EndpointSlice{eslice("s", types[pick(len(types))], ports, eps...)}
		family := []model.Family{model.IPv4, model.IPv6}[pick(2)]
		if distinctPorts(ports) {
			fast++
		}
		got, gotErrs := Merge(in, family, "node-a")
		want, wantErrs := mergeAll(sortSlices(in), family, "node-a")
		if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(errStrings(gotErrs), errStrings(wantErrs)) {
			t.Fatalf("case %d: %+v\nsingle path: %v %q\ngeneral path: %v %q", i, in[0],
				renderMerged(got), errStrings(gotErrs), renderMerged(want), errStrings(wantErrs))
		}
	}
	if fast < 500 {
		t.Errorf("only %d of 2000 cases took the single-slice path", fast)
	}
}

// TestMergeProblems checks that each problem is a *Problem that names the slice, the
// field and the value, which its message is built from.
func TestMergeProblems(t *testing.T) {
	_, errs := Merge([]*discoveryv1.EndpointSlice{
		eslice("a", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{eport("big", corev1.ProtocolTCP, 70000)},
			addr("10.0.0.300", readyCond), discoveryv1.Endpoint{}),
		eslice("b", discoveryv1.AddressTypeFQDN, tcp(80)),
	}, model.IPv4, "node-a")
	want := []Problem{
		{Namespace: "ns", Slice: "a", Field: "ports[0].port", Value: int32(70000), Reason: "is out of range 1-65535"},
		{Namespace: "ns", Slice: "a", Field: "endpoints[0].addresses[0]", Value: "10.0.0.300", Reason: "is not a valid IPv4 address"},
		{Namespace: "ns", Slice: "a", Field: "endpoints[1].addresses", Reason: "must have at least one address"},
		{Namespace: "ns", Slice: "b", Field: "addressType", Value: "FQDN", Reason: "is not supported (IPv4 and IPv6 only)"},
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d problems, want %d: %q", len(errs), len(want), errStrings(errs))
	}
	for i, err := range errs {
		var p *Problem
		if !errors.As(err, &p) {
			t.Errorf("problem %d (%v) is a %T, not a *Problem", i, err, err)
			continue
		}
		if *p != want[i] {
			t.Errorf("problem %d = %#v, want %#v", i, *p, want[i])
		}
	}
}
