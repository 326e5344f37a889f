// Package iptables is portico's iptables backend, kube-proxy's default mode: it renders
// model Tables into chains of the mangle, filter and nat tables (iptables-restore
// --noflush) and ipsets (ipset restore), in whichever of iptables-nft and iptables-legacy
// the host uses. See README.md for the layout: a fixed dispatch tree instead of
// kube-proxy's linear list of Services, one chain per endpoint set instead of one per
// endpoint.
package iptables

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"sync"

	"k8s.io/klog/v2"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/backends/iptables/variant"
	"github.com/portico-dev/portico/model"
)

// Mode is the proxy mode this backend implements.
const Mode = "iptables"

// nftPieceRules bounds the rules of one iptables-nft-restore: its cost grows faster than
// its input (at 10,000 Services × 10 endpoints, 10 s for one input of 130,000 lines, 4 s
// in inputs of 10,000 rules). iptables-legacy rewrites a whole table per input, so it gets
// one input.
const nftPieceRules = 10000

// nftInFlight is how many iptables-nft-restores a full sync runs at once: two, one
// committing while the other parses, where there are two CPUs for them.
func nftInFlight() int {
	return min(runtime.NumCPU(), 2)
}

// Backend programs iptables and ipset. Create it with New; it runs no command before
// Prepare or the first Sync.
type Backend struct {
	opts backends.Options
	// detect picks the variant and returns its kernel; tests inject a fake.
	detect   func(ctx context.Context) (kernel, variant.Result, error)
	run      variant.Runner
	lookPath func(string) (string, error)
	metrics  *backendMetrics

	mu       sync.Mutex
	k        kernel
	detected variant.Result
	fams     map[model.Family]*familyState
}

// New returns an iptables backend. It has no side effects; it registers the backend's
// metrics in opts.Metrics, if set (an error shows in Factory).
func New(opts backends.Options) *Backend {
	b := &Backend{opts: opts, run: variant.ExecRunner{}, lookPath: exec.LookPath, fams: map[model.Family]*familyState{}}
	b.detect = b.detectVariant
	b.metrics = newBackendMetrics(opts.Metrics)
	return b
}

// Factory adapts New to backends.Factory.
func Factory(opts backends.Options) (backends.Backend, error) {
	b := New(opts)
	if b.metrics != nil && b.metrics.err != nil {
		err := b.metrics.err
		return nil, fmt.Errorf("iptables metrics: %w", err)
	}
	return b, nil
}

// Name implements backends.Backend.
func (b *Backend) Name() string { return Mode }

// detectVariant picks iptables-nft or iptables-legacy as kube-proxy's image does and
// checks that its programs and ipset are installed.
func (b *Backend) detectVariant(ctx context.Context) (kernel, variant.Result, error) {
	res, err := variant.Detect(ctx, b.run)
	if err != nil {
		return nil, res, err
	}
	var fams []variant.Family
	for _, f := range b.families() {
		fams = append(fams, newFam(f).cmd)
	}
	if err := variant.Tools(res.Variant, b.lookPath, fams...); err != nil {
		return nil, res, err
	}
	if _, err := b.lookPath("ipset"); err != nil {
		return nil, res, fmt.Errorf("the iptables backend needs the ipset binary (Debian: apt-get install ipset), which is not installed: %w", errors.Join(exec.ErrNotFound, err))
	}
	return newExecKernel(res.Variant, b.run), res, nil
}

// Prepare implements backends.Preparer: it picks the variant (four save commands), logs
// the choice, and makes the first full sync's listing of each family (one save each),
// while the proxier's informers list the API server: over the rules of an earlier run at
// 10,000 Services an iptables-nft-save takes about 1.5 s. A listing that fails is left to
// the first sync.
func (b *Backend) Prepare(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	k, err := b.kernel(ctx)
	if err != nil {
		return err
	}
	klog.FromContext(ctx).Info("Using the iptables variant", "variant", b.detected.Variant, "reason", b.detected.Reason)
	for _, f := range b.families() {
		fs := b.family(f)
		l, err := list(ctx, k, fs.x)
		if err != nil {
			return err
		}
		fs.prepared = l
	}
	return nil
}

// kernel returns the kernel of the detected variant, detecting it on first use.
func (b *Backend) kernel(ctx context.Context) (kernel, error) {
	if b.k != nil {
		return b.k, nil
	}
	k, res, err := b.detect(ctx)
	if err != nil {
		return nil, err
	}
	b.k, b.detected = k, res
	return k, nil
}

// Sync implements backends.Backend. A failed sync forgets the family's mirror, so that the
// next one (which the proxier makes full) lists the kernel and rewrites everything.
func (b *Backend) Sync(ctx context.Context, t *model.Table, d model.Diff) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	k, err := b.kernel(ctx)
	if err != nil {
		return err
	}
	fs := b.family(t.Family())
	full := d.Full || !fs.ready
	if full {
		clear(fs.refused) // a full sync tries every port again
	}
	for try := 0; ; try++ {
		if full {
			err = fs.fullSync(ctx, k, t, b.opts.MasqueradeMark())
		} else {
			err = fs.partialSync(ctx, k, t, d, b.opts.MasqueradeMark())
		}
		name, blamed := fs.culprit(err)
		if !blamed || try == maxConfineTries {
			break
		}
		klog.FromContext(ctx).Error(err, "iptables-restore refused a Service port's rules; leaving it out", "servicePort", name)
		fs.confine(name, err)
		fs.failed()
		full = true
	}
	if _, skipped := backends.AsSkipped(err); err != nil && !skipped {
		fs.failed()
		b.metrics.failed(t.Family(), full)
		return err
	}
	fs.baseline = headers(ctx, k, t.Family())
	b.metrics.synced(fs)
	return err
}

func (b *Backend) family(f model.Family) *familyState {
	fs, ok := b.fams[f]
	if !ok {
		fs = newFamilyState(newFam(f))
		if b.detected.Variant == variant.NFT {
			fs.pieceRules, fs.x.descending = nftPieceRules, true
			fs.inFlight = nftInFlight()
		}
		b.fams[f] = fs
	}
	return fs
}

func (b *Backend) families() []model.Family {
	if len(b.opts.Families) > 0 {
		return b.opts.Families
	}
	return []model.Family{model.IPv4, model.IPv6}
}

// Dump implements backends.Backend: portico's chains, the jumps to them and its sets, as
// the kernel holds them.
func (b *Backend) Dump(ctx context.Context, w io.Writer) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	k, err := b.kernel(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "# iptables-%s\n", b.detected.Variant)
	for _, f := range b.families() {
		if err := dumpFamily(ctx, k, newFam(f), w); err != nil {
			return err
		}
	}
	return dumpSets(ctx, b.run, w)
}
