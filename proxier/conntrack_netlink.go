package proxier

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/portico-dev/portico/model"
)

// Kernel-side conntrack dump filters (Linux 5.8 and later): CTA_FILTER holds which fields
// of the CTA_TUPLE_ORIG and CTA_TUPLE_REPLY given in the request an entry must match.
const (
	ctaFilter           = 25 // CTA_FILTER in enum ctattr_type
	ctaFilterOrigFlags  = 1
	ctaFilterReplyFlags = 2
	filterIPSrc         = 1 << 0
	filterIPDst         = 1 << 1
	filterProtoNum      = 1 << 3
	filterProtoSrcPort  = 1 << 4
	filterProtoDstPort  = 1 << 5
)

// maxFilteredDumps is the most stale flows deleted with one filtered dump each; more are
// deleted with one dump of the family's UDP entries, which is then cheaper.
const maxFilteredDumps = 32

// ctSocket is a netfilter netlink socket opened in the caller's network namespace.
type ctSocket struct {
	s      *nl.NetlinkSocket
	family model.Family
	// filters is false once the kernel refused a filtered dump: the dumps are then
	// filtered here.
	filters bool
}

// openCtSocket opens the socket, with send and receive timeouts that end at deadline
// (none when zero).
func openCtSocket(family model.Family, deadline time.Time) (*ctSocket, error) {
	s, err := nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("opening a netfilter netlink socket: %w", err)
	}
	if !deadline.IsZero() {
		tv := unix.NsecToTimeval(max(time.Until(deadline), time.Millisecond).Nanoseconds())
		if err := errors.Join(s.SetReceiveTimeout(&tv), s.SetSendTimeout(&tv)); err != nil {
			s.Close()
			return nil, fmt.Errorf("setting the netlink socket timeouts: %w", err)
		}
	}
	return &ctSocket{s: s, family: family, filters: true}, nil
}

func (c *ctSocket) close() { c.s.Close() }

func (c *ctSocket) request(msg, flags int) *nl.NetlinkRequest {
	req := &nl.NetlinkRequest{
		NlMsghdr: unix.NlMsghdr{
			Len:   uint32(unix.SizeofNlMsghdr),
			Type:  uint16(netlink.ConntrackTable)<<8 | uint16(msg),
			Flags: unix.NLM_F_REQUEST | uint16(flags),
		},
		Sockets: map[int]*nl.SocketHandle{unix.NETLINK_NETFILTER: {Socket: c.s}},
	}
	req.AddData(&nl.Nfgenmsg{NfgenFamily: uint8(inetFamily(c.family)), Version: nl.NFNETLINK_V0})
	return req
}

// deleteFlows deletes the UDP entries that match any of flows: with a filtered dump per
// flow when there are few, else with one dump of the UDP entries.
func (c *ctSocket) deleteFlows(flows []StaleFlow) error {
	filters := make([]netlink.CustomConntrackFilter, len(flows))
	for i, f := range flows {
		filters[i] = flowFilter(f)
	}
	if len(flows) > maxFilteredDumps {
		return c.deleteMatching(udpOnly(), filters)
	}
	var errs []error
	for i, f := range flows {
		errs = append(errs, c.deleteMatching(flowDumpFilter(f), filters[i:i+1]))
	}
	return errors.Join(errs...)
}

// dumpFilter is the kernel-side filter of a dump: the fields of orig and reply selected
// by the flags.
type dumpFilter struct {
	orig, reply           []*nl.RtAttr
	origFlags, replyFlags uint32
}

// udpOnly selects the UDP entries.
func udpOnly() dumpFilter {
	return dumpFilter{orig: []*nl.RtAttr{protoAttr(0, 0)}, origFlags: filterProtoNum}
}

