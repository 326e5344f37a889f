package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/coreos/go-iptables/iptables"

	"github.com/portico-dev/portico/backends/iptables/variant"
	"github.com/portico-dev/portico/model"
)

// kernel is what the backend asks of the iptables and ipset tools; tests give it a fake
// (restoretest and ipsettest).
type kernel interface {
	// StartRestore starts iptables-restore --noflush of input to family f on the calling
	// thread (so in its network namespace) and returns a function that waits for it, from
	// any goroutine (restore runs one to its end).
	StartRestore(ctx context.Context, f model.Family, input []byte) (wait func() error, err error)
	// Save returns one table of family f in iptables-save form, every table for "".
	Save(ctx context.Context, f model.Family, table string) (string, error)
	// ListChain returns the rules of one chain ("-A chain ..." lines, as iptables -S prints
	// them); exists is false when the chain does not exist.
	ListChain(ctx context.Context, f model.Family, table, chain string) (rules []string, exists bool, err error)
	// IPSetRestore applies `ipset -exist restore` input.
	IPSetRestore(ctx context.Context, input []byte) error
	// Entries returns the number of entries of a table of family f from its header, at a
	// constant cost; ok is false where that is not available (iptables-nft).
	Entries(ctx context.Context, f model.Family, table string) (n uint32, ok bool, err error)
}

// execKernel runs the tools of one iptables variant.
type execKernel struct {
	v   variant.Variant
	run variant.Runner

	mu    sync.Mutex
	rules map[model.Family]*iptables.IPTables
}

func newExecKernel(v variant.Variant, run variant.Runner) *execKernel {
	return &execKernel{v: v, run: run, rules: map[model.Family]*iptables.IPTables{}}
}

func (k *execKernel) cmds(f model.Family) variant.Commands { return k.v.Commands(newFam(f).cmd) }

// restore applies iptables-restore --noflush input to family f and waits for it.
func restore(ctx context.Context, k kernel, f model.Family, input []byte) error {
	wait, err := k.StartRestore(ctx, f, input)
	if err != nil {
		return err
	}
	return wait()
}

// StartRestore implements kernel.
func (k *execKernel) StartRestore(ctx context.Context, f model.Family, input []byte) (func() error, error) {
	wait, err := variant.Start(ctx, k.run, k.cmds(f).Restore, variant.RestoreArgs(variant.DefaultLockSeconds), bytes.NewReader(input))
	if err != nil {
		return nil, err
	}
	return func() error {
		_, err := wait()
		return err
	}, nil
}

// Save implements kernel.
func (k *execKernel) Save(ctx context.Context, f model.Family, table string) (string, error) {
	var args []string
	if table != "" {
		args = []string{"-t", table}
	}
	out, err := k.run.Run(ctx, k.cmds(f).Save, args, nil)
	return string(out), err
}

// ListChain implements kernel with go-iptables (iptables -S).
func (k *execKernel) ListChain(_ context.Context, f model.Family, table, chain string) ([]string, bool, error) {
	r, err := k.rulesOf(f)
	if err != nil {
		return nil, false, err
	}
	lines, err := r.List(table, chain)
	if err != nil {
		var ie *iptables.Error
		if errors.As(err, &ie) && ie.IsNotExist() {
			return nil, false, nil
		}
		return nil, false, err
	}
	var rules []string
	for _, line := range lines {
		if strings.HasPrefix(line, "-A ") {
			rules = append(rules, line)
		}
	}
	return rules, true, nil
}

// Entries implements kernel for iptables-legacy (xtEntries).
func (k *execKernel) Entries(_ context.Context, f model.Family, table string) (uint32, bool, error) {
	if k.v != variant.Legacy {
		return 0, false, nil
	}
	n, err := xtEntries(f, table)
	return n, err == nil, err
}

// IPSetRestore implements kernel.
func (k *execKernel) IPSetRestore(ctx context.Context, input []byte) error {
	_, err := k.run.Run(ctx, "ipset", []string{"-exist", "restore"}, bytes.NewReader(input))
	return err
}

// rulesOf returns go-iptables for the variant's plain command of family f.
func (k *execKernel) rulesOf(f model.Family) (*iptables.IPTables, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if r, ok := k.rules[f]; ok {
		return r, nil
	}
	r, err := variant.NewRules(k.v, newFam(f).cmd, variant.DefaultLockSeconds)
	if err != nil {
		return nil, fmt.Errorf("iptables-%s for %s: %w", k.v, f, err)
	}
	k.rules[f] = r
	return r, nil
}
