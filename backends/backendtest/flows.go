package backendtest

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"sigs.k8s.io/yaml"
)

//go:embed testdata/flows.yaml
var flowsYAML []byte

// FlowTable is the backend-neutral packet-flow table (testdata/flows.yaml).
type FlowTable struct {
	// Config is the configuration every scenario assumes unless it overrides it.
	Config Config `json:"config"`
	// ServiceCIDRs are the cluster's Service CIDRs (the ServiceCIDR objects).
	ServiceCIDRs []string `json:"serviceCIDRs"`
	// Scenarios are run in order.
	Scenarios []Scenario `json:"scenarios"`
}

// Config is the part of portico's configuration the flows depend on, in
// KubeProxyConfiguration's spelling. MasqueradeAll applies to every mode (the
// configuration file holds it per mode).
type Config struct {
	ClusterCIDR       string   `json:"clusterCIDR,omitempty"`
	DetectLocalMode   string   `json:"detectLocalMode,omitempty"`
	NodePortAddresses []string `json:"nodePortAddresses,omitempty"`
	MasqueradeAll     bool     `json:"masqueradeAll,omitempty"`
}

// Merge returns c with the fields that o sets replaced.
func (c Config) Merge(o *Config) Config {
	if o == nil {
		return c
	}
	if o.ClusterCIDR != "" {
		c.ClusterCIDR = o.ClusterCIDR
	}
	if o.DetectLocalMode != "" {
		c.DetectLocalMode = o.DetectLocalMode
	}
	if o.NodePortAddresses != nil {
		c.NodePortAddresses = o.NodePortAddresses
	}
	c.MasqueradeAll = c.MasqueradeAll || o.MasqueradeAll
	return c
}

// Scenario is a set of Services and the flows they must produce.
type Scenario struct {
	// Name names the scenario (and its Kubernetes namespace in the e2e suite).
	Name string `json:"name"`
	// Config overrides the table's configuration for this scenario.
	Config *Config `json:"config,omitempty"`
	// Services are created in order.
	Services []Service `json:"services"`
	// Flows are the new connections to try and what must happen to them.
	Flows []Flow `json:"flows"`
	// HealthChecks are the answers the Services' healthCheckNodePorts must give (the e2e
	// suite fetches them; a packet tracer has nothing to say about them).
	HealthChecks []HealthCheck `json:"healthChecks,omitempty"`
}

// Service is a Service of a scenario in compact form (see Object for the full object).
type Service struct {
	Name string `json:"name"`
	// Type is ClusterIP (default), NodePort or LoadBalancer.
	Type string `json:"type,omitempty"`
	// DualStack requires both families (default: IPv4 only).
	DualStack bool `json:"dualStack,omitempty"`
	// Ports default to one TCP port "http" 80.
	Ports                 []Port   `json:"ports,omitempty"`
	ExternalIPs           []string `json:"externalIPs,omitempty"`
	SourceRanges          []string `json:"sourceRanges,omitempty"`
	ExternalTrafficPolicy string   `json:"externalTrafficPolicy,omitempty"`
	InternalTrafficPolicy string   `json:"internalTrafficPolicy,omitempty"`
	// Affinity is the ClientIP session affinity timeout in seconds (0: none).
	Affinity int32 `json:"affinity,omitempty"`
	// LoadBalancer are the ingress IPs written to the Service's status, as a cloud
	// controller would.
	LoadBalancer []string `json:"loadBalancer,omitempty"`
	// AllocateLoadBalancerNodePorts false gives a LoadBalancer no node ports.
	AllocateLoadBalancerNodePorts *bool `json:"allocateLoadBalancerNodePorts,omitempty"`
	// Endpoints are the pods behind every port, one EndpointSlice per family; nil means
	// no EndpointSlice at all, [] an empty one.
	Endpoints []Endpoint `json:"endpoints"`
	// Then is what happens to the Service once it is programmed, before the flows run:
	// "delete" deletes it, "externalName" turns it into an ExternalName Service. Flows to
	// it then target the ClusterIP it had.
	Then string `json:"then,omitempty"`
}

