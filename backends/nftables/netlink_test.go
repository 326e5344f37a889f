package nftables

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/model"
)

// TestEndpointElementEncoding: keys are numgen's 32-bit result in host byte order; values
// the address in network byte order, then the port in network byte order padded to a
// 32-bit register; deletions carry the key only.
func TestEndpointElementEncoding(t *testing.T) {
	ops := []epOp{
		{m: "endpoints-tcp-1", slot: 4097, ep: netip.MustParseAddrPort("10.1.2.3:8080")},
	}
	got := []nlElem{endpointElem(ops[0], newFam(model.IPv4))}
	key := binary.NativeEndian.AppendUint32(nil, 4097)
	if !bytes.Equal(got[0].key, key) {
		t.Errorf("key % x, want % x", got[0].key, key)
	}
	value := []byte{10, 1, 2, 3, 0x1f, 0x90, 0, 0}
	if !bytes.Equal(got[0].value, value) {
		t.Errorf("IPv4 value % x, want % x", got[0].value, value)
	}
	v6 := []epOp{{m: "endpoints-tcp-1", slot: 1, ep: netip.MustParseAddrPort("[fd00::1]:53")}}
	got6 := []nlElem{endpointElem(v6[0], newFam(model.IPv6))}
	want := append(netip.MustParseAddr("fd00::1").AsSlice(), 0, 53, 0, 0)
	if !bytes.Equal(got6[0].value, want) {
		t.Errorf("IPv6 value % x, want % x", got6[0].value, want)
	}
	for _, del := range []bool{false, true} {
		b := newBatch(newFam(model.IPv4))
		write := b.addEndpoints
		if del {
			write = b.deleteEndpoints
		}
		if err := write(newFam(model.IPv4), ops); err != nil {
			t.Fatal(err)
		}
		msgs := batchMessages(t, b)
		wantType := map[bool]uint16{false: unix.NFT_MSG_NEWSETELEM, true: unix.NFT_MSG_DELSETELEM}[del]
		if len(msgs) != 1 || uint16(msgs[0].Header.Type)&0xff != wantType {
			t.Fatalf("deletion %v: messages %+v", del, msgs)
		}
		if !bytes.Contains(msgs[0].Data, key) || bytes.Contains(msgs[0].Data, value) == del {
			t.Errorf("deletion %v: message % x: key %v, value %v", del, msgs[0].Data, bytes.Contains(msgs[0].Data, key), bytes.Contains(msgs[0].Data, value))
		}
	}
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
