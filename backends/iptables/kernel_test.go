//go:build e2e

package iptables

import (
	"context"
	"errors"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/backends/iptables/variant"
	"github.com/portico-dev/portico/model"
)

// The kernel tests run the real iptables-restore, iptables-save and ipset in a network
// namespace each test creates (backendtest.EnterFreshNetns: no subtests, no goroutines).

// kernelBackend returns a backend that uses variant v (no detection) for both families.
func kernelBackend(v variant.Variant) *Backend {
	b := New(backends.Options{Families: []model.Family{model.IPv4, model.IPv6}, MasqueradeBit: 14})
	b.detect = func(context.Context) (kernel, variant.Result, error) {
		return newExecKernel(v, variant.ExecRunner{}), variant.Result{Variant: v, Reason: "test"}, nil
	}
	return b
}

func saveAll(t *testing.T, v variant.Variant) string {
	t.Helper()
	var out strings.Builder
	for _, f := range []variant.Family{variant.IPv4, variant.IPv6} {
		b, err := exec.Command(v.Commands(f).Save).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v: %s", v.Commands(f).Save, err, b)
		}
		out.Write(b)
	}
	return out.String()
}

// TestKernelFlowStates loads every scenario of the packet-flow table into the kernel, one
// after the other as partial syncs, then a full sync over it, and cleans up: the kernel
// accepts every rule and set entry the renderer writes, in both variants, and Cleanup
// leaves no chain, jump or set of portico's.
func TestKernelFlowStates(t *testing.T) {
	for _, v := range []variant.Variant{variant.NFT, variant.Legacy} {
		kernelFlowStates(t, v)
	}
}

func kernelFlowStates(t *testing.T, v variant.Variant) {
	defer backendtest.EnterFreshNetns(t, "iptables-restore", "ipset")()
	ctx := context.Background()
	b := kernelBackend(v)
	prev := map[model.Family]*model.Table{}
	for i, st := range backendtest.FlowStates(t) {
		for _, tbl := range st.Tables {
			d := model.Compare(prev[tbl.Family()], tbl)
			if err := b.Sync(ctx, tbl, d); err != nil {
				t.Fatalf("%s: scenario %d, %s: %v", v, i, tbl.Family(), err)
			}
			prev[tbl.Family()] = tbl
			if err := b.Verify(ctx, tbl.Family()); err != nil {
				t.Fatalf("%s: verify after scenario %d: %v", v, i, err)
			}
		}
	}
	for f, tbl := range prev {
		if err := b.Sync(ctx, tbl, model.Diff{Full: true}); err != nil {
			t.Fatalf("%s: full sync %s: %v", v, f, err)
		}
	}
	if err := b.Cleanup(ctx); err != nil {
		t.Fatalf("%s: cleanup: %v", v, err)
	}
	if left := saveAll(t, v); strings.Contains(left, "PORTICO") {
		t.Errorf("%s: left after Cleanup:\n%s", v, left)
	}
	if out, _ := exec.Command("ipset", "list", "-n").CombinedOutput(); strings.TrimSpace(string(out)) != "" {
		t.Errorf("%s: ipsets left after Cleanup: %s", v, out)
	}
}

// TestKernelScale loads Services × 10 endpoints into the kernel (2,000, written in
// several iptables-nft inputs; PORTICO_IPT_SCALE=10000 for the README's figures), changes
// all endpoints of one Service a few times, checks the rules, and logs what each step
// costs, in both variants.
func TestKernelScale(t *testing.T) {
	n := 2000
	if s, err := strconv.Atoi(os.Getenv("PORTICO_IPT_SCALE")); err == nil {
		n = s
	}
	for _, v := range []variant.Variant{variant.NFT, variant.Legacy} {
		kernelScale(t, v, n, 10)
	}
}

