// Package kubeapi connects the proxier to a Kubernetes API server. It knows only the three
// API groups portico reads, core/v1 (Services, Nodes), discovery/v1 (EndpointSlices) and
// networking.k8s.io/v1 (ServiceCIDRs), so the binary neither links nor initialises client-go's clientset and the fifty other
// API groups it registers: at start-up that is about 10 MB less resident memory on every
// node.
package kubeapi

import (
	"fmt"
	"net"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/portico-dev/portico/proxier"
)

// scheme holds the three API groups (each registration includes the list, watch-event and
// status types the REST client decodes).
var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(corev1.AddToScheme(scheme))
	utilruntime.Must(discoveryv1.AddToScheme(scheme))
	utilruntime.Must(networkingv1.AddToScheme(scheme))
}

// Sources returns the proxier's list-watches through cfg: Services and EndpointSlices
// of every namespace, the Node called nodeName, and the ServiceCIDRs. cfg's content
// types (protobuf by default in kube-proxy's clientConnection) are kept. The four share
// one HTTP client, so one HTTP/2 connection (whatever client-go's transport cache
// decides), which dials with DialTimeout unless cfg has a dialer of its own; a watch
// whose connection failed its health check ends as if the server had closed it (see
// endLostWatches). It does not contact the server.
func Sources(cfg *rest.Config, nodeName string) (proxier.Sources, error) {
	base := rest.CopyConfig(cfg)
	if base.UserAgent == "" {
		base.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	if base.Dial == nil {
		base.Dial = (&net.Dialer{Timeout: DialTimeout, KeepAlive: 30 * time.Second}).DialContext
	}
	base.Wrap(endLostWatches)
	hc, err := rest.HTTPClientFor(base)
	if err != nil {
		return proxier.Sources{}, fmt.Errorf("creating the API client: %w", err)
	}
	core, err := restClient(base, hc, corev1.SchemeGroupVersion, "/api")
	if err != nil {
		return proxier.Sources{}, err
	}
	discovery, err := restClient(base, hc, discoveryv1.SchemeGroupVersion, "/apis")
	if err != nil {
		return proxier.Sources{}, err
	}
	networking, err := restClient(base, hc, networkingv1.SchemeGroupVersion, "/apis")
	if err != nil {
		return proxier.Sources{}, err
	}
	return proxier.Sources{
		ServiceCIDRs:   cache.NewListWatchFromClient(networking, "servicecidrs", metav1.NamespaceAll, fields.Everything()),
		Services:       cache.NewListWatchFromClient(core, "services", metav1.NamespaceAll, fields.Everything()),
		EndpointSlices: cache.NewListWatchFromClient(discovery, "endpointslices", metav1.NamespaceAll, fields.Everything()),
		Nodes: cache.NewListWatchFromClient(core, "nodes", metav1.NamespaceAll,
			fields.OneTermEqualSelector("metadata.name", nodeName)),
	}, nil
}

// restClient returns a REST client for one group version over hc.
func restClient(base *rest.Config, hc *http.Client, gv schema.GroupVersion, apiPath string) (*rest.RESTClient, error) {
	cfg := rest.CopyConfig(base)
	cfg.GroupVersion = &gv
	cfg.APIPath = apiPath
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	c, err := rest.RESTClientForConfigAndClient(cfg, hc)
	if err != nil {
		return nil, fmt.Errorf("creating the API client for %s: %w", gv, err)
	}
	return c, nil
}

// groupClient returns a REST client for the API group version gv alone, through its own
// HTTP client from cfg, decoding with s (a scheme holding that group only).
func groupClient(cfg *rest.Config, gv schema.GroupVersion, s *runtime.Scheme) (*rest.RESTClient, error) {
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &gv
	c.APIPath = "/apis"
	c.NegotiatedSerializer = serializer.NewCodecFactory(s).WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	client, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("creating the API client for %s: %w", gv, err)
	}
	return client, nil
}
