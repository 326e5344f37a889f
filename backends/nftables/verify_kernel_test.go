//go:build e2e

package nftables

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/model"
)

// TestKernelVerifyRepair removes portico's rules from the kernel in each of the ways an
// administrator or a firewall service does, and checks that Verify reports exactly those
// families as missing and that a full sync restores a table identical to the one before.
func TestKernelVerifyRepair(t *testing.T) {
	defer enterFreshNetns(t)()
	ctx := context.Background()
	st := scenario(t, nil, fixtures...)
	b := kernelBackend()
	want := map[model.Family]string{}
	for _, tbl := range st.Tables {
		if err := b.Verify(ctx, tbl.Family()); err != nil {
			t.Fatalf("%s before any sync: Verify = %v, want nil (nothing to verify)", tbl.Family(), err)
		}
		if err := b.Sync(ctx, tbl, model.Compare(nil, tbl)); err != nil {
			t.Fatalf("%s full sync: %v", tbl.Family(), err)
		}
		want[tbl.Family()] = kernelCanonical(t, tbl.Family())
	}
	verifyAll(ctx, t, b, st, "after the first sync", nil)
	// Each command line is built when its case runs (the sets to flush are listed then).
	words := func(line string) func() []string { return func() []string { return strings.Fields(line) } }
	for _, tc := range []struct {
		name    string
		args    func() []string
		missing []model.Family
	}{
		{"flush ruleset", words("flush ruleset"), []model.Family{model.IPv4, model.IPv6}},
		{"delete table", words("delete table ip " + tableName), []model.Family{model.IPv4}},
		{"flush table", words("flush table ip6 " + tableName), []model.Family{model.IPv6}},
		// nft 1.0.6 keeps the elements of a flushed table's sets and maps; the repair must
		// restore them too where `flush table` empties them.
		{"flush table, sets and maps", func() []string { return []string{flushTableAndSets(t, "ip")} }, []model.Family{model.IPv4}},
		{"flush chain services", words("flush chain ip " + tableName + " " + chainServices), []model.Family{model.IPv4}},
		{"flush base chain", words("flush chain ip6 " + tableName + " nat-postrouting"), []model.Family{model.IPv6}},
		{"rule added to a fixed chain", words("add rule ip " + tableName + " " + chainServices + " counter"), []model.Family{model.IPv4}},
	} {
		args := tc.args()
		nft(t, args...)
		verifyAll(ctx, t, b, st, "after nft "+strings.Join(args, " "), tc.missing)
		for _, f := range tc.missing {
			if err := b.Sync(ctx, st.Table(f), model.Diff{Full: true}); err != nil {
				t.Fatalf("%s: repairing %s: %v", tc.name, f, err)
			}
			if got := kernelCanonical(t, f); got != want[f] {
				t.Errorf("%s: %s after the repair differs from the table before:\n%s", tc.name, f, backendtest.FirstDiff(want[f], got))
			}
		}
		verifyAll(ctx, t, b, st, "after the repair of "+tc.name, nil)
	}
	if err := b.Cleanup(ctx); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
}

// flushTableAndSets returns an nft command line that flushes portico's table of nft
// family fam and empties every set and map of it.
func flushTableAndSets(t *testing.T, fam string) string {
	t.Helper()
	cmds := []string{fmt.Sprintf("flush table %s %s", fam, tableName)}
	for _, kind := range []string{"set", "map"} {
		for _, line := range strings.Split(nft(t, "list", kind+"s", fam), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == kind && f[2] == "{" {
				cmds = append(cmds, fmt.Sprintf("flush %s %s %s %s", kind, fam, tableName, f[1]))
			}
		}
	}
	if len(cmds) < 4 {
		t.Fatalf("table %s %s has too few sets and maps to flush: %q", fam, tableName, cmds)
	}
	return strings.Join(cmds, "; ")
}

// verifyAll checks that Verify reports the families in missing as missing and the others
// as intact.
func verifyAll(ctx context.Context, t *testing.T, b *Backend, st *model.State, when string, missing []model.Family) {
	t.Helper()
	for _, tbl := range st.Tables {
		f := tbl.Family()
		err := b.Verify(ctx, f)
		switch {
		case slices.Contains(missing, f) && !errors.Is(err, backends.ErrRulesMissing):
			t.Errorf("%s: Verify(%s) = %v, want ErrRulesMissing", when, f, err)
		case !slices.Contains(missing, f) && err != nil:
			t.Errorf("%s: Verify(%s) = %v, want nil", when, f, err)
		case err != nil:
			t.Logf("%s: %s: %v", when, f, err)
		}
	}
}

// TestKernelVerifyCost measures Verify over a table of 100 Services and one of 10,000
// (× 10 endpoints): its cost must not grow with the table.
func TestKernelVerifyCost(t *testing.T) {
	defer enterFreshNetns(t)()
	small := verifyCost(t, 100)
	large := verifyCost(t, 10000)
	t.Logf("Verify: median %v at 100 Services, %v at 10,000", small, large)
	if large > 3*small+500*time.Microsecond {
		t.Errorf("Verify takes %v at 10,000 Services and %v at 100: it grows with the table", large, small)
	}
}

// verifyCost loads n Services × 10 endpoints and returns the median time of 101 Verify
// calls; it removes the table again.
func verifyCost(t *testing.T, n int) time.Duration {
	t.Helper()
	ctx := context.Background()
	b := New(backends.Options{MasqueradeBit: 14, Families: []model.Family{model.IPv4}})
	if err := b.Sync(ctx, benchTable(n, 10), model.Diff{Full: true}); err != nil {
		t.Fatalf("loading %d Services: %v", n, err)
	}
	times := make([]time.Duration, 101)
	for i := range times {
		start := time.Now()
		if err := b.Verify(ctx, model.IPv4); err != nil {
			t.Fatalf("%d Services: Verify = %v, want nil", n, err)
		}
		times[i] = time.Since(start)
	}
	slices.Sort(times)
	if err := b.Cleanup(ctx); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
	t.Logf("%s Services: Verify min %v, median %v, max %v", fmt.Sprint(n), times[0], times[50], times[100])
	return times[50]
}
