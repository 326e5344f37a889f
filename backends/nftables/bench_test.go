package nftables

import (
	"bytes"
	"context"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/model"
)

// benchTable returns n ClusterIP Service ports with e endpoints each (the test kit's
// scale table, shared with the other backends' benchmarks).
func benchTable(n, e int) *model.Table { return backendtest.ScaleTable(n, e) }

// BenchmarkFullSyncRender measures a full sync of 10,000 Services × 10 endpoints up to
// the transaction text and the netlink batches, without sending them: what portico adds
// to the kernel's own work.
func BenchmarkFullSyncRender(b *testing.B) {
	tbl := benchTable(10000, 10)
	var size int
	execNFT = func(_ context.Context, text *bytes.Buffer) error { size += text.Len(); return nil }
	execBatch = func(_ context.Context, nb *nlBatch) error { size += nb.size(); return nil }
	defer func() { execNFT, execBatch = runNFT, runBatch }()
	b.ResetTimer()
	for range b.N {
		size = 0 // the text and the netlink messages of all the cold load's transactions
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
	execBatch = func(context.Context, *nlBatch) error { return nil }
	defer func() { execBatch = runBatch }()
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
