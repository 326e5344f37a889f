package kubeapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// TestSourcesList: each list-watch asks the right path (the Node list with a selector on
// the node's name) and decodes the answer into the typed list.
func TestSourcesList(t *testing.T) {
	var mu sync.Mutex
	queries := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries[r.URL.Path] = r.URL.Query().Get("fieldSelector")
		mu.Unlock()
		var list any
		switch r.URL.Path {
		case "/api/v1/services":
			list = corev1.ServiceList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceList"},
				Items: []corev1.Service{{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"}}}}
		case "/apis/discovery.k8s.io/v1/endpointslices":
			list = discoveryv1.EndpointSliceList{TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSliceList"},
				Items: []discoveryv1.EndpointSlice{{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "default"}, AddressType: discoveryv1.AddressTypeIPv4}}}
		case "/api/v1/nodes":
			list = corev1.NodeList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "NodeList"},
				Items: []corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}}}
		default:
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(list)
	}))
	defer srv.Close()

	src, err := Sources(&rest.Config{Host: srv.URL}, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		lw   cache.ListerWatcher
		path string
		want func(runtime.Object) string // the first item's name
	}{
		{"services", src.Services, "/api/v1/services", func(o runtime.Object) string { return o.(*corev1.ServiceList).Items[0].Name }},
		{"endpointslices", src.EndpointSlices, "/apis/discovery.k8s.io/v1/endpointslices", func(o runtime.Object) string { return o.(*discoveryv1.EndpointSliceList).Items[0].Name }},
		{"nodes", src.Nodes, "/api/v1/nodes", func(o runtime.Object) string { return o.(*corev1.NodeList).Items[0].Name }},
	} {
		obj, err := cache.ToListerWatcherWithContext(tc.lw).ListWithContext(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatalf("%s: list: %v", tc.name, err)
		}
		if got := tc.want(obj); got == "" {
			t.Errorf("%s: list decoded without the item's name", tc.name)
		}
		mu.Lock()
		_, asked := queries[tc.path]
		mu.Unlock()
		if !asked {
			t.Errorf("%s: %s was not requested (requests: %v)", tc.name, tc.path, queries)
		}
	}
	if got, want := queries["/api/v1/nodes"], "metadata.name=node-a"; got != want {
		t.Errorf("node list field selector %q, want %q", got, want)
	}
	if got := queries["/api/v1/services"]; got != "" {
		t.Errorf("service list has field selector %q, want none", got)
	}
}
