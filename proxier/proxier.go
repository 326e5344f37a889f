// Package proxier is portico's controller: it watches Services, EndpointSlices and this
// node's Node object, compiles them into the backend-neutral model (see package model and
// proxier/compile) and hands each change to the dataplane backend.
//
// Data flows one way: informer events mark Services dirty; a coalescing runner wakes up,
// recompiles the dirty Services, compares the new per-family Tables with the last ones the
// backend applied and calls Backend.Sync with the difference. A failed sync keeps the
// kernel's last good rules, is retried with backoff and makes the next sync full.
package proxier

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/model"
	"github.com/portico-dev/portico/proxier/compile"
)

// Options configure a Proxier.
type Options struct {
	// Node is the node configuration (name, families, nodePortAddresses, detect-local,
	// masqueradeAll).
	Node compile.NodeConfig
	// MinSyncPeriod is the shortest time between two syncs; SyncPeriod the longest.
	MinSyncPeriod, SyncPeriod time.Duration
	// FullSyncPeriod is how often a sync rewrites everything even without changes.
	FullSyncPeriod time.Duration
	// VerifyPeriod is how often a backend that implements backends.Verifier is asked
	// whether its rules are still in the kernel (verify.go); 0 means min(SyncPeriod/2,
	// 10s), a negative value never.
	VerifyPeriod time.Duration
	// ResyncPeriod is the informers' resync period (configSyncPeriod).
	ResyncPeriod time.Duration
	// Addresses lists the node's interface addresses (default: NetlinkAddresses).
	Addresses AddressSource
	// Conntrack deletes stale UDP flows (default: NetlinkConntrack).
	Conntrack ConntrackCleaner
	// Recorder receives metrics (default: none).
	Recorder Recorder
	// Health tracks /healthz state (default: none).
	Health HealthTracker
	// ServiceHealth runs the healthCheckNodePort servers (default: none).
	ServiceHealth ServiceHealthSyncer
	// Memory manages the Go runtime's memory around full syncs (default: none).
	Memory *Memory
	// Events receives a warning for each Service or EndpointSlice skipped in part or
	// whole, for its owner to read with `kubectl describe service` (default: none).
	Events Events
	// FamilyProbe tells which of Node.Families the kernel supports; Run programs only
	// those (default: KernelFamilies; families.go).
	FamilyProbe FamilyProbe
	// AfterFirstSync, when set, is called once, on the sync loop's goroutine, after the
	// first sync in which some family synced: work that must not compete with the node's
	// first rules for the CPU waits for it (default: none).
	AfterFirstSync func()
}

// Proxier is the controller. Create it with New and start it with Run.
type Proxier struct {
	sources  Sources
	backend  backends.Backend
	opts     Options
	tracker  *tracker
	runner   *runner
	compiler *compile.Compiler
	watch    *watchers

	applied  map[model.Family]*model.Table
	needFull map[model.Family]bool
	lastFull time.Time
	hcNames  map[model.ServiceName]bool
	noLocal  map[noLocalKey]map[model.ServicePortName]bool
	gen      uint64
	famRetry map[model.Family]*familyRetry // families.go
	synced   bool                          // some sync succeeded (AfterFirstSync ran)
	ct       conntrackState                // conntrack_retry.go
	nodeWarn nodeWarner                    // nodewarn.go
}

// New returns a Proxier. It has no side effects: nothing is watched or programmed before
// Run.
func New(sources Sources, backend backends.Backend, opts Options) *Proxier {
	if opts.Addresses == nil {
		opts.Addresses = NetlinkAddresses
	}
	if opts.Conntrack == nil {
		opts.Conntrack = NetlinkConntrack{}
	}
	if opts.Recorder == nil {
		opts.Recorder = nopRecorder{}
	}
	if opts.Health == nil {
		opts.Health = nopHealth{}
	}
	if opts.Events == nil {
		opts.Events = nopEvents{}
	}
	if opts.FullSyncPeriod == 0 {
		opts.FullSyncPeriod = time.Hour
	}
	p := &Proxier{
		sources:  sources,
		backend:  backend,
		opts:     opts,
		compiler: compile.NewCompiler(),
		applied:  map[model.Family]*model.Table{},
		needFull: map[model.Family]bool{},
		hcNames:  map[model.ServiceName]bool{},
		noLocal:  map[noLocalKey]map[model.ServicePortName]bool{},
		famRetry: map[model.Family]*familyRetry{},
		ct:       newConntrackState(),
	}
	p.runner = newRunner(opts.MinSyncPeriod, opts.SyncPeriod, p.sync)
	p.tracker = newTracker(p.queued)
	return p
}

