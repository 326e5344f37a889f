package iptables

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/backends/iptables/ipsettest"
	"github.com/portico-dev/portico/backends/iptables/restoretest"
	"github.com/portico-dev/portico/backends/iptables/variant"
	"github.com/portico-dev/portico/model"
)

// fakeKernel is the unit tests' kernel: restoretest's fake iptables-restore per family
// and ipsettest's fake ipset. Restores may run concurrently (a full sync runs two at a
// time with iptables-nft): like iptables-nft-restore, a restore resolves the chains its
// rules jump to against the kernel as it was when the restore started, and fails at the
// COMMIT of a table whose rules jump to a chain that neither existed then nor is declared
// by the input; it applies its input a moment after it started (hold), so that restores
// started together overlap.
type fakeKernel struct {
	mu   sync.Mutex
	rs   map[model.Family]*restoretest.Ruleset
	sets *ipsettest.Sets
	// restores records every iptables-restore input, per family.
	restores map[model.Family][]string
	// failRestore, when set, fails the next Restore (without applying it), or the one
	// after failSkip more successful ones.
	failRestore error
	failSkip    int
	// refuse, when set, makes Restore refuse every input with a line holding it, naming
	// the line as iptables-restore does.
	refuse string
	// ops records the order of the ipset restores ("ipset") and iptables-restores ("restore").
	ops []string
	// lists counts ListChain calls, saves Save calls.
	lists, saves int
	// headers makes Entries count the fake's entries, as iptables-legacy's table headers do.
	headers bool
	// hold is how long a restore waits between its start and applying its input.
	hold time.Duration
	// running counts the restores under way; mostRunning is the most there were at once.
	running, mostRunning int
}

func newFakeKernel() *fakeKernel {
	return &fakeKernel{
		rs:       map[model.Family]*restoretest.Ruleset{model.IPv4: {}, model.IPv6: {}},
		sets:     &ipsettest.Sets{},
		restores: map[model.Family][]string{},
		hold:     time.Millisecond,
	}
}

func (k *fakeKernel) StartRestore(_ context.Context, f model.Family, input []byte) (func() error, error) {
	missing, err := k.startRestore(f, string(input))
	if err != nil {
		return func() error { return err }, nil
	}
	return func() error {
		time.Sleep(k.hold)
		k.mu.Lock()
		defer k.mu.Unlock()
		k.running--
		if missing != nil {
			return missing
		}
		if err := k.rs[f].Restore(string(input), true); err != nil {
			var re *restoretest.RestoreError
			if errors.As(err, &re) {
				return fmt.Errorf("%w\nError occurred at line: %d", err, re.Line)
			}
			return err
		}
		return nil
	}, nil
}

// startRestore begins a restore: the injected failures, the record, and the jump targets
// the kernel lacks now (returned as the error the restore ends with).
func (k *fakeKernel) startRestore(f model.Family, input string) (missing, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.failRestore; err != nil {
		if k.failSkip == 0 {
			k.failRestore = nil
			return nil, err
		}
		k.failSkip--
	}
	k.restores[f] = append(k.restores[f], input)
	k.ops = append(k.ops, "restore")
	for i, line := range strings.Split(input, "\n") {
		if k.refuse != "" && strings.Contains(line, k.refuse) {
			return nil, fmt.Errorf("iptables-restore: exit status 2: iptables-restore v1.8.9 (fake): refused\nError occurred at line: %d", i+1)
		}
	}
	k.running++
	k.mostRunning = max(k.mostRunning, k.running)
	return k.unknownTarget(f, input), nil
}

// unknownTarget returns iptables-nft-restore's error for the first table block of input
// whose rules jump to a chain that the block does not declare and the kernel does not
// hold now, or nil.
func (k *fakeKernel) unknownTarget(f model.Family, input string) error {
	table, declared, missing := "", map[string]bool{}, ""
	for i, line := range strings.Split(input, "\n") {
		switch {
		case strings.HasPrefix(line, "*"):
			table, declared, missing = line[1:], map[string]bool{}, ""
		case strings.HasPrefix(line, ":"):
			name, _, _ := strings.Cut(line[1:], " ")
			declared[name] = true
		case strings.HasPrefix(line, "-A ") || strings.HasPrefix(line, "-I "):
			target := jumpTarget(line)
			if _, held := k.rs[f].Chain(table, target); strings.HasPrefix(target, chainPrefix) && !held && !declared[target] && missing == "" {
				missing = target
			}
		case line == "COMMIT" && missing != "":
			return fmt.Errorf("iptables-restore: exit status 1: iptables-restore v1.8.9 (fake): Chain '%s' does not exist\nError occurred at line: %d", missing, i+1)
		}
	}
	return nil
}

func (k *fakeKernel) Save(_ context.Context, f model.Family, table string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.saves++
	if table != "" {
		return k.rs[f].Save(table), nil
	}
	var b strings.Builder
	for _, t := range restoretest.Tables {
		b.WriteString(k.rs[f].Save(t))
	}
	return b.String(), nil
}

func (k *fakeKernel) ListChain(_ context.Context, f model.Family, table, chain string) ([]string, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.lists++
	c, ok := k.rs[f].Chain(table, chain)
	if !ok {
		return nil, false, nil
	}
	var out []string
	for _, r := range c.Rules {
		out = append(out, "-A "+chain+" "+r.Spec)
	}
	return out, true, nil
}

func (k *fakeKernel) IPSetRestore(_ context.Context, input []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.ops = append(k.ops, "ipset")
	return k.sets.Restore(string(input))
}

func (k *fakeKernel) Entries(_ context.Context, f model.Family, table string) (uint32, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.headers {
		return 0, false, nil
	}
	n := 0
	for _, name := range k.rs[f].Chains(table) {
		c, _ := k.rs[f].Chain(table, name)
		n += len(c.Rules) + 2
	}
	return uint32(n), true, nil
}

// dump returns what the fake holds: both families' tables and the sets.
func (k *fakeKernel) dump() string {
	var b strings.Builder
	for _, f := range []model.Family{model.IPv4, model.IPv6} {
		fmt.Fprintf(&b, "# %s\n", f)
		for _, t := range restoreTables {
			b.WriteString(k.rs[f].Save(t))
		}
	}
	b.WriteString("# ipsets\n")
	b.WriteString(k.sets.Save())
	return b.String()
}

// fakeBackend returns a backend over a fake kernel.
func fakeBackend(t *testing.T) (*Backend, *fakeKernel) {
	t.Helper()
	k := newFakeKernel()
	b := New(backends.Options{MasqueradeBit: 14, Families: []model.Family{model.IPv4, model.IPv6}})
	b.detect = func(context.Context) (kernel, variant.Result, error) {
		return k, variant.Result{Variant: variant.NFT, Reason: "fake"}, nil
	}
	return b, k
}

var errInjected = errors.New("injected failure")
