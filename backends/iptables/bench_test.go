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
		c := fs.planFull(tbl, 1<<14)
		size = 0
		for _, p := range fs.x.pieces(c, nftPieceRules) {
			size += len(p.input(c, true))
		}
		_ = fs.fullSetsInput()
	}
	b.ReportMetric(float64(size)/1e6, "MB-text")
}
