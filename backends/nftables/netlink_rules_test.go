package nftables

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/model"
	"github.com/portico-dev/portico/proxier/compile"
)

// TestRuleExprs: each rule form has the expressions nft 1.0.6 sends for the same text
// (`nft --debug=netlink`); other texts have no netlink form.
func TestRuleExprs(t *testing.T) {
	v4, v6 := newFam(model.IPv4), newFam(model.IPv6)
	cmp := func(data ...byte) expr.Any { return &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data} }
	saddr4 := func(n uint32) expr.Any {
		return &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: n}
	}
	cases := []struct {
		f    fam
		text string
		want []expr.Any
	}{
		{v4, "jump mark-off-cluster", []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: "mark-off-cluster"}}},
		{v4, "return", []expr.Any{&expr.Verdict{Kind: expr.VerdictReturn}}},
		{v4, "ip saddr 10.244.0.0/16 goto cluster-a/b/tcp", []expr.Any{saddr4(2), cmp(10, 244),
			&expr.Verdict{Kind: expr.VerdictGoto, Chain: "cluster-a/b/tcp"}}},
		{v4, "ip saddr 10.96.0.0/12 return", []expr.Any{saddr4(4),
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 240, 0, 0}, Xor: []byte{0, 0, 0, 0}},
			cmp(10, 96, 0, 0), &expr.Verdict{Kind: expr.VerdictReturn}}},
		{v6, "ip6 saddr fd00:10:244::/48 return", []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 6},
			cmp(0xfd, 0, 0, 0x10, 2, 0x44), &expr.Verdict{Kind: expr.VerdictReturn}}},
		{v4, `iifname "cni0" jump mark-for-masquerade`, []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, cmp('c', 'n', 'i', '0', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
			&expr.Verdict{Kind: expr.VerdictJump, Chain: "mark-for-masquerade"}}},
		{v4, `iifname "veth*" goto x`, []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, cmp('v', 'e', 't', 'h'),
			&expr.Verdict{Kind: expr.VerdictGoto, Chain: "x"}}},
		{v4, "fib saddr type local return", []expr.Any{
			&expr.Fib{Register: 1, FlagSADDR: true, ResultADDRTYPE: true}, cmp(2, 0, 0, 0), // host byte order (little-endian here)
			&expr.Verdict{Kind: expr.VerdictReturn}}},
		{v4, "meta l4proto tcp dnat ip to numgen random mod 10 offset 48 map @endpoints-tcp-00", []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, cmp(6),
			&expr.Numgen{Register: 1, Modulus: 10, Type: unix.NFT_NG_RANDOM, Offset: 48},
			&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: "endpoints-tcp-00"},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 9}}},
		{v6, "meta l4proto udp dnat ip6 to numgen random mod 3 map @endpoints-udp-01", []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, cmp(17),
			&expr.Numgen{Register: 1, Modulus: 3, Type: unix.NFT_NG_RANDOM},
			&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: "endpoints-udp-01"},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV6, RegAddrMin: 1, RegProtoMin: 2}}},
		// No netlink form: these go through nft.
		{v4, "ip saddr { 10.244.0.0/16, 10.245.0.0/16 } goto x", nil},
		{v4, "ip saddr @affinity-x update @affinity-x { ip saddr } meta l4proto tcp dnat ip to 10.1.1.1:80", nil},
		{v4, "ip6 saddr fd00::/8 return", nil},     // the other family
		{v4, "ip saddr 10.244.1.0/16 return", nil}, // not masked
		{v4, `iifname "a b" return`, nil},
		{v4, "goto", nil},
		{v4, "jump a b", nil},
		{v4, "meta l4proto tcp dnat ip to numgen random mod 10 offset 48", nil},
		{v4, "meta l4proto tcp dnat ip to numgen random mod 0 map @m", nil},
		{v4, "meta l4proto gre dnat ip to numgen random mod 2 map @m", nil},
	}
	for _, c := range cases {
		got, ok := ruleExprs(c.f, c.text)
		if ok != (c.want != nil) || !reflect.DeepEqual(got, c.want) && c.want != nil {
			t.Errorf("%s %q:\n got %v %s\nwant %s", c.f.ip, c.text, ok, exprString(got), exprString(c.want))
		}
		if c.want != nil { // and it encodes
			if err := newBatch(c.f).addRule("c", got, "a comment"); err != nil {
				t.Errorf("%q: %v", c.text, err)
			}
		}
	}
}

