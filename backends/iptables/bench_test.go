package iptables

import (
	"testing"

	"github.com/portico-dev/portico/backends/backendtest"
)

// BenchmarkFullPlan measures what portico adds to the kernel's work in a full sync of
// 10,000 Services × 10 endpoints: rendering, the mirror and the restore inputs.
func BenchmarkFullPlan(b *testing.B) {
	tbl := backendtest.ScaleTable(10000, 10)
	var size int
	for range b.N {
		fs := newFamilyState(newFam(tbl.Family()))
		fs.pieceRules, fs.x.descending = nftPieceRules, true
		size = 0
		fs.planFull(tbl, 1<<14, nil, func(in fullInput) bool {
			size += len(in.data)
			return true
		})
	}
	b.ReportMetric(float64(size)/1e6, "MB-text")
}
