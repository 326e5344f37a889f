package metrics

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-dev/portico/model"
)

// get performs a GET of path on h and returns the response and its body.
func get(t *testing.T, h http.Handler, path string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	res := rec.Result()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return res, string(body)
}

// recordAll touches every metric once so that labelled ones appear in a scrape.
func recordAll(m *Metrics) {
	m.ObserveSync(model.IPv4, true, 20*time.Millisecond)
	m.ObserveSync(model.IPv4, false, 2*time.Millisecond)
	m.ObserveNetworkProgramming(model.IPv4, 300*time.Millisecond)
	m.SetLastSync(model.IPv4, time.Unix(1700000000, 500000000))
	m.SetLastQueued(model.IPv4, time.Unix(1700000000, 0))
	m.SetPending(2, 3)
	m.IncChanges(4, 5)
	m.SetNoLocalEndpoints(PolicyInternal, model.IPv4, 1)
	m.SetNoLocalEndpoints(PolicyExternal, model.IPv6, 2)
	m.IncSyncError("nftables", model.IPv4)
	m.IncSyncError("iptables", model.IPv6)
	m.IncInvalid("Service")
	m.ObserveTransactionSize(17)
	m.SetGeneration(42)
	m.IncHealthz(200)
	m.IncLivez(503)
	m.IncRulesRepair(model.IPv6)
	m.IncRulesRepair(model.IPv6)
}

// scrape returns the exposition text of /metrics.
func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	res, body := get(t, h, "/metrics")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: status %d", res.StatusCode)
	}
	return body
}

// families returns the metric names and types declared by "# TYPE" lines.
func families(text string) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			out[f[2]] = f[3]
		}
	}
	return out
}

// sample returns the value of the sample line that starts with prefix.
func sample(t *testing.T, text, prefix string) float64 {
	t.Helper()
	for line := range strings.Lines(text) {
		if rest, found := strings.CutPrefix(strings.TrimSpace(line), prefix+" "); found {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatalf("sample %s: %v", prefix, err)
			}
			return v
		}
	}
	t.Fatalf("no sample %s", prefix)
	return 0
}

func TestMetricNames(t *testing.T) {
	m := New()
	recordAll(m)
	got := families(scrape(t, m.Handler("nftables", nil)))
	want := map[string]string{
		"kubeproxy_sync_proxy_rules_duration_seconds":              "histogram",
		"kubeproxy_sync_full_proxy_rules_duration_seconds":         "histogram",
		"kubeproxy_sync_partial_proxy_rules_duration_seconds":      "histogram",
		"kubeproxy_network_programming_duration_seconds":           "histogram",
		"kubeproxy_sync_proxy_rules_last_timestamp_seconds":        "gauge",
		"kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds": "gauge",
		"kubeproxy_sync_proxy_rules_endpoint_changes_pending":      "gauge",
		"kubeproxy_sync_proxy_rules_endpoint_changes_total":        "counter",
		"kubeproxy_sync_proxy_rules_service_changes_pending":       "gauge",
		"kubeproxy_sync_proxy_rules_service_changes_total":         "counter",
		"kubeproxy_sync_proxy_rules_no_local_endpoints_total":      "gauge",
		"kubeproxy_proxy_healthz_total":                            "counter",
		"kubeproxy_proxy_livez_total":                              "counter",
		"portico_sync_errors_total":                                "counter",
		"portico_invalid_objects_total":                            "counter",
		"portico_backend_transaction_size":                         "histogram",
		"portico_rules_synced_generation":                          "gauge",
		"portico_rules_repairs_total":                              "counter",
		"go_goroutines":                                            "gauge",
		"process_start_time_seconds":                               "gauge",
	}
	for name, typ := range want {
		if got[name] != typ {
			t.Errorf("metric %s: type %q, want %q", name, got[name], typ)
		}
	}
	for name := range got {
		if _, ok := want[name]; ok || strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
			continue
		}
		t.Errorf("unexpected metric %s", name)
	}
}

