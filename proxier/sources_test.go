package proxier

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// clientsetSources returns Sources over a clientset (the fake one in these tests), the
// Node list narrowed to node by a field selector as package kubeapi does.
func clientsetSources(cs kubernetes.Interface, node string) Sources {
	lw := func(list func(context.Context, metav1.ListOptions) (runtime.Object, error), w func(context.Context, metav1.ListOptions) (watch.Interface, error)) cache.ListerWatcher {
		return cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
			ListWithContextFunc:  list,
			WatchFuncWithContext: w,
		}, cs)
	}
	nodeOpts := func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", node).String()
	}
	return Sources{
		Services: lw(
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return cs.CoreV1().Services("").List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return cs.CoreV1().Services("").Watch(ctx, o)
			}),
		EndpointSlices: lw(
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return cs.DiscoveryV1().EndpointSlices("").List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return cs.DiscoveryV1().EndpointSlices("").Watch(ctx, o)
			}),
		ServiceCIDRs: lw(
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return cs.NetworkingV1().ServiceCIDRs().List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return cs.NetworkingV1().ServiceCIDRs().Watch(ctx, o)
			}),
		Nodes: lw(
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				nodeOpts(&o)
				return cs.CoreV1().Nodes().List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				nodeOpts(&o)
				return cs.CoreV1().Nodes().Watch(ctx, o)
			}),
	}
}
