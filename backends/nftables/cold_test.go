package nftables

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/model"
)

// coldStep is one step of a recorded cold load: an nft transaction's text, or a netlink
// batch of endpoint elements.
type coldStep struct {
	text string
	ops  []epOp
}

// recordColdLoad runs a cold load of tbl with nft and netlink both recorded (nothing
// reaches a kernel) and returns the steps in order.
func recordColdLoad(t *testing.T, tbl *model.Table) []coldStep {
	t.Helper()
	var steps []coldStep
	execNFT = func(_ context.Context, text *bytes.Buffer) error {
		steps = append(steps, coldStep{text: text.String()})
		return nil
	}
	execEndpointOps = func(_ context.Context, _ fam, del, add []epOp) error {
		if len(del) > 0 {
			t.Errorf("a cold load deleted %d endpoint elements", len(del))
		}
		steps = append(steps, coldStep{ops: add})
		return nil
	}
	defer func() { execNFT, execEndpointOps = runNFT, runEndpointOps }()
	prev := minChunkOps
	minChunkOps = 200 // several chunks for a small table
	defer func() { minChunkOps = prev }()
	be := New(backends.Options{MasqueradeBit: 14, Families: []model.Family{model.IPv4}})
	be.newNFT = func(model.Family) (knftables.Interface, error) {
		return knftables.NewFake(knftables.IPv4Family, tableName), nil
	}
	if err := be.Sync(context.Background(), tbl, model.Compare(nil, tbl)); err != nil {
		t.Fatal(err)
	}
	return steps
}

var (
	addChainRe     = regexp.MustCompile(`(?m)^add chain ip portico (\S+)`)
	dispatchRe     = regexp.MustCompile(`goto ([^\s,}]+)`)
	endpointElemRe = regexp.MustCompile(`add element ip portico endpoints-`)
	dispatchCmd    = regexp.MustCompile(`(?m)^add element ip portico service-(ips|nodeports) \{[^\n]*`)
)

// TestColdLoadOrder: in a cold load run by nft itself, every endpoint element goes over
// netlink, right after the nft transaction that created its maps; a dispatch element
// (service-ips) goes in a later nft transaction than its chain, so after that chain's
// endpoints; every chain is dispatched to in the end.
func TestColdLoadOrder(t *testing.T) {
	tbl := backendtest.ScaleTable(300, 5)
	steps := recordColdLoad(t, tbl)
	createdIn := map[string]int{} // chain -> index of its nft step
	dispatched := map[string]bool{}
	nftRuns, endpoints := 0, 0
	for i, s := range steps {
		if s.ops != nil {
			endpoints += len(s.ops)
			if i == 0 || steps[i-1].ops != nil {
				t.Errorf("step %d: a netlink batch that does not follow an nft transaction", i)
			}
			continue
		}
		nftRuns++
		if endpointElemRe.MatchString(s.text) {
			t.Errorf("step %d: nft writes endpoint elements", i)
		}
		for _, m := range addChainRe.FindAllStringSubmatch(s.text, -1) {
			createdIn[m[1]] = i
		}
		for _, cmd := range dispatchCmd.FindAllString(s.text, -1) {
			for _, m := range dispatchRe.FindAllStringSubmatch(cmd, -1) {
				at, ok := createdIn[m[1]]
				if !ok || at >= i {
					t.Fatalf("step %d dispatches to chain %s, created in step %d (%v)", i, m[1], at, ok)
				}
				if at+1 >= len(steps) || steps[at+1].ops == nil {
					t.Errorf("chain %s: no endpoint batch right after its transaction", m[1])
				}
				dispatched[m[1]] = true
			}
		}
	}
	if want := 300 * 5; endpoints != want {
		t.Errorf("%d endpoint elements over netlink, want %d", endpoints, want)
	}
	if nftRuns < 3 {
		t.Errorf("%d nft transactions: the test needs several chunks", nftRuns)
	}
	for c := range createdIn {
		if strings.HasPrefix(c, "cluster-") && strings.Contains(c, "/") && !dispatched[c] { // a port's chain
			t.Errorf("chain %s never dispatched to", c)
		}
	}
}
