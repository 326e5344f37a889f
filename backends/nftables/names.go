package nftables

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/portico-dev/portico/model"
)

// tableName is the name of portico's table in both families.
const tableName = "portico"

// Names of the maps and sets every table holds.
const (
	mapServiceIPs          = "service-ips"
	mapServiceNodePorts    = "service-nodeports"
	mapNoEndpointServices  = "no-endpoint-services"
	mapNoEndpointNodePort  = "no-endpoint-nodeports"
	mapMasqueradeServices  = "masquerade-services"
	mapMasqueradeNodePorts = "masquerade-nodeports"
	setClusterIPs          = "cluster-ips"
	setFirewallIPs         = "firewall-ips"
	setFirewallAllow       = "firewall-allow"
	setHairpin             = "hairpin"
	endpointMapPrefix      = "endpoints-"
)

// Names of the chains every table holds.
const (
	chainServices       = "services"
	chainMasquerading   = "masquerading"
	chainMarkMasq       = "mark-for-masquerade"
	chainMarkOffCluster = "mark-off-cluster"
	chainReject         = "reject-chain"
	chainFirewallCheck  = "firewall-check"
	chainEndpointsCheck = "service-endpoints-check"
	chainNodePortsCheck = "nodeport-endpoints-check"
	chainClusterIPCheck = "cluster-ips-check"
)

// Prefixes of the per-Service-port chains and sets.
const (
	prefixCluster  = "cluster-" // DNAT over the cluster-wide endpoints
	prefixLocal    = "local-"   // DNAT over the node-local endpoints
	prefixService  = "svc-"     // the ClusterIP's entry, when it masquerades more than its set's chain
	prefixExternal = "ext-"     // the external frontends' entry (more masquerading, or by source)
	prefixAffinity = "affinity-"
)

// portSuffix turns a Service port name into the part of a chain name that identifies it:
// "namespace/name/proto/port" ("namespace/name/proto" for an unnamed port). Kubernetes
// names only use characters nft accepts in identifiers.
func portSuffix(n model.ServicePortName) string {
	s := n.Namespace + "/" + n.Name + "/" + strings.ToLower(n.Protocol.String())
	if n.Port != "" {
		s += "/" + n.Port
	}
	return s
}

// affinitySetName names the set that remembers the clients of one endpoint of a chain. The
// name is a hash (addresses hold characters nft names cannot); the set's comment says
// which endpoint it is for. The timeout is part of the name: a set keeps the timeout it
// was created with, so a new timeout needs new sets.
func affinitySetName(chain string, ep model.Endpoint, timeout time.Duration) string {
	sum := sha256.Sum256([]byte(chain + "|" + ep.String() + "|" + timeout.String()))
	return prefixAffinity + hex.EncodeToString(sum[:8])
}

// endpointMapName names the endpoint map of protocol p and bucket b.
func endpointMapName(p model.Protocol, b int) string {
	return fmt.Sprintf("%s%s-%02x", endpointMapPrefix, proto(p), b)
}

// fam holds the family-specific spellings of nft expressions.
type fam struct {
	family   model.Family
	ip       string // "ip" or "ip6"
	addrType string // "ipv4_addr" or "ipv6_addr"
	loopback string // loopback range
}

func newFam(f model.Family) fam {
	if f == model.IPv6 {
		return fam{family: f, ip: "ip6", addrType: "ipv6_addr", loopback: "::1"}
	}
	return fam{family: f, ip: "ip", addrType: "ipv4_addr", loopback: "127.0.0.0/8"}
}

// addrPort renders an address and port as nft writes a DNAT target.
func (f fam) addrPort(a netip.Addr, port uint16) string {
	if f.family == model.IPv6 {
		return fmt.Sprintf("[%s]:%d", a, port)
	}
	return fmt.Sprintf("%s:%d", a, port)
}

// proto renders a protocol as an nft inet_proto value.
func proto(p model.Protocol) string { return strings.ToLower(p.String()) }