// flowDumpFilter selects the UDP entries of one stale flow: its original destination
// (its port only when the frontend has no address) and, when it has one, its endpoint as
// the source of replies. IPv6 addresses are left out of the kernel's filter, which did not
// match them on the kernels tried (6.18); the ports still leave few entries, and
// deleteMatching checks every field.
func flowDumpFilter(f StaleFlow) dumpFilter {
	d := dumpFilter{origFlags: filterProtoNum | filterProtoDstPort}
	if a := f.Frontend.Addr(); a.Is4() {
		d.orig = append(d.orig, ipAttr(a, false))
		d.origFlags |= filterIPDst
	}
	d.orig = append(d.orig, protoAttr(nl.CTA_PROTO_DST_PORT, f.Frontend.Port()))
	if !f.Endpoint.IsValid() {
		return d
	}
	d.replyFlags = filterProtoNum | filterProtoSrcPort
	if a := f.Endpoint.Addr(); a.Is4() {
		d.reply = append(d.reply, ipAttr(a, true))
		d.replyFlags |= filterIPSrc
	}
	d.reply = append(d.reply, protoAttr(nl.CTA_PROTO_SRC_PORT, f.Endpoint.Port()))
	return d
}

// ipAttr is a CTA_TUPLE_IP holding a as source or destination.
func ipAttr(a netip.Addr, src bool) *nl.RtAttr {
	typ := nl.CTA_IP_V4_DST
	switch {
	case a.Is6() && src:
		typ = nl.CTA_IP_V6_SRC
	case a.Is6():
		typ = nl.CTA_IP_V6_DST
	case src:
		typ = nl.CTA_IP_V4_SRC
	}
	at := nl.NewRtAttr(nl.CTA_TUPLE_IP|int(nl.NLA_F_NESTED), nil)
	at.AddRtAttr(typ, a.AsSlice())
	return at
}

// protoAttr is a CTA_TUPLE_PROTO of UDP holding port as attribute typ (none when 0).
func protoAttr(typ int, port uint16) *nl.RtAttr {
	at := nl.NewRtAttr(nl.CTA_TUPLE_PROTO|int(nl.NLA_F_NESTED), nil)
	at.AddRtAttr(nl.CTA_PROTO_NUM, nl.Uint8Attr(unix.IPPROTO_UDP))
	if typ != 0 {
		at.AddRtAttr(typ, nl.BEUint16Attr(port))
	}
	return at
}

// deleteMatching dumps the entries the kernel selects with f and deletes those that match
// one of filters (checked here too: a kernel without dump filters returns everything). A
// kernel that refuses the filter gets an unfiltered dump.
func (c *ctSocket) deleteMatching(f dumpFilter, filters []netlink.CustomConntrackFilter) error {
	rows, err := c.dump(f)
	if err != nil && c.filters && (errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)) {
		c.filters = false
		rows, err = c.dump(f)
	}
	if err != nil {
		return fmt.Errorf("listing the conntrack entries of %s: %w", c.family, err)
	}
	var failed int
	var first error
	for _, raw := range rows {
		flow, ok := parseEntry(raw)
		if !ok || !matchesAny(flow, filters) {
			continue
		}
		if err := c.deleteEntry(raw); err != nil {
			failed++
			first = cond(first == nil, fmt.Errorf("deleting the conntrack entry %s: %w", flow, err), first)
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d conntrack entries of %s could not be deleted, the first: %w", failed, c.family, first)
	}
	return nil
}

func matchesAny(flow *netlink.ConntrackFlow, filters []netlink.CustomConntrackFilter) bool {
	for _, f := range filters {
		if f.MatchConntrackFlow(flow) {
			return true
		}
	}
	return false
}

