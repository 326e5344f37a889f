// Package ipvs is the ipvs mode's backend: one IPVS virtual server per Service frontend
// (address, protocol, port) with the frontend's endpoints as real servers, the frontend
// addresses bound to a dummy interface, written with github.com/moby/ipvs and
// github.com/vishvananda/netlink. See README.md for the layout and for what differs from
// the other modes.
package ipvs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"slices"
	"sync"
	"time"

	"github.com/moby/ipvs"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"k8s.io/klog/v2"
	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/model"
)

// Name is the proxy mode this backend implements.
const Name = "ipvs"

// Factory is the backends.Factory of the ipvs mode.
func Factory(opts backends.Options) (backends.Backend, error) { return New(opts) }

// Backend renders model tables into IPVS. Create it with New; it touches the kernel only
// from Prepare or the first Sync.
type Backend struct {
	opts   backends.Options
	open   func() (Handle, error)
	newNFT func(model.Family) (knftables.Interface, error)
	links  Links
	now    func() time.Time
	// drainBound is how long a removed real server may keep connections (drainBound).
	drainBound time.Duration
	// listTable lists a family's nftables table for Dump.
	listTable func(context.Context, model.Family) (string, error)

	// warnings are the ports programmed otherwise than asked since TakeWarnings
	// (backends.Warner); wmu guards them (a Sync holds mu while it adds).
	wmu      sync.Mutex
	warnings []backends.PortWarning

	mu   sync.Mutex
	h    Handle
	nfts map[model.Family]knftables.Interface
	fams map[model.Family]*familyState
}

// New returns a Backend for opts. It has no side effects.
func New(opts backends.Options) (*Backend, error) {
	if opts.IPVS.Scheduler == "" {
		opts.IPVS.Scheduler = "rr"
	}
	return &Backend{
		opts:       opts,
		open:       openIPVS,
		newNFT:     realNFT,
		links:      netlinkLinks{},
		now:        time.Now,
		drainBound: drainBound,
		listTable:  nftListTable,
		nfts:       map[model.Family]knftables.Interface{},
		fams:       map[model.Family]*familyState{},
	}, nil
}

// Name implements backends.Backend.
func (b *Backend) Name() string { return Name }

// ErrNoIPVS is the error of a kernel without IPVS.
var ErrNoIPVS = errors.New("the kernel has no IPVS (the ip_vs module is not loaded and cannot be): " +
	"load it (modprobe ip_vs) or use mode: nftables, which needs nothing but nftables")

// Prepare implements backends.Preparer: it opens the IPVS netlink handle, which fails
// without the ip_vs module, and sets the connection timeouts of the configuration.
func (b *Backend) Prepare(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, err := b.handle()
	return err
}

// openIPVS checks that the kernel has IPVS (its generic netlink family; the module loads
// on that request when it can) and opens a handle in the calling thread's network
// namespace: moby/ipvs would open one anyway and send its requests to the wrong family.
// moby/ipvs reports its own failures through logrus; portico reports them itself, so
// logrus is silenced.
func openIPVS() (Handle, error) {
	if _, err := netlink.GenlFamilyGet("IPVS"); err != nil {
		return nil, fmt.Errorf("generic netlink family IPVS: %w", err)
	}
	logrus.SetOutput(io.Discard)
	return ipvs.New("")
}

// handle opens the IPVS handle on first use and applies the configured timeouts.
func (b *Backend) handle() (Handle, error) {
	if b.h != nil {
		return b.h, nil
	}
	h, err := b.open()
	if err != nil {
		return nil, &backends.MissingToolError{Mode: Name, Tool: backends.Tool{Name: "ip_vs", Module: true,
			Install: "modprobe ip_vs; the module ships with Debian's kernel"}, Err: fmt.Errorf("%w: %w", ErrNoIPVS, err),
			Working: []string{"nftables"}}
	}
	o := b.opts.IPVS
	if o.TCPTimeout+o.TCPFinTimeout+o.UDPTimeout > 0 {
		if err := h.SetConfig(&ipvs.Config{TimeoutTCP: o.TCPTimeout, TimeoutTCPFin: o.TCPFinTimeout, TimeoutUDP: o.UDPTimeout}); err != nil {
			return nil, fmt.Errorf("setting the IPVS timeouts: %w", err)
		}
	}
	b.h = h
	return h, nil
}

// kernel returns what a sync of family f writes to (f 0: IPVS and the links only).
func (b *Backend) kernel(f model.Family) (kernel, error) {
	h, err := b.handle()
	if err != nil {
		return kernel{}, err
	}
	k := kernel{h: h, links: b.links, now: b.now, excluded: b.excluded, drainBound: b.drainBound,
		mark: fmt.Sprintf("0x%x", b.opts.MasqueradeMark()), scheduler: b.opts.IPVS.Scheduler, logger: klog.Background(), warn: b.warn}
	if f != 0 {
		if k.nft, err = b.nft(f); err != nil {
			return kernel{}, err
		}
	}
	return k, nil
}

// warn records a port programmed otherwise than asked.
func (b *Backend) warn(w backends.PortWarning) {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	b.warnings = append(b.warnings, w)
}

// TakeWarnings returns the ports programmed otherwise than asked since the last call (a
// scheduler the kernel lacks replaced by the default one) and forgets them.
func (b *Backend) TakeWarnings() []backends.PortWarning {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	w := b.warnings
	b.warnings = nil
	return w
}

