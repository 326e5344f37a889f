//go:build e2e

package iptables

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/portico-dev/portico/model"
)

// timedKernel logs what each call to the kernel costs (the scale test's breakdown).
type timedKernel struct {
	kernel
	t    *testing.T
	dump string // when set, every input is written to dump.<nnn>.<restore|ipset>
	t0   time.Time
}

// dumped numbers the inputs timedKernels write, across kernels (the scale test's variants).
var dumped int

func (k *timedKernel) StartRestore(ctx context.Context, f model.Family, input []byte) (func() error, error) {
	start := time.Now()
	k.save("restore", input)
	wait, err := k.kernel.StartRestore(ctx, f, input)
	if err != nil {
		return nil, err
	}
	return func() error {
		err := wait()
		k.t.Logf("  iptables-restore %s: %d bytes, %v (started at +%v)", f, len(input),
			time.Since(start).Round(time.Millisecond), start.Sub(k.t0).Round(time.Millisecond))
		return err
	}, nil
}

// save writes input to dump.<n>.<kind> when dumping.
func (k *timedKernel) save(kind string, input []byte) {
	if k.dump != "" {
		dumped++
		_ = os.WriteFile(fmt.Sprintf("%s.%03d.%s", k.dump, dumped, kind), input, 0o644)
	}
}

func (k *timedKernel) IPSetRestore(ctx context.Context, input []byte) error {
	start := time.Now()
	err := k.kernel.IPSetRestore(ctx, input)
	k.t.Logf("  ipset restore: %d bytes, %v", len(input), time.Since(start).Round(time.Millisecond))
	k.save("ipset", input)
	return err
}