// dump lists the entries of the family, filtered by the kernel with f unless it refused.
func (c *ctSocket) dump(f dumpFilter) ([][]byte, error) {
	req := c.request(nl.IPCTNL_MSG_CT_GET, unix.NLM_F_DUMP)
	if c.filters {
		if len(f.orig) > 0 {
			t := nl.NewRtAttr(nl.CTA_TUPLE_ORIG|int(nl.NLA_F_NESTED), nil)
			for _, a := range f.orig {
				t.AddChild(a)
			}
			req.AddData(t)
		}
		if len(f.reply) > 0 {
			t := nl.NewRtAttr(nl.CTA_TUPLE_REPLY|int(nl.NLA_F_NESTED), nil)
			for _, a := range f.reply {
				t.AddChild(a)
			}
			req.AddData(t)
		}
		fa := nl.NewRtAttr(ctaFilter|int(nl.NLA_F_NESTED), nil)
		fa.AddRtAttr(ctaFilterOrigFlags, nl.Uint32Attr(f.origFlags))
		fa.AddRtAttr(ctaFilterReplyFlags, nl.Uint32Attr(f.replyFlags))
		req.AddData(fa)
	}
	return req.Execute(unix.NETLINK_NETFILTER, 0)
}

// deleteEntry deletes the entry raw (as a dump returned it); one already gone is not an
// error.
func (c *ctSocket) deleteEntry(raw []byte) error {
	req := c.request(nl.IPCTNL_MSG_CT_DELETE, unix.NLM_F_ACK)
	req.AddRawData(raw[4:]) // without the nfgenmsg, which request adds
	_, err := req.Execute(unix.NETLINK_NETFILTER, 0)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

// parseEntry reads the protocol, addresses and ports of a dumped entry.
func parseEntry(raw []byte) (*netlink.ConntrackFlow, bool) {
	if len(raw) < 4 {
		return nil, false
	}
	attrs, err := nl.ParseRouteAttr(raw[4:])
	if err != nil {
		return nil, false
	}
	flow := &netlink.ConntrackFlow{}
	var orig, reply bool
	for _, a := range attrs {
		switch a.Attr.Type & nl.NLA_TYPE_MASK {
		case nl.CTA_TUPLE_ORIG:
			orig = parseTuple(a.Value, &flow.Forward)
		case nl.CTA_TUPLE_REPLY:
			reply = parseTuple(a.Value, &flow.Reverse)
		}
	}
	return flow, orig && reply
}

// parseTuple reads a CTA_TUPLE_* attribute's value into t.
func parseTuple(b []byte, t *netlink.IPTuple) bool {
	attrs, err := nl.ParseRouteAttr(b)
	if err != nil {
		return false
	}
	for _, a := range attrs {
		inner, err := nl.ParseRouteAttr(a.Value)
		if err != nil {
			return false
		}
		switch a.Attr.Type & nl.NLA_TYPE_MASK {
		case nl.CTA_TUPLE_IP:
			readIPs(inner, t)
		case nl.CTA_TUPLE_PROTO:
			readProto(inner, t)
		}
	}
	return t.SrcIP != nil && t.DstIP != nil
}

func readIPs(attrs []syscall.NetlinkRouteAttr, t *netlink.IPTuple) {
	for _, a := range attrs {
		switch a.Attr.Type & nl.NLA_TYPE_MASK {
		case nl.CTA_IP_V4_SRC, nl.CTA_IP_V6_SRC:
			t.SrcIP = net.IP(a.Value)
		case nl.CTA_IP_V4_DST, nl.CTA_IP_V6_DST:
			t.DstIP = net.IP(a.Value)
		}
	}
}

func readProto(attrs []syscall.NetlinkRouteAttr, t *netlink.IPTuple) {
	for _, a := range attrs {
		switch a.Attr.Type & nl.NLA_TYPE_MASK {
		case nl.CTA_PROTO_NUM:
			if len(a.Value) == 1 {
				t.Protocol = a.Value[0]
			}
		case nl.CTA_PROTO_SRC_PORT:
			if len(a.Value) == 2 {
				t.SrcPort = uint16(a.Value[0])<<8 | uint16(a.Value[1])
			}
		case nl.CTA_PROTO_DST_PORT:
			if len(a.Value) == 2 {
				t.DstPort = uint16(a.Value[0])<<8 | uint16(a.Value[1])
			}
		}
	}
}