// Port is one Service port; its target port defaults to the pods' server port.
type Port struct {
	Name     string `json:"name"`
	Port     int32  `json:"port"`
	Protocol string `json:"protocol,omitempty"`
	// TargetPort defaults to ServerPort.
	TargetPort int32 `json:"targetPort,omitempty"`
}

// ServerPort is the port of every pod's traffic server (TCP and UDP).
const ServerPort = 8080

// Endpoint is one pod behind a Service, with its EndpointSlice conditions. In YAML it is
// the pod's name, or an object: {pod: pod-a1, ready: false, serving: false,
// terminating: true}.
type Endpoint struct {
	Pod                  string
	NotReady, NotServing bool
	Terminating          bool
	ZoneHints, NodeHints []string
}

// UnmarshalJSON reads a pod name or an object.
func (e *Endpoint) UnmarshalJSON(b []byte) error {
	var name string
	if json.Unmarshal(b, &name) == nil {
		*e = Endpoint{Pod: name}
		return nil
	}
	var o struct {
		Pod         string   `json:"pod"`
		Ready       *bool    `json:"ready"`
		Serving     *bool    `json:"serving"`
		Terminating bool     `json:"terminating"`
		ZoneHints   []string `json:"zoneHints"`
		NodeHints   []string `json:"nodeHints"`
	}
	dec := json.NewDecoder(bytesReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		return fmt.Errorf("endpoint %s: %w", b, err)
	}
	*e = Endpoint{Pod: o.Pod, Terminating: o.Terminating, ZoneHints: o.ZoneHints, NodeHints: o.NodeHints}
	e.NotReady = o.Ready != nil && !*o.Ready
	e.NotServing = o.Serving != nil && !*o.Serving
	return nil
}

// Outcome is what a flow without answering endpoints must come to.
type Outcome string

const (
	// Refused means the client is refused at once: a REJECT, or nothing listening on
	// node-a.
	Refused Outcome = "refused"
	// Dropped means the packets vanish: the client times out.
	Dropped Outcome = "dropped"
)

// Expect is a flow's expectation: the pods that must answer, or an Outcome. In YAML it is
// a list of pod names, "refused" or "dropped".
type Expect struct {
	Pods    []string
	Outcome Outcome
}

// UnmarshalJSON reads a list of pods or an outcome.
func (x *Expect) UnmarshalJSON(b []byte) error {
	var pods []string
	if json.Unmarshal(b, &pods) == nil {
		*x = Expect{Pods: pods}
		return nil
	}
	var o string
	if err := json.Unmarshal(b, &o); err != nil || (Outcome(o) != Refused && Outcome(o) != Dropped) {
		return fmt.Errorf("expect %s: want a list of pods, %q or %q", b, Refused, Dropped)
	}
	*x = Expect{Outcome: Outcome(o)}
	return nil
}

// Flow is one row of the table: a new connection and what must happen to it.
type Flow struct {
	Name string `json:"name"`
	// From is the host the connection starts on: client, node-a or a pod.
	From string `json:"from"`
	// Src picks the client's source address: an index into its addresses of the flow's
	// family ("1"), or an address it holds. Default: its first address of the family.
	Src string `json:"src,omitempty"`
	// To is the Service whose frontend is targeted (empty with Addr and Port).
	To string `json:"to,omitempty"`
	// Via is the frontend: ClusterIP (default), NodePort (node-a's primary address),
	// LoadBalancer or ExternalIP.
	Via string `json:"via,omitempty"`
	// Family is IPv4 (default) or IPv6.
	Family string `json:"family,omitempty"`
	// Proto is TCP (default), UDP or SCTP; it also picks the Service's port of that
	// protocol.
	Proto string `json:"proto,omitempty"`
	// Port and Addr override the frontend's port and address.
	Port uint16 `json:"port,omitempty"`
	Addr string `json:"addr,omitempty"`
	// Expect is what must happen.
	Expect Expect `json:"expect"`
	// Peer is the source the endpoints must see: client (not masqueraded), node
	// (masqueraded to a node-a address) or empty (not checked).
	Peer string `json:"peer,omitempty"`
	// Sticky requires every probe to land on the same endpoint (session affinity).
	Sticky bool `json:"sticky,omitempty"`
	// Probes overrides the number of connections the e2e suite opens.
	Probes int `json:"probes,omitempty"`
	// Unsupported marks the flow as one a proxy mode cannot pass, with the reason (mode →
	// reason, e.g. ipvs: "IPVS cannot choose real servers by source"): in that mode the
	// flow must fail, and passing is an error (the mark is then stale).
	Unsupported map[string]string `json:"unsupported,omitempty"`
}

