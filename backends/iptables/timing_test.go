//go:build e2e

package iptables

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/portico-dev/portico/model"
)

// timedKernel logs what each call to the kernel costs (the scale test's breakdown).
type timedKernel struct {
	kernel
	t    *testing.T
	dump string // when set, restore inputs are written to dump.<n>
	n    int
}

func (k *timedKernel) Restore(ctx context.Context, f model.Family, input []byte) error {
	start := time.Now()
	err := k.kernel.Restore(ctx, f, input)
	k.t.Logf("  iptables-restore %s: %d bytes, %v", f, len(input), time.Since(start).Round(time.Millisecond))
	if k.dump != "" {
		k.n++
		_ = os.WriteFile(k.dump+"."+string(rune('0'+k.n%10)), input, 0o644)
	}
	return err
}

func (k *timedKernel) IPSetRestore(ctx context.Context, input []byte) error {
	start := time.Now()
	err := k.kernel.IPSetRestore(ctx, input)
	k.t.Logf("  ipset restore: %d bytes, %v", len(input), time.Since(start).Round(time.Millisecond))
	return err
}
