package proxier

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/portico-dev/portico/model"
)

// TriggerTimeAnnotation is set by the EndpointSlice controller to the time of the change
// that caused a slice update; it starts the network programming latency clock.
const TriggerTimeAnnotation = "endpoints.kubernetes.io/last-change-trigger-time"

// Sources are where the proxier reads API objects from: one list-watch per kind. Nodes
// must list only the proxier's own Node (a field selector on its name); package kubeapi
// builds them for a real API server. ServiceCIDRs may be nil: then no ServiceCIDR is
// known and nothing extra is dropped.
type Sources struct {
	Services, EndpointSlices, Nodes cache.ListerWatcher
	// ServiceCIDRs lists networking.k8s.io/v1 ServiceCIDR objects: the cluster's Service
	// IP ranges.
	ServiceCIDRs cache.ListerWatcher
}

// watchers holds the informers and the listers that syncs read from.
type watchers struct {
	informers []cache.SharedIndexInformer
	services  cache.Indexer
	slices    *sliceIndex
	nodes     corelisters.NodeLister
	// cidrs holds the ServiceCIDR objects (nil without a ServiceCIDR source).
	cidrs  cache.Store
	synced []cache.InformerSynced
	// cidrsSynced reports whether the ServiceCIDR handler has seen the initial list
	// (always true without a ServiceCIDR source).
	cidrsSynced cache.InformerSynced
}

// newWatchers builds (without starting) informers for Services, EndpointSlices and the
// proxier's Node, with a transform that drops what portico never reads. Their
// list-watches share one apiLink: they reconnect together (listwatch.go).
func newWatchers(src Sources, resync time.Duration) (*watchers, error) {
	link := newAPILink()
	svc := cache.NewSharedIndexInformer(newReconnecting(src.Services, "Services", link), &corev1.Service{}, resync, cache.Indexers{})
	eps := cache.NewSharedIndexInformer(newReconnecting(src.EndpointSlices, "EndpointSlices", link), &discoveryv1.EndpointSlice{}, resync, cache.Indexers{})
	node := cache.NewSharedIndexInformer(newReconnecting(src.Nodes, "Node", link), &corev1.Node{}, resync, cache.Indexers{})
	w := &watchers{informers: []cache.SharedIndexInformer{svc, eps, node}}
	for _, inf := range w.informers {
		if err := inf.SetTransform(stripUnused); err != nil {
			return nil, fmt.Errorf("setting the informer transform: %w", err)
		}
	}
	w.services = svc.GetIndexer()
	w.slices = newSliceIndex()
	w.nodes = corelisters.NewNodeLister(node.GetIndexer())
	w.cidrsSynced = func() bool { return true }
	if src.ServiceCIDRs != nil {
		cidr := cache.NewSharedIndexInformer(newReconnecting(src.ServiceCIDRs, "ServiceCIDRs", link), &networkingv1.ServiceCIDR{}, resync, cache.Indexers{})
		if err := cidr.SetTransform(stripUnused); err != nil {
			return nil, fmt.Errorf("setting the informer transform: %w", err)
		}
		w.informers = append(w.informers, cidr)
		w.cidrs = cidr.GetStore()
	}
	return w, nil
}

// serviceCIDRs returns the Service IP ranges of every ServiceCIDR object, masked. A range
// that does not parse is skipped (the API server validates them).
func (w *watchers) serviceCIDRs() []netip.Prefix {
	if w.cidrs == nil {
		return nil
	}
	var out []netip.Prefix
	for _, o := range w.cidrs.List() {
		sc, ok := o.(*networkingv1.ServiceCIDR)
		if !ok {
			continue
		}
		for _, c := range sc.Spec.CIDRs {
			if p, err := netip.ParsePrefix(c); err == nil {
				out = append(out, netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapBits(p)).Masked())
			}
		}
	}
	slices.SortFunc(out, comparePrefix)
	return slices.Compact(out)
}

// unmapBits is what an IPv4-mapped IPv6 prefix loses of its length when unmapped.
func unmapBits(p netip.Prefix) int {
	if p.Addr().Is4In6() {
		return 96
	}
	return 0
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// start runs the informers until ctx is done; the returned function waits for them to
// stop.
func (w *watchers) start(ctx context.Context) (wait func()) {
	var wg sync.WaitGroup
	for _, inf := range w.informers {
		wg.Go(func() { inf.RunWithContext(ctx) })
	}
	return wg.Wait
}

// service returns a Service from the informer cache, or nil.
func (w *watchers) service(name model.ServiceName) *corev1.Service {
	obj, ok, err := w.services.GetByKey(name.String())
	if err != nil || !ok {
		return nil
	}
	if r := serviceRecordOf(obj); r != nil {
		return r.service()
	}
	return nil
}

// serviceNames lists the Services in the informer cache.
func (w *watchers) serviceNames() []model.ServiceName {
	objs := w.services.List()
	out := make([]model.ServiceName, 0, len(objs))
	for _, o := range objs {
		if r := serviceRecordOf(o); r != nil {
			out = append(out, r.key())
		}
	}
	return out
}

// SlicesFor returns the EndpointSlices of a Service, as the event handlers delivered them.
func (w *watchers) slicesFor(name model.ServiceName) []*discoveryv1.EndpointSlice {
	recs := w.slices.get(name)
	out := make([]*discoveryv1.EndpointSlice, len(recs))
	for i, r := range recs {
		out[i] = r.slice()
	}
	return out
}

// sliceHandler keeps the slice index and tells the tracker which Services changed (both
// of them when a slice moves from one Service to another).
func (w *watchers) sliceHandler(t *tracker) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if r := sliceRecordOf(obj); r != nil {
				w.slices.put(r)
			}
			sliceEvent(t, obj)
		},
		UpdateFunc: func(old, obj any) {
			o, r := sliceRecordOf(old), sliceRecordOf(obj)
			if sameVersion(o, r) {
				return
			}
			if o != nil && (r == nil || o.service != r.service) {
				w.slices.remove(o)
				sliceEvent(t, old)
			}
			if r != nil {
				w.slices.put(r)
			}
			sliceEvent(t, obj)
		},
		DeleteFunc: func(obj any) {
			if r := sliceRecordOf(unwrap(obj)); r != nil {
				w.slices.remove(r)
			}
			sliceEvent(t, obj)
		},
	}
}