func TestMetricLabelsAndValues(t *testing.T) {
	m := New()
	recordAll(m)
	text := scrape(t, m.Handler("nftables", nil))
	for prefix, want := range map[string]float64{
		`kubeproxy_sync_proxy_rules_duration_seconds_count{ip_family="IPv4"}`:                             2,
		`kubeproxy_sync_full_proxy_rules_duration_seconds_count{ip_family="IPv4"}`:                        1,
		`kubeproxy_sync_partial_proxy_rules_duration_seconds_count{ip_family="IPv4"}`:                     1,
		`kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv4"}`:                             1.7000000005e9,
		`kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds{ip_family="IPv4"}`:                      1.7e9,
		`kubeproxy_sync_proxy_rules_service_changes_pending`:                                              2,
		`kubeproxy_sync_proxy_rules_endpoint_changes_pending`:                                             3,
		`kubeproxy_sync_proxy_rules_service_changes_total`:                                                4,
		`kubeproxy_sync_proxy_rules_endpoint_changes_total`:                                               5,
		`kubeproxy_sync_proxy_rules_no_local_endpoints_total{ip_family="IPv4",traffic_policy="internal"}`: 1,
		`kubeproxy_sync_proxy_rules_no_local_endpoints_total{ip_family="IPv6",traffic_policy="external"}`: 2,
		`kubeproxy_proxy_healthz_total{code="200"}`:                                                       1,
		`kubeproxy_proxy_livez_total{code="503"}`:                                                         1,
		`portico_sync_errors_total{backend="nftables"}`:                                                   1,
		`portico_sync_errors_total{backend="iptables"}`:                                                   1,
		`portico_invalid_objects_total{kind="Service"}`:                                                   1,
		`portico_backend_transaction_size_sum`:                                                            17,
		`portico_rules_synced_generation`:                                                                 42,
		`portico_rules_repairs_total{ip_family="IPv6"}`:                                                   2,
		`kubeproxy_network_programming_duration_seconds_bucket{ip_family="IPv4",le="0.25"}`:               0,
		`kubeproxy_network_programming_duration_seconds_bucket{ip_family="IPv4",le="0.5"}`:                1,
		`kubeproxy_sync_proxy_rules_duration_seconds_bucket{ip_family="IPv4",le="0.002"}`:                 1,
		`kubeproxy_sync_proxy_rules_duration_seconds_bucket{ip_family="IPv4",le="16.384"}`:                2,
		`kubeproxy_sync_proxy_rules_duration_seconds_bucket{ip_family="IPv4",le="+Inf"}`:                  2,
		`kubeproxy_network_programming_duration_seconds_bucket{ip_family="IPv4",le="+Inf"}`:               1,
		`kubeproxy_network_programming_duration_seconds_count{ip_family="IPv4"}`:                          1,
		`kubeproxy_sync_partial_proxy_rules_duration_seconds_bucket{ip_family="IPv4",le="0.001"}`:         0,
		`kubeproxy_sync_full_proxy_rules_duration_seconds_bucket{ip_family="IPv4",le="0.032"}`:            1,
		`portico_backend_transaction_size_bucket{le="16"}`:                                                0,
		`portico_backend_transaction_size_bucket{le="64"}`:                                                1,
		`kubeproxy_sync_proxy_rules_duration_seconds_bucket{ip_family="IPv4",le="0.001"}`:                 0,
		`kubeproxy_sync_full_proxy_rules_duration_seconds_bucket{ip_family="IPv4",le="0.016"}`:            0,
		`kubeproxy_sync_partial_proxy_rules_duration_seconds_bucket{ip_family="IPv4",le="0.002"}`:         1,
		`kubeproxy_network_programming_duration_seconds_bucket{ip_family="IPv4",le="0"}`:                  0,
		`kubeproxy_network_programming_duration_seconds_bucket{ip_family="IPv4",le="300"}`:                1,
		`kubeproxy_network_programming_duration_seconds_sum{ip_family="IPv4"}`:                            0.3,
	} {
		if got := sample(t, text, prefix); got != want {
			t.Errorf("%s = %v, want %v", prefix, got, want)
		}
	}
}

// bucketBounds returns the le values of the buckets of histogram name, in order.
func bucketBounds(text, name string) []string {
	var out []string
	for line := range strings.Lines(text) {
		if !strings.HasPrefix(line, name+"_bucket{") {
			continue
		}
		_, rest, _ := strings.Cut(line, `le="`)
		le, _, _ := strings.Cut(rest, `"`)
		out = append(out, le)
	}
	return out
}

func TestBuckets(t *testing.T) {
	m := New()
	recordAll(m)
	text := scrape(t, m.Handler("nftables", nil))

	want := []string{"0", "0.25", "0.5"}
	for i := 1; i <= 59; i++ {
		want = append(want, strconv.Itoa(i))
	}
	for i := 60; i <= 115; i += 5 {
		want = append(want, strconv.Itoa(i))
	}
	for i := 120; i <= 300; i += 30 {
		want = append(want, strconv.Itoa(i))
	}
	want = append(want, "+Inf")
	if got := bucketBounds(text, "kubeproxy_network_programming_duration_seconds"); !slices.Equal(got, want) {
		t.Errorf("network programming buckets:\n got %v\nwant %v", got, want)
	}

	want = nil
	for i := range 15 {
		want = append(want, strconv.FormatFloat(0.001*float64(int(1)<<i), 'g', -1, 64))
	}
	want = append(want, "+Inf")
	for _, name := range []string{
		"kubeproxy_sync_proxy_rules_duration_seconds",
		"kubeproxy_sync_full_proxy_rules_duration_seconds",
		"kubeproxy_sync_partial_proxy_rules_duration_seconds",
	} {
		if got := bucketBounds(text, name); !slices.Equal(got, want) {
			t.Errorf("%s buckets:\n got %v\nwant %v", name, got, want)
		}
	}
}