// Peers a flow may require.
const (
	PeerClient = "client"
	PeerNode   = "node"
)

// HealthCheck is one expected answer of a Service's healthCheckNodePort.
type HealthCheck struct {
	Name    string `json:"name"`
	Service string `json:"service"`
	// Code is the HTTP status: 200 when node-a has a local endpoint, else 503.
	Code int `json:"code"`
	// LocalEndpoints is the number of local endpoints the answer reports.
	LocalEndpoints int `json:"localEndpoints"`
}

// LoadFlows reads the packet-flow table and checks it.
func LoadFlows() (*FlowTable, error) {
	var t FlowTable
	if err := yaml.UnmarshalStrict(flowsYAML, &t); err != nil {
		return nil, fmt.Errorf("testdata/flows.yaml: %w", err)
	}
	if err := t.check(); err != nil {
		return nil, fmt.Errorf("testdata/flows.yaml: %w", err)
	}
	return &t, nil
}

// check rejects flows that name unknown Services, hosts or kinds, so that a typo fails
// loudly instead of testing nothing.
func (t *FlowTable) check() error {
	hosts := hostNames(Topology())
	seen := map[string]bool{}
	for _, sc := range t.Scenarios {
		if seen[sc.Name] {
			return fmt.Errorf("scenario %q appears twice", sc.Name)
		}
		seen[sc.Name] = true
		for _, f := range sc.Flows {
			if err := sc.checkFlow(f, hosts); err != nil {
				return fmt.Errorf("scenario %s: flow %q: %w", sc.Name, f.Name, err)
			}
		}
	}
	return nil
}

func (sc *Scenario) checkFlow(f Flow, hosts []string) error {
	if !slices.Contains(hosts, f.From) {
		return fmt.Errorf("from %q is not a host of the topology (%v)", f.From, hosts)
	}
	if f.To != "" && sc.Service(f.To) == nil {
		return fmt.Errorf("to %q is not a Service of the scenario", f.To)
	}
	if f.To == "" && (f.Addr == "" || f.Port == 0) {
		return fmt.Errorf("a flow without a Service needs addr and port")
	}
	if !slices.Contains([]string{"", "ClusterIP", "NodePort", "LoadBalancer", "ExternalIP"}, f.Via) {
		return fmt.Errorf("via %q is not ClusterIP, NodePort, LoadBalancer or ExternalIP", f.Via)
	}
	if !slices.Contains([]string{"", PeerClient, PeerNode}, f.Peer) {
		return fmt.Errorf("peer %q is not %q or %q", f.Peer, PeerClient, PeerNode)
	}
	if len(f.Expect.Pods) == 0 && f.Expect.Outcome == "" {
		return fmt.Errorf("expect names no pod and no outcome")
	}
	if f.Src != "" {
		if _, err := strconv.Atoi(f.Src); err != nil {
			if _, err := netip.ParseAddr(f.Src); err != nil {
				return fmt.Errorf("src %q is neither an index nor an address", f.Src)
			}
		}
	}
	return nil
}

// Service returns the scenario's Service called name, or nil.
func (sc *Scenario) Service(name string) *Service {
	for i := range sc.Services {
		if sc.Services[i].Name == name {
			return &sc.Services[i]
		}
	}
	return nil
}

// FamilyOf returns the flow's IP family.
func (f Flow) FamilyOf() string {
	if f.Family == "" {
		return "IPv4"
	}
	return f.Family
}

// Protocol returns the flow's protocol.
func (f Flow) Protocol() string {
	if f.Proto == "" {
		return "TCP"
	}
	return f.Proto
}
