package nftables

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/model"
)

// TestEndpointElementEncoding: keys are numgen's 32-bit result in host byte order; values
// the address in network byte order, then the port in network byte order padded to a
// 32-bit register; deletions carry the key only. It decodes the elements of the batches
// that addEndpoints and deleteEndpoints write.
func TestEndpointElementEncoding(t *testing.T) {
	key := binary.NativeEndian.AppendUint32(nil, 4097)
	for _, tc := range []struct {
		f     model.Family
		ep    string
		value []byte
	}{
		{model.IPv4, "10.1.2.3:8080", []byte{10, 1, 2, 3, 0x1f, 0x90, 0, 0}},
		{model.IPv6, "[fd00::1]:53", append(netip.MustParseAddr("fd00::1").AsSlice(), 0, 53, 0, 0)},
	} {
		ops := []epOp{{m: "endpoints-tcp-1", slot: 4097, ep: netip.MustParseAddrPort(tc.ep)}}
		for _, del := range []bool{false, true} {
			b := newBatch(newFam(tc.f))
			write, wantType, want := b.addEndpoints, uint16(unix.NFT_MSG_NEWSETELEM), nlElem{key: key, value: tc.value}
			if del {
				write, wantType, want = b.deleteEndpoints, unix.NFT_MSG_DELSETELEM, nlElem{key: key}
			}
			if err := write(newFam(tc.f), ops); err != nil {
				t.Fatal(err)
			}
			typ, got := batchElements(t, b)
			if typ != wantType || len(got) != 1 || !bytes.Equal(got[0].key, want.key) || !bytes.Equal(got[0].value, want.value) {
				t.Errorf("%s %s, deletion %v: message type %d, elements %+v; want type %d, element %+v", tc.f, tc.ep, del, typ, got, wantType, want)
			}
		}
	}
}

// batchElements decodes the keys and values of the elements of a batch of one element
// message, and returns that message's type.
func batchElements(t *testing.T, b *nlBatch) (uint16, []nlElem) {
	t.Helper()
	msgs := batchMessages(t, b)
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	var out []nlElem
	ad := mustDecoder(t, msgs[0].Data[4:])
	for ad.Next() {
		if ad.Type() != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			continue
		}
		list := mustDecoder(t, ad.Bytes())
		for list.Next() {
			var e nlElem
			el := mustDecoder(t, list.Bytes())
			for el.Next() {
				switch el.Type() {
				case unix.NFTA_SET_ELEM_KEY:
					e.key = dataValue(t, el.Bytes())
				case unix.NFTA_SET_ELEM_DATA:
					e.value = dataValue(t, el.Bytes())
				}
			}
			out = append(out, e)
		}
	}
	return uint16(msgs[0].Header.Type) & 0xff, out
}

// dataValue returns the NFTA_DATA_VALUE inside an encoded nested attribute.
func dataValue(t *testing.T, b []byte) []byte {
	t.Helper()
	ad := mustDecoder(t, b)
	for ad.Next() {
		if ad.Type() == unix.NFTA_DATA_VALUE {
			return ad.Bytes()
		}
	}
	t.Fatalf("no NFTA_DATA_VALUE in % x", b)
	return nil
}

// mustDecoder returns a decoder of b's attributes.
func mustDecoder(t *testing.T, b []byte) *netlink.AttributeDecoder {
	t.Helper()
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		t.Fatal(err)
	}
	return ad
}

// TestGroupByMap: operations go per map, maps in name order, no group longer than
// maxElementsPerCommand, and the input is left as it was.
func TestGroupByMap(t *testing.T) {
	var ops []epOp
	for i := range maxElementsPerCommand + 2 {
		ops = append(ops, epOp{m: "endpoints-tcp-2", slot: uint32(i)})
	}
	ops = append(ops, epOp{m: "endpoints-tcp-1", slot: 7})
	groups := groupByMap(ops, maxElementsPerCommand)
	if len(groups) != 3 || groups[0][0].m != "endpoints-tcp-1" || len(groups[1]) != maxElementsPerCommand || len(groups[2]) != 2 {
		t.Fatalf("groups: %d, sizes %d/%d/%d", len(groups), len(groups[0]), len(groups[1]), len(groups[len(groups)-1]))
	}
	if ops[0].m != "endpoints-tcp-2" {
		t.Error("groupByMap reordered its input")
	}
}

// TestEndpointOpsOnly: only a transaction of endpoint-map elements and nothing else goes
// over netlink.
func TestEndpointOpsOnly(t *testing.T) {
	ep := []epOp{{m: "endpoints-tcp-1", slot: 1, ep: netip.MustParseAddrPort("10.0.0.1:80")}}
	for _, tc := range []struct {
		name string
		w    txWriter
		want bool
	}{
		{"endpoints only", txWriter{epDel: ep, epAdd: ep}, true},
		{"additions only", txWriter{epAdd: ep}, true},
		{"empty", txWriter{}, false},
		{"with a rule", txWriter{epAdd: ep, objects: []knftables.Object{&knftables.Rule{Chain: "c", Rule: "accept"}}}, false},
		{"with a shared element", txWriter{epAdd: ep, elAdd: []knftables.Object{&knftables.Element{Set: "cluster-ips", Key: []string{"10.96.0.1"}}}}, false},
		{"with a deletion", txWriter{epAdd: ep, deletes: []knftables.Object{&knftables.Chain{Name: "c"}}}, false},
	} {
		if got := tc.w.endpointOpsOnly(); got != tc.want {
			t.Errorf("%s: endpointOpsOnly() = %v, want %v", tc.name, got, tc.want)
		}
	}
}
