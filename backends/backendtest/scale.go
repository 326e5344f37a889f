package backendtest

import (
	"fmt"
	"net/netip"

	"github.com/portico-dev/portico/model"
)

// ScaleTable returns an IPv4 table of n ClusterIP Service ports (TCP 80, cluster IPs from
// 10.96.0.0) with e ready endpoints each (from 10.240.0.0), for the scale tests and
// benchmarks of every backend.
func ScaleTable(n, e int) *model.Table {
	node := model.Node{Name: "node-a", LocalTraffic: model.LocalTraffic{CIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}}}
	ports := make([]*model.ServicePort, 0, n)
	for i := range n {
		ports = append(ports, ScalePort(i, e, 0))
	}
	return model.NewTable(model.IPv4, node).Update(node, ports, nil)
}

// ScalePort returns the i-th Service port of ScaleTable, its endpoints shifted by gen (a
// different gen replaces every endpoint, as a rolling update does).
func ScalePort(i, e, gen int) *model.ServicePort {
	sp := &model.ServicePort{
		Name:      model.ServicePortName{Namespace: "bench", Name: fmt.Sprintf("svc-%05d", i), Protocol: model.TCP},
		Frontends: []model.Frontend{{Kind: model.ClusterIP, Addr: netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}), Port: 80}},
		Internal:  model.Traffic{Endpoints: model.ClusterEndpoints, Masquerade: model.MasqueradeOffCluster, Empty: model.Reject},
	}
	for j := range e {
		sp.Cluster = append(sp.Cluster, model.Endpoint{Addr: netip.AddrFrom4([4]byte{10, byte(240 + i>>12), byte(i >> 4), byte(i<<4 | j&0xf)}),
			Port: uint16(8080 + gen), Ready: true, Serving: true})
	}
	return sp.Seal()
}