// netipAddrPort is the i-th of a range of endpoints.
func netipAddrPort(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 8080)
}

func exprString(es []expr.Any) string {
	var parts []string
	for _, e := range es {
		parts = append(parts, fmt.Sprintf("%T%+v", e, e))
	}
	return strings.Join(parts, " ")
}

// TestRenderedRulesHaveNetlinkForms: every rule the renderer writes for the every-kind
// scenario, under every node setting, has a netlink form but session affinity's (a new
// rule form without one would quietly send its cold-load pieces back through nft).
func TestRenderedRulesHaveNetlinkForms(t *testing.T) {
	variants := append(slices.Clone(backendtest.NodeVariants), backendtest.NodeVariant{
		Name: "interface-prefix", Tweak: func(c *compile.NodeConfig) {
			c.LocalTraffic = compile.LocalTrafficConfig{Mode: "InterfaceNamePrefix", InterfacePrefix: "veth"}
		}})
	for _, v := range variants {
		st := scenario(t, v.Tweak, fixtures...)
		for _, f := range []model.Family{model.IPv4, model.IPv6} {
			tbl := st.Table(f)
			fs := newFamilyState(knftables.NewFake(knftFamily(f), tableName), newFam(f))
			fs.r.node = tbl.Node()
			rules := 0
			for sp := range tbl.All() {
				plan, err := fs.renderPort(sp, nil)
				if err != nil {
					t.Fatalf("%s %s: %v", v.Name, sp.Name, err)
				}
				for _, c := range plan.chains {
					for _, r := range c.rules {
						_, ok := ruleExprs(fs.r.f, r)
						affinity := strings.Contains(r, "update @")
						if ok == affinity {
							t.Errorf("%s %s %s: rule %q: netlink form %v", v.Name, f, sp.Name, r, ok)
						}
						rules++
					}
				}
			}
			if rules == 0 {
				t.Fatalf("%s %s: no rules rendered", v.Name, f)
			}
		}
	}
}

// batchMsg is one decoded message of a batch: its type (NFT_MSG_*), the chain it creates
// or adds a rule to, or the set it adds elements to with their goto targets ("" for an
// element without one).
type batchMsg struct {
	typ       uint16
	chain     string
	set       string
	elemGotos []string
}

// decodeBatch decodes the messages of b.
func decodeBatch(t *testing.T, b *nlBatch) []batchMsg {
	t.Helper()
	var out []batchMsg
	for _, m := range batchMessages(t, b) {
		msg := batchMsg{typ: uint16(m.Header.Type) & 0xff}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			t.Fatal(err)
		}
		for ad.Next() {
			switch {
			case msg.typ == unix.NFT_MSG_NEWCHAIN && ad.Type() == unix.NFTA_CHAIN_NAME,
				msg.typ == unix.NFT_MSG_NEWRULE && ad.Type() == unix.NFTA_RULE_CHAIN:
				msg.chain = ad.String()
			case msg.typ == unix.NFT_MSG_NEWSETELEM && ad.Type() == unix.NFTA_SET_ELEM_LIST_SET:
				msg.set = ad.String()
			case msg.typ == unix.NFT_MSG_NEWSETELEM && ad.Type() == unix.NFTA_SET_ELEM_LIST_ELEMENTS:
				ad.Nested(func(list *netlink.AttributeDecoder) error {
					for list.Next() {
						msg.elemGotos = append(msg.elemGotos, elemGoto(t, list.Bytes()))
					}
					return nil
				})
			}
		}
		if err := ad.Err(); err != nil {
			t.Fatal(err)
		}
		out = append(out, msg)
	}
	return out
}

// elemGoto returns the chain an encoded element's verdict goes to, or "".
func elemGoto(t *testing.T, b []byte) string {
	t.Helper()
	target := ""
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		t.Fatal(err)
	}
	for ad.Next() {
		if ad.Type() != unix.NFTA_SET_ELEM_DATA {
			continue
		}
		ad.Nested(func(data *netlink.AttributeDecoder) error {
			for data.Next() {
				if data.Type() == unix.NFTA_DATA_VERDICT {
					data.Nested(func(v *netlink.AttributeDecoder) error {
						for v.Next() {
							if v.Type() == unix.NFTA_VERDICT_CHAIN {
								target = v.String()
							}
						}
						return nil
					})
				}
			}
			return nil
		})
	}
	return target
}