func TestNilMetricsRecordsNothing(t *testing.T) {
	var m *Metrics
	recordAll(m)
	if m.Registry() != nil {
		t.Error("nil Metrics has a registry")
	}
	if r := m.Registerer(); r != nil {
		t.Errorf("nil Metrics has registerer %#v, want a nil interface", r)
	}
}

// TestRegistererServesOthersMetrics checks that what a backend registers in Registerer is
// served on /metrics with the proxier's metrics, and that the mode-specific kube-proxy
// counters are no longer registered here (the backends register them).
func TestRegistererServesOthersMetrics(t *testing.T) {
	m := New()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "backend_test_total", Help: "A backend's counter."},
		[]string{"ip_family"})
	if err := m.Registerer().Register(c); err != nil {
		t.Fatalf("registering a backend's metric: %v", err)
	}
	c.WithLabelValues("IPv6").Add(3)
	m.IncSyncError("nftables", model.IPv4)
	text := scrape(t, m.Handler("nftables", nil))
	if got := sample(t, text, `backend_test_total{ip_family="IPv6"}`); got != 3 {
		t.Errorf("backend counter = %v, want 3", got)
	}
	if got := sample(t, text, `portico_sync_errors_total{backend="nftables"}`); got != 1 {
		t.Errorf("portico_sync_errors_total = %v, want 1", got)
	}
	for _, name := range []string{
		"kubeproxy_sync_proxy_rules_nftables_sync_failures_total",
		"kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total",
		"kubeproxy_sync_proxy_rules_iptables_restore_failures_total",
	} {
		if strings.Contains(text, name) {
			t.Errorf("%s is served by proxier/metrics; it belongs to the backend", name)
		}
	}
}

func TestProxyMode(t *testing.T) {
	res, body := get(t, New().Handler("nftables", nil), "/proxyMode")
	if res.StatusCode != http.StatusOK || body != "nftables" {
		t.Errorf("/proxyMode = %d %q, want 200 \"nftables\"", res.StatusCode, body)
	}
	if ct := res.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("/proxyMode Content-Type %q", ct)
	}
}

func TestConfigz(t *testing.T) {
	cfg := map[string]any{
		"apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
		"kind":       "KubeProxyConfiguration",
		"mode":       "nftables",
	}
	h := New().Handler("nftables", func() (any, error) { return cfg, nil })
	res, body := get(t, h, "/configz")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/configz status %d", res.StatusCode)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("/configz Content-Type %q", ct)
	}
	var doc map[string]map[string]any
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("/configz body %q: %v", body, err)
	}
	if len(doc) != 1 {
		t.Errorf("/configz has %d keys, want 1: %s", len(doc), body)
	}
	got := doc["kubeproxy.config.k8s.io"]
	if got["kind"] != "KubeProxyConfiguration" || got["apiVersion"] != "kubeproxy.config.k8s.io/v1alpha1" || got["mode"] != "nftables" {
		t.Errorf("/configz = %s", body)
	}
}

func TestConfigzEmptyAndError(t *testing.T) {
	if _, body := get(t, New().Handler("ipvs", nil), "/configz"); body != "{}" {
		t.Errorf("/configz without configuration = %q, want {}", body)
	}
	h := New().Handler("ipvs", func() (any, error) { return nil, errors.New("boom") })
	if res, _ := get(t, h, "/configz"); res.StatusCode != http.StatusInternalServerError {
		t.Errorf("/configz with failing configz: status %d, want 500", res.StatusCode)
	}
}

func TestHealthzAndNotFound(t *testing.T) {
	h := New().Handler("nftables", nil)
	if res, body := get(t, h, "/healthz"); res.StatusCode != http.StatusOK || body != "ok" {
		t.Errorf("/healthz = %d %q", res.StatusCode, body)
	}
	for _, path := range []string{"/", "/nope", "/metricsx", "/proxyMode/x"} {
		if res, _ := get(t, h, path); res.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", path, res.StatusCode)
		}
	}
}

func TestServeDisabled(t *testing.T) {
	if err := Serve(t.Context(), "", http.NotFoundHandler()); err != nil {
		t.Errorf("Serve with empty address: %v", err)
	}
}

func TestServeListenerStopsWithContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, ln, New().Handler("nftables", nil)) }()

	res, err := http.Get("http://" + ln.Addr().String() + "/proxyMode")
	if err != nil {
		t.Fatalf("GET /proxyMode: %v", err)
	}
	body, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if string(body) != "nftables" {
		t.Errorf("/proxyMode body %q", body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServeListener: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeListener did not return after cancel")
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Error("listener still accepts after shutdown")
	}
}

func TestServeListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	if err := Serve(t.Context(), ln.Addr().String(), http.NotFoundHandler()); err == nil {
		t.Error("Serve on a busy address succeeded")
	}
}
