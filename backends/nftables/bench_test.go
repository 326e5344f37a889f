package nftables

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/model"
)

// benchTable returns n ClusterIP Service ports with e endpoints each.
func benchTable(n, e int) *model.Table {
	node := model.Node{Name: "node-a", LocalTraffic: model.LocalTraffic{CIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}}}
	ports := make([]*model.ServicePort, 0, n)
	for i := range n {
		sp := &model.ServicePort{
			Name:      model.ServicePortName{Namespace: "bench", Name: fmt.Sprintf("svc-%05d", i), Protocol: model.TCP},
			Frontends: []model.Frontend{{Kind: model.ClusterIP, Addr: netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}), Port: 80}},
			Internal:  model.Traffic{Endpoints: model.ClusterEndpoints, Masquerade: model.MasqueradeOffCluster, Empty: model.Reject},
		}
		for j := range e {
			sp.Cluster = append(sp.Cluster, model.Endpoint{Addr: netip.AddrFrom4([4]byte{10, byte(240 + i>>14), byte(i >> 6), byte(i<<2 | j>>3)}), Port: 8080, Ready: true, Serving: true})
		}
		ports = append(ports, sp.Seal())
	}
	return model.NewTable(model.IPv4, node).Update(node, ports, nil)
}

// BenchmarkFullSyncRender measures a full sync of 10,000 Services × 10 endpoints up to
// the transaction text, without running nft: what portico adds to the kernel's own work.
func BenchmarkFullSyncRender(b *testing.B) {
	tbl := benchTable(10000, 10)
	var size int
	execNFT = func(_ context.Context, text *bytes.Buffer) error { size += text.Len(); return nil }
	defer func() { execNFT = runNFT }()
	b.ResetTimer()
	for range b.N {
		size = 0 // the text of all the cold load's transactions
		be := New(backends.Options{MasqueradeBit: 14})
		be.newNFT = func(model.Family) (knftables.Interface, error) {
			return knftables.NewFake(knftables.IPv4Family, tableName), nil
		}
		if err := be.Sync(context.Background(), tbl, model.Diff{Full: true}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(size)/1e6, "MB-text")
}

// BenchmarkFullRewrite measures a full sync of 10,000 Services × 10 endpoints over a table
// the kernel already holds (a restart, the hourly full sync) up to the streamed text,
// without running nft.
func BenchmarkFullRewrite(b *testing.B) {
	tbl := benchTable(10000, 10)
	execNFT = func(context.Context, *bytes.Buffer) error { return nil }
	size := 0
	streamNFT = func(_ context.Context, produce func(func(*bytes.Buffer) error) error) error {
		return produce(func(text *bytes.Buffer) error { size += text.Len(); return nil })
	}
	defer func() { execNFT, streamNFT = runNFT, runNFTStream }()
	fake := knftables.NewFake(knftables.IPv4Family, tableName)
	be := New(backends.Options{MasqueradeBit: 14})
	be.newNFT = func(model.Family) (knftables.Interface, error) { return fake, nil }
	ctx := context.Background()
	if err := be.Sync(ctx, tbl, model.Diff{Full: true}); err != nil { // cold: the mirror
		b.Fatal(err)
	}
	// What ListAll finds: the table and every chain of the earlier run.
	tx := fake.NewTransaction()
	tx.Add(&knftables.Table{})
	for _, ps := range be.fams[model.IPv4].ports {
		for _, c := range ps.chains {
			tx.Add(&knftables.Chain{Name: c.name})
		}
	}
	if err := fake.Run(ctx, tx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		size = 0
		if err := be.Sync(ctx, tbl, model.Diff{Full: true}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(size)/1e6, "MB-text")
}