// TestBatchEncoding: a batch holds its chains, rules and elements in order, elements
// split so that no message's list outgrows its 16-bit length, and only the last message
// asks for an acknowledgement when sent.
func TestBatchEncoding(t *testing.T) {
	b := newBatch(newFam(model.IPv4))
	if err := b.addChain("cluster-a/b/tcp"); err != nil {
		t.Fatal(err)
	}
	exprs, _ := ruleExprs(newFam(model.IPv4), "jump mark-off-cluster")
	if err := b.addRule("cluster-a/b/tcp", exprs, "a/b/TCP"); err != nil {
		t.Fatal(err)
	}
	var eps []nlElem
	for i := range 3000 {
		o := epOp{m: "endpoints-tcp-00", slot: uint32(i), ep: netipAddrPort(i)}
		eps = append(eps, nlElem{key: endpointKey(nil, o), value: endpointValue(nil, newFam(model.IPv4), o)})
	}
	if err := b.addElements("endpoints-tcp-00", eps); err != nil {
		t.Fatal(err)
	}
	if err := b.addElements(mapServiceIPs, []nlElem{{key: make([]byte, 12), gotoChain: "cluster-a/b/tcp", comment: "a/b/TCP"}}); err != nil {
		t.Fatal(err)
	}
	msgs := decodeBatch(t, b)
	raw := batchMessages(t, b)
	elems := 0
	for i, m := range msgs {
		if len(raw[i].Data) > 64<<10 {
			t.Errorf("message %d: %d bytes", i, len(raw[i].Data))
		}
		if m.set == "endpoints-tcp-00" {
			elems += len(m.elemGotos)
		}
	}
	if msgs[0].typ != unix.NFT_MSG_NEWCHAIN || msgs[1].typ != unix.NFT_MSG_NEWRULE || msgs[1].chain != "cluster-a/b/tcp" {
		t.Errorf("first messages: %+v %+v", msgs[0], msgs[1])
	}
	if elems != 3000 || len(msgs) < 5 {
		t.Errorf("%d endpoint elements in %d messages, want 3000 in several", elems, len(msgs)-3)
	}
	if last := msgs[len(msgs)-1]; last.set != mapServiceIPs || !slices.Equal(last.elemGotos, []string{"cluster-a/b/tcp"}) {
		t.Errorf("last message: %+v", last)
	}
	for i, m := range raw {
		if m.Header.Flags&netlink.Acknowledge != 0 {
			t.Errorf("message %d asks for an acknowledgement before the batch is sent", i)
		}
		if m.Header.Sequence != uint32(i+1) {
			t.Errorf("message %d has sequence number %d", i, m.Header.Sequence)
		}
	}
	var begin, end netlink.Message
	if err := begin.UnmarshalBinary(batchMarker(unix.NFNL_MSG_BATCH_BEGIN, 0)); err != nil || begin.Header.Type != unix.NFNL_MSG_BATCH_BEGIN {
		t.Errorf("batch begin message %+v (%v)", begin, err)
	}
	if err := end.UnmarshalBinary(batchMarker(unix.NFNL_MSG_BATCH_END, 9)); err != nil || end.Header.Type != unix.NFNL_MSG_BATCH_END ||
		end.Header.Sequence != 9 || !slices.Equal(end.Data, []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES}) {
		t.Errorf("batch end message %+v (%v)", end, err)
	}
}

// batchMessages parses the messages of b's buffer, failing the test if one is malformed.
func batchMessages(t *testing.T, b *nlBatch) []netlink.Message {
	t.Helper()
	var out []netlink.Message
	for rest := b.buf; len(rest) > 0; {
		if len(rest) < unix.NLMSG_HDRLEN {
			t.Fatalf("%d bytes left after %d messages", len(rest), len(out))
		}
		l := int(binary.NativeEndian.Uint32(rest))
		if l < unix.NLMSG_HDRLEN || l > len(rest) || l%4 != 0 {
			t.Fatalf("message %d: length %d of %d bytes left", len(out), l, len(rest))
		}
		var m netlink.Message
		if err := m.UnmarshalBinary(rest[:l]); err != nil {
			t.Fatalf("message %d: %v", len(out), err)
		}
		out = append(out, m)
		rest = rest[l:]
	}
	if len(out) != b.msgs {
		t.Fatalf("%d messages in the buffer, the batch counts %d", len(out), b.msgs)
	}
	return out
}