// sameVersion reports whether an update hands over a slice the handler already has: the
// same resource version, as a relist after a reconnect (or a resync) delivers every
// unchanged object. Skipping it keeps a reconnect from causing a sync that would hold
// the next real change back by minSyncPeriod.
func sameVersion(old, cur *sliceRecord) bool {
	return old != nil && cur != nil && old.resourceVersion != "" && old.resourceVersion == cur.resourceVersion
}

// handlers routes informer events to the tracker.
func (w *watchers) addHandlers(t *tracker, onNode func(*corev1.Node)) error {
	svcHandler := cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { serviceEvent(t, nil, obj) },
		UpdateFunc: func(old, obj any) {
			serviceEvent(t, old, obj)
		},
		DeleteFunc: func(obj any) { serviceEvent(t, nil, obj) },
	}
	nodeHandler := cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { nodeEvent(t, onNode, nil, obj) },
		UpdateFunc: func(old, obj any) {
			nodeEvent(t, onNode, old, obj)
		},
		DeleteFunc: func(obj any) { nodeEvent(t, onNode, nil, nil) },
	}
	w.synced = nil
	for i, h := range []cache.ResourceEventHandler{svcHandler, w.sliceHandler(t), nodeHandler} {
		r, err := w.informers[i].AddEventHandler(h)
		if err != nil {
			return fmt.Errorf("adding event handler: %w", err)
		}
		// Wait for the handlers, not only the caches: the first sync then starts with
		// every initial object already delivered.
		w.synced = append(w.synced, r.HasSynced)
	}
	if w.cidrs == nil {
		return nil
	}
	// A ServiceCIDR change changes what every table drops: it counts as a node change.
	r, err := w.informers[3].AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { t.NodeChanged() },
		UpdateFunc: func(old, obj any) { cidrEvent(t, old, obj) },
		DeleteFunc: func(any) { t.NodeChanged() },
	})
	if err != nil {
		return fmt.Errorf("adding event handler: %w", err)
	}
	w.cidrsSynced = r.HasSynced
	return nil
}

// cidrEvent reports a ServiceCIDR update whose ranges changed.
func cidrEvent(t *tracker, old, obj any) {
	o, _ := old.(*networkingv1.ServiceCIDR)
	n, _ := obj.(*networkingv1.ServiceCIDR)
	if o != nil && n != nil && slices.Equal(o.Spec.CIDRs, n.Spec.CIDRs) {
		return
	}
	t.NodeChanged()
}

func unwrap(obj any) any {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return d.Obj
	}
	return obj
}

func serviceEvent(t *tracker, old, obj any) {
	s := serviceRecordOf(unwrap(obj))
	if s == nil {
		return
	}
	if o := serviceRecordOf(old); o != nil && serviceUnchanged(o, s) {
		return
	}
	t.ServiceChanged(s.key())
}

// serviceUnchanged reports whether an update changed nothing portico reads. A resync
// hands the cached record as both (every Service each configSyncPeriod).
func serviceUnchanged(a, b *serviceRecord) bool {
	if a == b {
		return true
	}
	sa, sb := a.service(), b.service()
	sa.ResourceVersion, sb.ResourceVersion = "", ""
	return apiequality.Semantic.DeepEqual(sa, sb)
}

func sliceEvent(t *tracker, obj any) {
	r := sliceRecordOf(unwrap(obj))
	if r == nil {
		return
	}
	svc, ok := serviceOf(r)
	if !ok {
		return
	}
	fam := model.IPv4
	if r.addressType == discoveryv1.AddressTypeIPv6 {
		fam = model.IPv6
	}
	t.SliceChanged(svc, fam, r.trigger)
}

func nodeEvent(t *tracker, onNode func(*corev1.Node), old, obj any) {
	n, _ := unwrap(obj).(*corev1.Node)
	if o, ok := old.(*corev1.Node); ok && n != nil && nodeUnchanged(o, n) {
		return
	}
	if onNode != nil {
		onNode(n)
	}
	t.NodeChanged()
}

// nodeUnchanged reports whether a Node update changed nothing portico reads (status
// heartbeats are stripped by the transform, so most updates compare equal).
func nodeUnchanged(a, b *corev1.Node) bool {
	return apiequality.Semantic.DeepEqual(a.Labels, b.Labels) &&
		apiequality.Semantic.DeepEqual(a.Spec, b.Spec) &&
		apiequality.Semantic.DeepEqual(a.Status, b.Status) &&
		a.DeletionTimestamp.Equal(b.DeletionTimestamp)
}