// Run watches the API server and keeps the dataplane in sync until ctx is done. It
// returns an error only if it cannot start.
func (p *Proxier) Run(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	if err := p.probeFamilies(ctx); err != nil {
		return err
	}
	w, err := newWatchers(p.sources, p.opts.ResyncPeriod)
	if err != nil {
		return err
	}
	if err := w.addHandlers(p.tracker, p.opts.Health.SyncNode); err != nil {
		return err
	}
	p.watch = w
	ctx, stop := context.WithCancel(ctx)
	// The start-up GC target must be in place before the first LIST is decoded.
	restoreGC := p.opts.Memory.startUp()
	wait := w.start(ctx)
	defer wait() // deferred calls run last first: stop the informers, then wait for them
	defer stop()
	prepared := p.prepareBackend(ctx, stop)
	logger.Info("Waiting for the informer caches", "node", p.opts.Node.Name, "backend", p.backend.Name())
	waitStart := time.Now()
	synced := waitForCaches(ctx, w.synced)
	filled := time.Now()
	restoreGC()
	logger.V(2).Info("Informer caches filled", "took", filled.Sub(waitStart), "startUpCollection", time.Since(filled))
	if synced && !waitForCaches(withTimeout(ctx, serviceCIDRGrace), []cache.InformerSynced{w.cidrsSynced}) && ctx.Err() == nil {
		logger.Info("ServiceCIDRs not listed yet (does the API server serve networking.k8s.io/v1 servicecidrs, " +
			"and may portico list them?); syncing without dropping unallocated Service addresses until they are")
	}
	if err := <-prepared; err != nil {
		return err
	}
	if !synced {
		return fmt.Errorf("informer caches did not sync: %w", ctx.Err())
	}
	if err := p.checkNodePrimaryFamily(); err != nil {
		return err
	}
	logger.Info("Informer caches synced; starting the sync loop")
	p.startVerifying(ctx)
	p.runner.Run(ctx)
	return nil
}

// prepareBackend runs the backend's start-up work, if it has any, in the background. The
// returned channel yields one value when it is done: nil, or the error of a program or
// kernel module the node lacks (backends.IsNotInstalled), on which stop is called so that
// Run returns it at once instead of retrying behind a green start. Other errors, which a
// later try may not meet, are logged and left to the first sync.
func (p *Proxier) prepareBackend(ctx context.Context, stop context.CancelFunc) <-chan error {
	done := make(chan error, 1)
	pr, ok := p.backend.(backends.Preparer)
	if !ok {
		done <- nil
		return done
	}
	go func() {
		err := pr.Prepare(ctx)
		if err != nil && backends.IsNotInstalled(err) {
			stop()
			done <- fmt.Errorf("backend %s cannot run on this node: %w", p.backend.Name(), err)
			return
		}
		if err != nil {
			klog.FromContext(ctx).Error(err, "Preparing the backend failed; the first sync will try again")
		}
		done <- nil
	}()
	return done
}

// serviceCIDRGrace is how long the first sync waits for the ServiceCIDRs once the other
// caches are full. The list is tiny and normally arrives with the others; an API server
// that does not serve it must not hold up the node's rules.
const serviceCIDRGrace = 2 * time.Second

// withTimeout returns a context that ends after d or with ctx. Its resources are released
// when it ends.
func withTimeout(ctx context.Context, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(ctx, d)
	context.AfterFunc(c, cancel)
	return c
}

// cachePollInterval is how often waitForCaches checks the informers: a tenth of
// cache.WaitForCacheSync's, whose 100 ms would delay every start's first sync.
const cachePollInterval = 10 * time.Millisecond

// waitForCaches waits until every informer in synced has synced, or ctx ends.
func waitForCaches(ctx context.Context, synced []cache.InformerSynced) bool {
	err := wait.PollUntilContextCancel(ctx, cachePollInterval, true, func(context.Context) (bool, error) {
		for _, s := range synced {
			if !s() {
				return false, nil
			}
		}
		return true, nil
	})
	return err == nil
}

// queued is called by the tracker on every change.
func (p *Proxier) queued() {
	for _, f := range p.opts.Node.Families {
		p.opts.Health.QueuedUpdate(f)
	}
	s, e := p.tracker.Pending()
	p.opts.Recorder.SetPending(s, e)
	for _, f := range p.opts.Node.Families {
		p.opts.Recorder.SetLastQueued(f, time.Now())
	}
	p.runner.Request()
}

// source reads a Service and its EndpointSlices from the informer caches.
func (p *Proxier) source(name model.ServiceName) (*corev1.Service, []*discoveryv1.EndpointSlice) {
	svc := p.watch.service(name)
	if svc == nil {
		return nil, nil
	}
	return svc, p.watch.slicesFor(name)
}

// allServiceNames lists every Service in the cache and every Service compiled before.
func (p *Proxier) allServiceNames() []model.ServiceName {
	seen := map[model.ServiceName]bool{}
	for _, n := range p.watch.serviceNames() {
		seen[n] = true
	}
	for _, n := range p.compiler.Known() {
		seen[n] = true
	}
	out := make([]model.ServiceName, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	return out
}

// nodeInfo resolves this node's settings from the configuration, its Node object and its
// interface addresses, warns about what they lack (nodewarn.go) and moves the
// healthCheckNodePort servers to the addresses NodePorts answer on.
func (p *Proxier) nodeInfo(ctx context.Context) compile.NodeInfo {
	node, err := p.watch.nodes.Get(p.opts.Node.Name)
	if err != nil {
		node = nil
	}
	addrs, err := p.opts.Addresses()
	if err != nil {
		klog.FromContext(ctx).Error(err, "Cannot read node addresses; NodePorts use the last known ones")
		return p.compiler.Node()
	}
	info := compile.ResolveNode(p.opts.Node, node, addrs, p.watch.serviceCIDRs())
	p.warnNode(ctx, node, info)
	p.bindHealthChecks(info)
	return info
}
