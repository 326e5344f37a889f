package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"

	"github.com/portico-dev/portico/config"
	"github.com/portico-dev/portico/proxier"
	"github.com/portico-dev/portico/proxier/metrics"
)

// TestStartEvents: the recorder runProxy passes to the proxier writes Events to the API
// server of the configuration, as the node, and counts them in portico_events_total.
func TestStartEvents(t *testing.T) {
	var mu sync.Mutex
	var posted []eventsv1.Event
	var agent string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/apis/events.k8s.io/v1/namespaces/shop/events" {
			http.NotFound(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var ev eventsv1.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		posted, agent = append(posted, ev), r.UserAgent()
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := metrics.New()
	events := startEvents(ctx, &config.Config{Master: srv.URL, ContentType: "application/json"}, "node-a", m)
	if events == nil {
		t.Fatal("startEvents returned no recorder")
	}
	events.Warn(proxier.ObjectRef{Kind: "Service", Namespace: "shop", Name: "web"}, proxier.EventReasonInvalidField, "bad port")

	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(posted)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no Event was posted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	ev := posted[0]
	mu.Unlock()
	if ev.ReportingInstance != "node-a" || ev.Note != "bad port" || ev.Regarding.Name != "web" {
		t.Errorf("posted %+v", ev)
	}
	if !strings.HasPrefix(agent, "portico/") {
		t.Errorf("user agent %q, want portico/<version>", agent)
	}
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(scrapeMetrics(t, m), `portico_events_total{outcome="written"} 1`) {
		if time.Now().After(deadline) {
			t.Fatalf("portico_events_total{outcome=\"written\"} is not 1:\n%s", scrapeMetrics(t, m))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStartEventsWithoutAPI: without a usable API configuration there are no Events
// (a nil Events, which the proxier reads as none), and no panic.
func TestStartEventsWithoutAPI(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	if events := startEvents(context.Background(), &config.Config{}, "node-a", metrics.New()); events != nil {
		t.Errorf("startEvents outside a cluster without a kubeconfig returned %T, want nil", events)
	}
}

// scrapeMetrics returns m's /metrics text.
func scrapeMetrics(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler("nftables", func() (any, error) { return nil, nil }).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}
