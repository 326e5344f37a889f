package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/portico-dev/portico/config"
)

// TestAPICompression: the API client asks for gzipped responses only with
// --kube-api-compression (the Go transport adds "Accept-Encoding: gzip" unless told not
// to), over HTTPS with a kubeconfig and over plain HTTP with --master (where client-go
// would use http.DefaultTransport, which ignores DisableCompression).
func TestAPICompression(t *testing.T) {
	for _, tls := range []bool{true, false} {
		t.Run(fmt.Sprintf("tls=%v", tls), func(t *testing.T) { testAPICompression(t, tls) })
	}
}

func testAPICompression(t *testing.T, tls bool) {
	var mu sync.Mutex
	var encodings []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		encodings = append(encodings, r.Header.Get("Accept-Encoding"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(corev1.ServiceList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceList"}})
	}))
	base := config.Config{QPS: 5, Burst: 10, ContentType: "application/json"}
	if tls {
		srv.StartTLS()
		base.Kubeconfig = writeKubeconfig(t, srv)
	} else {
		srv.Start()
		base.Master = srv.URL
	}
	defer srv.Close()
	for _, compression := range []bool{false, true} {
		mu.Lock()
		encodings = nil
		mu.Unlock()
		cfg := base
		cfg.APICompression = compression
		src, err := newSources(&cfg, "node-a")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cache.ToListerWatcherWithContext(src.Services).ListWithContext(context.Background(), metav1.ListOptions{}); err != nil {
			t.Fatalf("compression %v: list: %v", compression, err)
		}
		mu.Lock()
		got := strings.Join(encodings, ",")
		mu.Unlock()
		if asked := strings.Contains(got, "gzip"); asked != compression {
			t.Errorf("with APICompression %v the client sent Accept-Encoding %q", compression, got)
		}
	}
}

// writeKubeconfig writes a kubeconfig that trusts srv's certificate.
func writeKubeconfig(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	doc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: test
  user: {}
contexts:
- name: test
  context: {cluster: test, user: test}
current-context: test
`, srv.URL, base64.StdEncoding.EncodeToString(ca))
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
