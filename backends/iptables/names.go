package iptables

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"net/netip"
	"strings"

	"github.com/portico-dev/portico/model"
)

// Tables portico writes into, in the order a restore writes them: the filter checks and
// the mangle firewall before the nat rules that rely on them.
const (
	tableMangle = "mangle"
	tableFilter = "filter"
	tableNAT    = "nat"
)

// restoreTables lists the tables in restore order.
var restoreTables = []string{tableMangle, tableFilter, tableNAT}

// Fixed chains: every family holds them whatever its Services.
const (
	chainFirewall       = "PORTICO-FIREWALL"         // mangle: source ranges of load balancers
	chainChecks         = "PORTICO-CHECKS"           // filter: no endpoints, wrong ports, Service CIDRs
	chainNodePortsEmpty = "PORTICO-NP-EMPTY"         // filter: NodePorts on every local address without endpoints
	chainReject         = "PORTICO-REJECT"           // filter: TCP reset, else ICMP port unreachable
	chainServices       = "PORTICO-SERVICES"         // nat: the root of the dispatch trees
	chainNodePorts      = "PORTICO-NODEPORTS"        // nat: the root of the NodePort tree
	chainMarkOffCluster = "PORTICO-MARK-OFF-CLUSTER" // nat: marks what does not come from a pod
	chainPostrouting    = "PORTICO-POSTROUTING"      // nat: masquerading
)

// chainPrefix starts the name of every chain portico owns; nothing else is touched.
const chainPrefix = "PORTICO-"

// Prefixes of the per-Service-port chains (all in nat), followed by portID.
const (
	prefixCluster  = "PORTICO-C-" // DNAT over the cluster-wide endpoints
	prefixLocal    = "PORTICO-L-" // DNAT over the node-local endpoints
	prefixService  = "PORTICO-S-" // the ClusterIP's entry, when it masquerades more than its set's chain
	prefixExternal = "PORTICO-E-" // the external frontends' entry (more masquerading, or by source)
)

// Prefixes of the dispatch tree's chains (nat).
const (
	prefixAddrTree = "PORTICO-A-" // by the destination address's last byte
	prefixPortTree = "PORTICO-N-" // NodePorts, by protocol and port
)

// Kinds of ipset, each one per family: setName(f, kind).
const (
	setClusterIPs  = "CLUSTER-IPS"  // hash:ip: cluster IPs (a port they do not serve is rejected)
	setEmptyReject = "EMPTY-REJECT" // hash:ip,port: frontends without endpoints, rejected
	setEmptyDrop   = "EMPTY-DROP"   // hash:ip,port: frontends without endpoints, dropped
	setFirewall    = "FW"           // hash:ip,port: load-balancer frontends with source ranges
	setFirewallOK  = "FW-ALLOW"     // hash:ip,port,net: frontend and allowed source
	setHairpin     = "HAIRPIN"      // hash:ip,port,ip: local endpoint, its port, itself
)

// setKinds lists the set kinds with their ipset types, in creation order.
var setKinds = []struct{ kind, typ string }{
	{setClusterIPs, "hash:ip"},
	{setEmptyReject, "hash:ip,port"},
	{setEmptyDrop, "hash:ip,port"},
	{setFirewall, "hash:ip,port"},
	{setFirewallOK, "hash:ip,port,net"},
	{setHairpin, "hash:ip,port,ip"},
}

// setPrefix starts the name of every ipset portico owns.
const setPrefix = "PORTICO-"

// setName names the set of kind for family f: "PORTICO-4-CLUSTER-IPS" (at most 22 bytes,
// ipset allows 31; the temporary twin of a full sync adds 2).
func setName(f model.Family, kind string) string {
	return fmt.Sprintf("%s%d-%s", setPrefix, int(f), kind)
}

// tempSetName names the set a full sync fills before swapping it with name.
func tempSetName(name string) string { return name + "-T" }

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// portID identifies a Service port in chain names: 16 base32 characters (80 bits) of the
// SHA-256 of its name, so that every per-port chain name has 26 bytes (iptables allows
// 28). The name itself is in the comments.
func portID(n model.ServicePortName) string {
	sum := sha256.Sum256([]byte(n.String()))
	return idEncoding.EncodeToString(sum[:10])
}

// recentName names the xt_recent list that remembers the clients of one endpoint of a
// DNAT chain (session affinity): it follows the endpoint, not its position, so that a
// change of the other endpoints keeps every client where it was.
func recentName(chain string, ep netip.AddrPort) string {
	sum := sha256.Sum256([]byte(chain + " " + ep.String()))
	return "portico-" + idEncoding.EncodeToString(sum[:10])
}

// maxCommentLen is the longest comment portico writes: xt_comment holds 255 bytes.
const maxCommentLen = 255

// portComment is the comment of a Service port's rules: its name, with any byte that is
// not printable ASCII or that a shell-like split would see (quotes, backslash, blanks)
// replaced by '?', and cut to maxCommentLen. The API's names never hold such bytes; the
// check keeps a bad object from breaking a restore.
func portComment(n model.ServicePortName) string {
	s := n.String()
	var b strings.Builder
	for i := 0; i < len(s) && i < maxCommentLen; i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '\'' || c == '\\' {
			c = '?'
		}
		b.WriteByte(c)
	}
	return b.String()
}
