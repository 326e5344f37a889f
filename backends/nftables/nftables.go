// Package nftables is portico's reference backend: it renders model Tables into the
// `ip portico` and `ip6 portico` nftables tables with sigs.k8s.io/knftables. See
// README.md for the layout of the tables.
package nftables

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sync"

	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/model"
)

// Mode is the proxy mode this backend implements.
const Mode = "nftables"

// Backend programs nftables. Create it with New; it touches the kernel only from Sync on.
type Backend struct {
	opts   backends.Options
	newNFT func(model.Family) (knftables.Interface, error)
	dump   func(ctx context.Context, f model.Family) (string, error)
	// batched runs sync transactions with `nft -f` itself, each set's elements in one
	// command (knftables writes one command per element); off with injected interfaces.
	batched bool
	// metrics are registered in opts.Metrics (nil without it); metricsErr is the error of
	// that registration, which Factory reports.
	metrics    *backendMetrics
	metricsErr error

	mu   sync.Mutex
	fams map[model.Family]*familyState
}

// Option changes how a Backend is built (tests use them to inject knftables.Fake).
type Option func(*Backend)

// WithInterfaces makes the backend use newNFT to get the knftables interface of a family
// and dump to read the kernel state back.
func WithInterfaces(newNFT func(model.Family) (knftables.Interface, error), dump func(context.Context, model.Family) (string, error)) Option {
	return func(b *Backend) {
		b.newNFT = newNFT
		b.dump = dump
		b.batched = false
	}
}

// New returns an nftables backend. It has no side effects on the kernel; it registers the
// backend's metrics (metrics.go) in opts.Metrics, if set. A registration error leaves the
// metrics unregistered: Factory reports it, New does not.
func New(opts backends.Options, options ...Option) *Backend {
	b := &Backend{opts: opts, newNFT: realNFT, dump: nftList, batched: true, fams: map[model.Family]*familyState{}}
	b.metrics, b.metricsErr = newBackendMetrics(opts.Metrics)
	for _, o := range options {
		o(b)
	}
	return b
}

// Factory adapts New to backends.Factory. It fails when the backend's metrics cannot be
// registered in opts.Metrics (a metric of the same name but another kind is there).
func Factory(opts backends.Options) (backends.Backend, error) {
	b := New(opts)
	if b.metricsErr != nil {
		return nil, fmt.Errorf("nftables metrics: %w", b.metricsErr)
	}
	return b, nil
}

func knftFamily(f model.Family) knftables.Family {
	if f == model.IPv6 {
		return knftables.IPv6Family
	}
	return knftables.IPv4Family
}

func realNFT(f model.Family) (knftables.Interface, error) {
	nft, err := knftables.New(knftFamily(f), tableName)
	if err != nil {
		return nil, fmt.Errorf("nftables is not usable: %w", err)
	}
	return nft, nil
}

// nftList reads one of portico's tables back from the kernel with the nft command.
func nftList(ctx context.Context, f model.Family) (string, error) {
	out, err := exec.CommandContext(ctx, "nft", "list", "table", string(knftFamily(f)), tableName).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("nft list table %s %s: %w: %s", knftFamily(f), tableName, err, out)
	}
	return string(out), nil
}

// Name implements backends.Backend.
func (b *Backend) Name() string { return Mode }

// Sync implements backends.Backend. A failure counts in kube-proxy's cleanup failure
// counter when the transaction only deleted stale objects (portico deletes them in the
// sync after the one that emptied them, not in a cleanup pass of its own), in its sync
// failure counter otherwise; a success sets the gauges of what the table holds. A
// backends.SkippedError is a success for everything but the ports it names (confine.go).
func (b *Backend) Sync(ctx context.Context, t *model.Table, d model.Diff) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	cleanupOnly, err := b.sync(ctx, t, d)
	if _, skipped := backends.AsSkipped(err); err != nil && !skipped {
		b.metrics.failed(t.Family(), cleanupOnly)
		return err
	}
	b.metrics.synced(t.Family(), b.fams[t.Family()])
	return err
}

// sync is Sync without the metrics. cleanupOnly reports a partial transaction that held
// nothing but deletions of objects the previous one emptied.
func (b *Backend) sync(ctx context.Context, t *model.Table, d model.Diff) (cleanupOnly bool, err error) {
	fs, err := b.family(t.Family())
	if err != nil {
		return false, err
	}
	mark, observe := b.opts.MasqueradeMark(), b.opts.TransactionSize
	if d.Full || !fs.ready {
		return false, fs.fullSync(ctx, t, mark, observe, nil)
	}
	return fs.partialSync(ctx, t, mark, observe, d)
}

// Prepare implements backends.Preparer: knftables probes nft (`nft --version`, `nft
// --check`) for each family, which costs tens of milliseconds per family.
func (b *Backend) Prepare(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	for _, f := range b.opts.Families {
		if _, err := b.family(f); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// PendingWork implements backends.Deferrer: chains, sets and maps emptied by the last
// transaction wait for the next one to be deleted, or skipped Service ports are due for
// another try (confine.go).
func (b *Backend) PendingWork(f model.Family) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	fs, ok := b.fams[f]
	return ok && fs.ready && (len(fs.staleChains)+len(fs.staleSets) > 0 || fs.retryDue())
}

// family returns the state of f, creating it on first use.
func (b *Backend) family(f model.Family) (*familyState, error) {
	if fs, ok := b.fams[f]; ok {
		return fs, nil
	}
	nft, err := b.newNFT(f)
	if err != nil {
		return nil, err
	}
	fs := newFamilyState(nft, newFam(f))
	fs.batched = b.batched
	b.fams[f] = fs
	return fs, nil
}

// Dump implements backends.Backend: it prints portico's tables as the kernel holds them.
func (b *Backend) Dump(ctx context.Context, w io.Writer) error {
	for _, f := range b.families() {
		out, err := b.dump(ctx, f)
		if err != nil {
			return err
		}
		if _, err := io.WriteString(w, out); err != nil {
			return err
		}
	}
	return nil
}

func (b *Backend) families() []model.Family {
	if len(b.opts.Families) > 0 {
		return b.opts.Families
	}
	return []model.Family{model.IPv4, model.IPv6}
}

// Cleanup implements backends.Backend: it deletes portico's tables of both families.
func (b *Backend) Cleanup(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	for _, f := range []model.Family{model.IPv4, model.IPv6} {
		fs, err := b.family(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		tx := fs.nft.NewTransaction()
		tx.Delete(&knftables.Table{})
		if err := fs.nft.Run(ctx, tx); err != nil && !knftables.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting table %s %s: %w", knftFamily(f), tableName, err))
		} else {
			b.metrics.cleared(f)
		}
		fs.reset()
	}
	return errors.Join(errs...)
}