func kernelScale(t *testing.T, v variant.Variant, n, e int) {
	defer backendtest.EnterFreshNetns(t, "iptables-restore", "ipset")()
	ctx := context.Background()
	b := kernelBackend(v)
	if os.Getenv("PORTICO_IPT_TIMING") != "" {
		detect := b.detect
		b.detect = func(ctx context.Context) (kernel, variant.Result, error) {
			k, r, err := detect(ctx)
			return &timedKernel{kernel: k, t: t, dump: os.Getenv("PORTICO_IPT_TIMING"), t0: time.Now()}, r, err
		}
	}
	tbl := backendtest.ScaleTable(n, e)
	if _, err := b.kernel(ctx); err != nil {
		t.Fatal(err)
	}
	if p, err := strconv.Atoi(os.Getenv("PORTICO_IPT_PIECE")); err == nil {
		b.family(model.IPv4).pieceRules = p
	}
	start := time.Now()
	if err := b.Sync(ctx, tbl, model.Diff{Full: true}); err != nil {
		t.Fatal(err)
	}
	cold := time.Since(start)
	var changes []time.Duration
	for i := 1; i <= 5; i++ {
		name := backendtest.ScalePort(i*997%n, e, 0).Name
		sp := backendtest.ScalePort(i*997%n, e, i)
		next := tbl.Update(tbl.Node(), []*model.ServicePort{sp}, nil)
		start := time.Now()
		if err := b.Sync(ctx, next, model.Diff{Changed: []model.ServicePortName{name}}); err != nil {
			t.Fatal(err)
		}
		changes = append(changes, time.Since(start))
		tbl = next
	}
	start = time.Now()
	if err := b.Verify(ctx, model.IPv4); err != nil {
		t.Fatal(err)
	}
	verify := time.Since(start)
	start = time.Now()
	if err := b.Sync(ctx, tbl, model.Diff{Full: true}); err != nil {
		t.Fatal(err)
	}
	t.Logf("iptables-%s, %d Services × %d endpoints: cold sync %v, one-Service changes %v, verify %v, full resync over it %v",
		v, n, e, cold.Round(time.Millisecond), changes, verify.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// TestKernelVerifyFindsFlush flushes the nat table with the variant's own iptables
// command: Verify finds it (iptables-legacy through the tables' headers, then a listing),
// and a full sync puts back the very rules of before.
func TestKernelVerifyFindsFlush(t *testing.T) {
	for _, v := range []variant.Variant{variant.NFT, variant.Legacy} {
		kernelVerifyFindsFlush(t, v)
	}
}

func kernelVerifyFindsFlush(t *testing.T, v variant.Variant) {
	defer backendtest.EnterFreshNetns(t, "iptables-restore", "ipset")()
	ctx := context.Background()
	b := kernelBackend(v)
	st := backendtest.FlowStates(t)[0]
	for _, tbl := range st.Tables {
		if err := b.Sync(ctx, tbl, model.Diff{Full: true}); err != nil {
			t.Fatal(err)
		}
	}
	before := saveAll(t, v)
	if err := b.Verify(ctx, model.IPv4); err != nil {
		t.Fatalf("%s: Verify before the flush: %v", v, err)
	}
	if out, err := exec.Command(v.Commands(variant.IPv4).Iptables, "-t", "nat", "-F").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if err := b.Verify(ctx, model.IPv4); !errors.Is(err, backends.ErrRulesMissing) {
		t.Fatalf("%s: Verify after iptables -t nat -F = %v, want ErrRulesMissing", v, err)
	}
	if err := b.Sync(ctx, st.Table(model.IPv4), model.Diff{Full: true}); err != nil {
		t.Fatal(err)
	}
	if after := saveAll(t, v); stripCounters(after) != stripCounters(before) {
		t.Errorf("%s: after the repair the rules differ:\n%s", v, backendtest.FirstDiff(stripCounters(before), stripCounters(after)))
	}
}

// stripCounters drops iptables-save's comment lines (they hold dates).
func stripCounters(save string) string {
	var b strings.Builder
	for line := range strings.Lines(save) {
		if !strings.HasPrefix(line, "#") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// countingKernel counts the restores running at once.
type countingKernel struct {
	kernel
	mu            sync.Mutex
	running, most int
}

func (k *countingKernel) StartRestore(ctx context.Context, f model.Family, input []byte) (func() error, error) {
	wait, err := k.kernel.StartRestore(ctx, f, input)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.running++
	k.most = max(k.most, k.running)
	k.mu.Unlock()
	return func() error {
		defer func() {
			k.mu.Lock()
			k.running--
			k.mu.Unlock()
		}()
		return wait()
	}, nil
}

// TestKernelPiecesTwoAtATime writes the every-kind scenario under each node variant with
// the real iptables-nft as full syncs in pieces of 3 rules, two restores at a time (the
// real tool resolves the chains a rule jumps to when it starts, so a piece that started
// before the one writing its jump target fails): the restores must overlap, and the
// kernel must hold what one input writes.
func TestKernelPiecesTwoAtATime(t *testing.T) {
	defer backendtest.EnterFreshNetns(t, "iptables-restore", "ipset")()
	ctx := context.Background()
	for _, tc := range backendtest.NodeVariants {
		st := backendtest.Compile(t, tc.Tweak, backendtest.ObjectFiles...)
		var dumps [2]string
		most := 0
		for i, pieceRules := range []int{3, 0} {
			b := kernelBackend(variant.NFT)
			ck := &countingKernel{kernel: newExecKernel(variant.NFT, variant.ExecRunner{})}
			b.detect = func(context.Context) (kernel, variant.Result, error) {
				return ck, variant.Result{Variant: variant.NFT, Reason: "test"}, nil
			}
			for _, tbl := range st.Tables {
				fs := b.family(tbl.Family())
				fs.pieceRules, fs.inFlight = pieceRules, 2
				if err := b.Sync(ctx, tbl, model.Diff{Full: true}); err != nil {
					t.Fatalf("%s, pieces of %d rules, %s: %v", tc.Name, pieceRules, tbl.Family(), err)
				}
			}
			dumps[i] = byChain(saveAll(t, variant.NFT))
			if pieceRules > 0 {
				most = ck.most
			}
			if err := b.Cleanup(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if most < 2 {
			t.Errorf("%s: at most %d restores ran at once, want 2", tc.Name, most)
		}
		if dumps[0] != dumps[1] {
			t.Errorf("%s: pieces two at a time differ from one input:\n%s", tc.Name, backendtest.FirstDiff(dumps[1], dumps[0]))
		}
	}
}

// byChain puts iptables-save output in an order that does not depend on when each chain
// was created: per table, the chains sorted by name, each with its rules in order.
func byChain(save string) string {
	var out strings.Builder
	table, chains := "", map[string][]string{}
	flush := func() {
		for _, name := range slices.Sorted(maps.Keys(chains)) {
			out.WriteString(table + " " + name + "\n")
			for _, r := range chains[name] {
				out.WriteString("  " + r + "\n")
			}
		}
		chains = map[string][]string{}
	}
	for line := range strings.Lines(save) {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "*"):
			flush()
			table = line[1:]
		case strings.HasPrefix(line, ":"):
			name, _, _ := strings.Cut(line[1:], " ")
			chains[name] = chains[name][:0:0]
		case strings.HasPrefix(line, "-A "):
			name, rule, _ := strings.Cut(line[3:], " ")
			chains[name] = append(chains[name], rule)
		}
	}
	flush()
	return out.String()
}
