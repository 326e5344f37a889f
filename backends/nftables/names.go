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
// "namespace/name/proto/port" ("namespace/name/proto" for an unnamed port). At the API's
// limits (63-character namespace and name, 15-character port name) it has 148 bytes, and
// with the longest prefix 156, well within nft's 255. A suffix that would not fit, or that
// holds a byte outside the API's names, is shortened (see boundName).
func portSuffix(n model.ServicePortName) string {
	s := n.Namespace + "/" + n.Name + "/" + proto(n.Protocol)
	if n.Port != "" {
		s += "/" + n.Port
	}
	return boundName(s, maxSuffixLen)
}

// portComment is the comment of a Service port's rules and of the map elements it owns:
// the port's name (ServicePortName.String), bounded and escaped by boundComment. At the
// API's limits the name has 148 bytes, more than nft's 128.
func portComment(n model.ServicePortName) string {
	return boundComment(n.String(), maxCommentLen)
}

// affinityComment is the comment of an affinity set: which Service port and endpoint it is
// for. The endpoint is kept whole (at most 47 bytes); the port's name is shortened to make
// room for it.
func affinityComment(n model.ServicePortName, ep model.Endpoint) string {
	tail := " -> " + ep.String()
	return boundComment(boundComment(n.String(), maxCommentLen-len(tail))+tail, maxCommentLen)
}

// Limits of the text nft and the kernel accept, measured with nft 1.0.6 on kernel 6.18.
const (
	// maxCommentLen is the longest comment nft accepts, in bytes: a longer one fails with
	// "comment too long, 128 characters maximum allowed" (libnftnl's
	// NFTNL_UDATA_COMMENT_MAXLEN), for rules, set elements and sets alike.
	maxCommentLen = 128
	// maxNameLen is the longest chain, set or map name the kernel accepts, in bytes
	// (NFT_NAME_MAXLEN, 256 with the terminating NUL): a longer one fails with "Numerical
	// result out of range".
	maxNameLen = 255
	// maxSuffixLen is the longest port suffix: chain names are a prefix (prefixCluster is
	// the longest) and a suffix.
	maxSuffixLen = maxNameLen - len(prefixCluster)
	// hashLen is the number of hex digits of the hash that ends a shortened text (64 bits:
	// two shortened names never meet in practice).
	hashLen = 16
)

// boundName returns s when it has at most limit bytes, all of them bytes of the API's names
// (nameByte); otherwise its first bytes (others replaced by '_'), '_' and a hash of s, in
// limit bytes. nft takes the result as part of an identifier, and since no Namespace, name
// or port name holds '_', a shortened suffix never equals one that was not shortened.
func boundName(s string, limit int) string {
	if len(s) <= limit && allBytes(s, nameByte) {
		return s
	}
	return shorten(s, limit, nameByte, '_', '_')
}

// boundComment returns s when it has at most limit bytes, all printable ASCII other than
// '"' and '\' (commentByte); otherwise its first bytes (others replaced by '?'), '~' and a
// hash of s, in limit bytes. A comment is written between double quotes, and nft's quoted
// strings have no escapes: a '"' would end it, a newline split the command.
func boundComment(s string, limit int) string {
	if len(s) <= limit && allBytes(s, commentByte) {
		return s
	}
	return shorten(s, limit, commentByte, '?', '~')
}

// shorten returns the first bytes of s, those keep rejects replaced by placeholder,
// followed by sep and a hash of all of s, in at most limit bytes (limit > hashLen).
func shorten(s string, limit int, keep func(byte) bool, placeholder, sep byte) string {
	n := min(len(s), limit-hashLen-1)
	out := make([]byte, 0, n+1+hashLen)
	for i := range n {
		c := s[i]
		if !keep(c) {
			c = placeholder
		}
		out = append(out, c)
	}
	sum := sha256.Sum256([]byte(s))
	out = append(out, sep)
	return string(hex.AppendEncode(out, sum[:hashLen/2]))
}

// nameByte reports whether c may appear in a Kubernetes namespace, Service name or port
// name (lower-case letters, digits, '-') or separates them in a port suffix ('/'); nft
// takes all of these in identifiers.
func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '/'
}

// commentByte reports whether c may appear in a comment as it is: printable ASCII other
// than '"' (which would end the quoted string) and '\' (which Go's %q, used by knftables,
// would double).
func commentByte(c byte) bool {
	return c >= ' ' && c <= '~' && c != '"' && c != '\\'
}

func allBytes(s string, ok func(byte) bool) bool {
	for i := range len(s) {
		if !ok(s[i]) {
			return false
		}
	}
	return true
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
