// Package backends defines the interface between the proxier and a dataplane renderer, and
// the registry that picks a renderer by proxy mode.
//
// A backend renders model.Table values into kernel state. It owns its kernel objects
// exclusively (its own tables, chains or virtual servers) and never touches others.
package backends

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-dev/portico/model"
)

// Backend programs one node's dataplane.
type Backend interface {
	// Name returns the proxy mode the backend implements ("nftables", ...).
	Name() string
	// Sync makes the kernel state of t's family match t. d says what changed since the
	// last successful Sync of that family; with d.Full the backend rewrites everything it
	// owns in that family and removes what t no longer holds. On error the previous kernel
	// state stays in place, and the caller makes the next Sync of that family full.
	Sync(ctx context.Context, t *model.Table, d model.Diff) error
	// Dump writes the backend's kernel state, as the kernel holds it, in the backend's
	// native syntax.
	Dump(ctx context.Context, w io.Writer) error
	// Cleanup removes everything the backend ever created, in every family. It succeeds
	// when there is nothing to remove.
	Cleanup(ctx context.Context) error
}

// Deferrer is implemented by backends that finish some work in a later Sync (objects
// emptied by one transaction are deleted by the next, once nothing refers to them). The
// proxier then calls Sync again, with an empty Diff, soon after.
type Deferrer interface {
	// PendingWork reports whether a Sync of family f has work left from the last one.
	PendingWork(f model.Family) bool
}

// Warner is implemented by backends that may program a Service port otherwise than the
// model asked, because the kernel cannot do what it asked (an IPVS scheduler whose module
// the node lacks: the default one is used). The port works, so the Sync succeeds; the
// proxier takes the warnings after each Sync and reports them on the Services.
type Warner interface {
	// TakeWarnings returns the warnings of the Syncs since the last call, and forgets
	// them.
	TakeWarnings() []PortWarning
}

// PortWarning is one Service port programmed otherwise than the model asked, and how.
type PortWarning struct {
	// Name is the Service port.
	Name model.ServicePortName
	// Err says what the backend did instead, and why.
	Err error
}

// Preparer is implemented by backends with start-up work that reads but never changes the
// kernel (probing tools, opening handles, listing what the kernel holds). The proxier runs Prepare while its informer
// caches fill, so that the first Sync, and with it a restarted node's rules, does not wait
// for that work.
type Preparer interface {
	// Prepare readies the backend for the families of its Options. An error for which
	// IsNotInstalled holds (a program the node lacks) stops the proxier; any other is
	// only logged: the first Sync meets it again and reports it.
	Prepare(ctx context.Context) error
}

// Options configure a backend. They come from the validated configuration; a backend
// reads the fields that concern its mode and ignores the others.
type Options struct {
	// Families are the IP families the backend will be asked to sync.
	Families []model.Family
	// MasqueradeBit is the bit of the packet mark that flags packets to masquerade
	// (masqueradeBit, 0..31).
	MasqueradeBit int
	// SyncPeriod is the selected mode's full resync period (iptables.syncPeriod,
	// nftables.syncPeriod or ipvs.syncPeriod). The proxier schedules the syncs with it;
	// backends get it for timing of their own.
	SyncPeriod time.Duration
	// MinSyncPeriod is the selected mode's minimum time between two syncs.
	MinSyncPeriod time.Duration
	// LocalhostNodePorts makes NodePorts answer on 127.0.0.0/8 (iptables mode's
	// iptables.localhostNodePorts); it is false in the other modes, which have no such
	// setting.
	LocalhostNodePorts bool
	// IPVS holds the ipvs mode's settings. They are filled whatever the mode, so that
	// cleaning up every mode's rules can honour ExcludeCIDRs.
	IPVS IPVSOptions
	// TransactionSize, when set, is told the number of operations of every kernel
	// transaction (for metrics).
	TransactionSize func(ops int)
	// Metrics is the registry the backend registers its own metrics in (the ones that
	// only make sense for its mode, such as kube-proxy's failure counters of that mode).
	// With nil (a nil interface, such as metrics.Metrics.Registerer gives without metrics)
	// the backend registers and records nothing.
	Metrics prometheus.Registerer
}

// IPVSOptions are the settings of the ipvs mode (the ipvs section of the configuration).
type IPVSOptions struct {
	// Scheduler is the IPVS scheduler of every virtual server ("rr" when the configuration
	// leaves it empty, as in kube-proxy).
	Scheduler string
	// StrictARP sets arp_ignore=1 and arp_announce=2, so that the node answers ARP only
	// for the addresses of its real interfaces.
	StrictARP bool
	// TCPTimeout is the idle timeout of IPVS TCP sessions; 0 leaves the kernel's value.
	TCPTimeout time.Duration
	// TCPFinTimeout is the timeout of IPVS TCP sessions after a FIN; 0 leaves the
	// kernel's value.
	TCPFinTimeout time.Duration
	// UDPTimeout is the timeout of IPVS UDP sessions; 0 leaves the kernel's value.
	UDPTimeout time.Duration
	// ExcludeCIDRs are ranges whose virtual servers the backend never removes (they belong
	// to someone else).
	ExcludeCIDRs []netip.Prefix
}

// MasqueradeMark returns the packet mark value of MasqueradeBit.
func (o Options) MasqueradeMark() uint32 { return 1 << uint(o.MasqueradeBit) }

// Factory builds a backend. It must not touch the kernel: work starts with the first Sync.
type Factory func(Options) (Backend, error)

// ErrUnavailable is returned by Registry.New for a mode that is valid but whose backend is
// not part of this build.
var ErrUnavailable = errors.New("backend not available")

// Registry maps proxy modes to backend factories.
type Registry struct {
	factories map[string]Factory
	planned   []string
}

// NewRegistry returns a registry that knows the modes in planned (the valid modes), none of
// them available until registered.
func NewRegistry(planned ...string) *Registry {
	return &Registry{factories: map[string]Factory{}, planned: planned}
}

// Register makes mode available.
func (r *Registry) Register(mode string, f Factory) { r.factories[mode] = f }

// Available returns the registered modes, sorted.
func (r *Registry) Available() []string {
	var out []string
	for m := range r.factories {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

// New builds the backend of mode. A planned mode that has no backend in this build gives an
// error wrapping ErrUnavailable that names the modes that are available.
func (r *Registry) New(mode string, opts Options) (Backend, error) {
	if f, ok := r.factories[mode]; ok {
		b, err := f(opts)
		if err != nil {
			return nil, fmt.Errorf("mode %q: %w", mode, err)
		}
		return b, nil
	}
	avail := strings.Join(r.Available(), ", ")
	if slices.Contains(r.planned, mode) {
		return nil, fmt.Errorf("mode %q: %w in this build of portico (available: %s)", mode, ErrUnavailable, avail)
	}
	return nil, fmt.Errorf("mode %q is not a proxy mode (available: %s)", mode, avail)
}