// nft returns the nftables interface of family f, creating it on first use (knftables
// probes the nft binary).
func (b *Backend) nft(f model.Family) (knftables.Interface, error) {
	if n, ok := b.nfts[f]; ok {
		return n, nil
	}
	n, err := b.newNFT(f)
	if err != nil {
		return nil, err
	}
	b.nfts[f] = n
	return n, nil
}

// realNFT returns knftables over the nft binary for portico's ipvs-mode table of f.
func realNFT(f model.Family) (knftables.Interface, error) {
	fam := knftables.IPv4Family
	if f == model.IPv6 {
		fam = knftables.IPv6Family
	}
	n, err := knftables.New(fam, TableName)
	if err != nil {
		return nil, fmt.Errorf("nftables is not usable: %w", err)
	}
	return n, nil
}

// excluded reports whether a is in ipvs.excludeCIDRs.
func (b *Backend) excluded(a netip.Addr) bool {
	return slices.ContainsFunc(b.opts.IPVS.ExcludeCIDRs, func(p netip.Prefix) bool { return p.Contains(a) })
}

func (b *Backend) family(f model.Family) *familyState {
	fs, ok := b.fams[f]
	if !ok {
		fs = newFamilyState(f)
		b.fams[f] = fs
	}
	return fs
}

// Sync implements backends.Backend. IPVS has no transactions: a failure half-way leaves
// the virtual servers written before it; the backend then forgets its mirror and the next
// sync (which the proxier makes full) compares every wanted virtual server with the
// kernel's and repairs it. Real servers that left a virtual server are drained (drain.go).
func (b *Backend) Sync(ctx context.Context, t *model.Table, d model.Diff) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	k, err := b.kernel(t.Family())
	if err != nil {
		return err
	}
	k.logger = klog.FromContext(ctx)
	fs := b.family(t.Family())
	r := renderer{node: t.Node(), defaultScheduler: b.opts.IPVS.Scheduler}
	if d.Full || !fs.ready {
		if err = b.links.Ensure(ctx); err == nil {
			err = fs.fullSync(ctx, k, r, t)
		}
	} else {
		err = fs.partialSync(ctx, k, r, t, d)
	}
	if err == nil {
		err = fs.drain(k)
	}
	if err != nil {
		fs.reset()
		return err
	}
	fs.ready = true
	return nil
}

// PendingWork implements backends.Deferrer: while real servers drain, the proxier calls
// Sync again soon, which deletes the ones whose connections ended.
func (b *Backend) PendingWork(f model.Family) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	fs, ok := b.fams[f]
	return ok && fs.pending()
}

// Dump implements backends.Backend: the virtual servers portico wrote, with their real
// servers and connection counts, the dummy interface's addresses and the nftables tables.
func (b *Backend) Dump(ctx context.Context, w io.Writer) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	k, err := b.kernel(0)
	if err != nil {
		return err
	}
	own, err := b.ownership(ctx, k)
	if err != nil {
		return err
	}
	if err := dump(ctx, k, own, w); err != nil {
		return err
	}
	for _, f := range []model.Family{model.IPv4, model.IPv6} {
		text, err := b.listTable(ctx, f)
		if err != nil {
			fmt.Fprintf(w, "# nftables table %s %s: %v\n", newNFTFamily(f).ip, TableName, err)
			continue
		}
		fmt.Fprint(w, text)
	}
	return nil
}

// nftListTable lists one of portico's ipvs-mode nftables tables with the nft command.
func nftListTable(ctx context.Context, f model.Family) (string, error) {
	out, err := exec.CommandContext(ctx, "nft", "list", "table", newNFTFamily(f).ip, TableName).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("nft list table: %w: %s", err, out)
	}
	return string(out), nil
}

// Cleanup implements backends.Backend: it deletes the virtual servers portico owns (on
// addresses bound to the dummy interface, or listed as frontends by its nftables tables),
// except in ipvs.excludeCIDRs, then the tables and the interface. Without IPVS only the
// tables can be left to remove.
func (b *Backend) Cleanup(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	k, err := b.kernel(0)
	if err != nil {
		if backends.IsNotInstalled(err) {
			return b.removeTables(ctx)
		}
		return err
	}
	own, err := b.ownership(ctx, k)
	if err != nil {
		return err
	}
	if err := cleanup(k, own); err != nil {
		return err
	}
	for _, fs := range b.fams {
		fs.reset()
	}
	if err := b.removeTables(ctx); err != nil {
		return err
	}
	return b.links.Remove(ctx)
}

// removeTables deletes portico's ipvs-mode nftables tables (a missing one, or a node
// without nft, has nothing to remove).
func (b *Backend) removeTables(ctx context.Context) error {
	for _, f := range []model.Family{model.IPv4, model.IPv6} {
		n, err := b.nft(f)
		if err != nil {
			continue
		}
		tx := n.NewTransaction()
		tx.Delete(&knftables.Table{})
		if err := n.Run(ctx, tx); err != nil && !knftables.IsNotFound(err) {
			return fmt.Errorf("deleting nftables table %s %s: %w", newNFTFamily(f).ip, TableName, err)
		}
	}
	return nil
}

var (
	_ backends.Backend  = (*Backend)(nil)
	_ backends.Preparer = (*Backend)(nil)
	_ backends.Deferrer = (*Backend)(nil)
)
