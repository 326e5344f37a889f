package ipvs

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/model"
)

// TestRemoveKubeProxyServices checks which virtual servers kube-proxy's removal deletes:
// those on kube-ipvs0's addresses and kube-proxy's NodePorts on other addresses, never
// portico's (its every-kind scenario, NodePorts on the node's addresses included) nor one
// on a NodePort kube-proxy did not list.
func TestRemoveKubeProxyServices(t *testing.T) {
	e := newEnv(t, backends.Options{})
	everyKind(t, e)
	before := e.h.Dump()
	kpClusterIP := netip.MustParseAddr("10.96.200.1")
	node := backendtest.NodeAddrs()[0]
	add := func(a netip.Addr, p model.Protocol, port uint16) string {
		if err := e.h.NewService(service(vsKey{a, p, port}, &virtualServer{scheduler: "rr"})); err != nil {
			t.Fatal(err)
		}
		return netip.AddrPortFrom(a, port).String()
	}
	gone := []string{add(kpClusterIP, model.TCP, 80), add(kpClusterIP, model.UDP, 53), add(node, model.TCP, 31999), add(node, model.UDP, 31998)}
	kept := add(node, model.TCP, 31997)
	nodePorts := map[string]map[uint16]bool{"tcp": {31999: true}, "udp": {31998: true}}
	n, err := e.b.removeKubeProxyServices(context.Background(), map[netip.Addr]bool{kpClusterIP: true}, nodePorts)
	if err != nil {
		t.Fatal(err)
	}
	got := e.h.Dump()
	if n != len(gone) {
		t.Errorf("deleted %d virtual servers, want %d", n, len(gone))
	}
	for _, g := range gone {
		if strings.Contains(got, g) {
			t.Errorf("kube-proxy's %s is left:\n%s", g, got)
		}
	}
	if !strings.Contains(got, kept) {
		t.Errorf("%s (a NodePort kube-proxy did not list) was deleted", kept)
	}
	if rest := strings.Replace(got, "TCP "+kept+" rr\n", "", 1); rest != before {
		t.Errorf("portico's virtual servers changed:\n--- before\n%s--- after\n%s", before, rest)
	}
}
