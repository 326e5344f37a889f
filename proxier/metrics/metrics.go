// Package metrics holds portico's Prometheus metrics and the HTTP handler that exposes them.
//
// The kube-proxy metrics keep kube-proxy's names, types, label names and histogram buckets,
// so that dashboards and alerts written for kube-proxy keep working. Metrics that only
// portico has carry the portico_ prefix.
//
// Each Metrics value owns its own registry; nothing is registered globally. The metrics of
// one proxy mode only (kube-proxy's nftables or iptables failure counters, the counts of
// what a backend holds in the kernel) are not here: the backend registers them in the
// same registry (Registerer), so that they are served on the same /metrics.
package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/portico-dev/portico/model"
)

// Traffic policy values of the traffic_policy label of
// kubeproxy_sync_proxy_rules_no_local_endpoints_total, as kube-proxy spells them.
const (
	// PolicyInternal counts Services with internalTrafficPolicy: Local.
	PolicyInternal = "internal"
	// PolicyExternal counts Services with externalTrafficPolicy: Local.
	PolicyExternal = "external"
)

// Label names shared by several metrics.
const (
	labelFamily = "ip_family"
	labelCode   = "code"
)

// syncBuckets are kube-proxy's buckets for rule sync durations: 1ms doubling 15 times.
var syncBuckets = prometheus.ExponentialBuckets(0.001, 2, 15)

// networkProgrammingBuckets are kube-proxy's buckets for network programming latency: a
// leading 0 bucket, 0.25s and 0.5s, then every second up to 59s, every 5s from 60s to 115s
// and every 30s from 2 to 5 minutes.
func networkProgrammingBuckets() []float64 {
	b := []float64{0}
	b = append(b, prometheus.LinearBuckets(0.25, 0.25, 2)...)
	b = append(b, prometheus.LinearBuckets(1, 1, 59)...)
	b = append(b, prometheus.LinearBuckets(60, 5, 12)...)
	b = append(b, prometheus.LinearBuckets(120, 30, 7)...)
	return b
}

// transactionBuckets count operations in one backend transaction: 1, 4, 16, ... 262144.
var transactionBuckets = prometheus.ExponentialBuckets(1, 4, 10)

// Metrics is the set of metrics of one portico process. All methods are safe for
// concurrent use. The recording methods accept a nil *Metrics and then record nothing, so
// callers that run without metrics need no checks.
type Metrics struct {
	registry *prometheus.Registry

	syncDuration        *prometheus.HistogramVec
	syncFullDuration    *prometheus.HistogramVec
	syncPartialDuration *prometheus.HistogramVec
	networkProgramming  *prometheus.HistogramVec
	lastSync            *prometheus.GaugeVec
	lastQueued          *prometheus.GaugeVec
	endpointsPending    prometheus.Gauge
	endpointsTotal      prometheus.Counter
	servicesPending     prometheus.Gauge
	servicesTotal       prometheus.Counter
	noLocalEndpoints    *prometheus.GaugeVec
	healthz             *prometheus.CounterVec
	livez               *prometheus.CounterVec

	syncErrors      *prometheus.CounterVec
	invalidObjects  *prometheus.CounterVec
	transactionSize prometheus.Histogram
	generation      prometheus.Gauge
	rulesRepairs    *prometheus.CounterVec
}

// New returns a Metrics with every metric registered in a fresh registry, together with the
// Go runtime and process collectors. Metrics with labels appear in a scrape once they are
// first recorded.
func New() *Metrics {
	m := &Metrics{registry: prometheus.NewRegistry()}
	m.initKubeProxy()
	m.initPortico()
	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.registry.MustRegister(m.collectors()...)
	return m
}

// initKubeProxy creates the metrics that kube-proxy also exports.
func (m *Metrics) initKubeProxy() {
	m.syncDuration = histogramVec("kubeproxy_sync_proxy_rules_duration_seconds",
		"Time in seconds one synchronisation of the proxy rules took, full or partial.", syncBuckets)
	m.syncFullDuration = histogramVec("kubeproxy_sync_full_proxy_rules_duration_seconds",
		"Time in seconds one full rewrite of the proxy rules took.", syncBuckets)
	m.syncPartialDuration = histogramVec("kubeproxy_sync_partial_proxy_rules_duration_seconds",
		"Time in seconds one incremental update of the proxy rules took.", syncBuckets)
	m.networkProgramming = histogramVec("kubeproxy_network_programming_duration_seconds",
		"Seconds from a Service or endpoint change to the moment the node's rules reflect it.",
		networkProgrammingBuckets())
	m.lastSync = gaugeVec("kubeproxy_sync_proxy_rules_last_timestamp_seconds",
		"Unix time of the last successful synchronisation of the proxy rules.", labelFamily)
	m.lastQueued = gaugeVec("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
		"Unix time at which a synchronisation of the proxy rules was last requested.", labelFamily)
	m.endpointsPending = gauge("kubeproxy_sync_proxy_rules_endpoint_changes_pending",
		"Endpoint changes received but not yet written to the proxy rules.")
	m.endpointsTotal = counter("kubeproxy_sync_proxy_rules_endpoint_changes_total",
		"Endpoint changes received since start.")
	m.servicesPending = gauge("kubeproxy_sync_proxy_rules_service_changes_pending",
		"Service changes received but not yet written to the proxy rules.")
	m.servicesTotal = counter("kubeproxy_sync_proxy_rules_service_changes_total",
		"Service changes received since start.")
	m.noLocalEndpoints = gaugeVec("kubeproxy_sync_proxy_rules_no_local_endpoints_total",
		"Services whose Local traffic policy finds no endpoint on this node.",
		"traffic_policy", labelFamily)
	m.healthz = counterVec("kubeproxy_proxy_healthz_total",
		"Answers of the /healthz endpoint by HTTP status code.", labelCode)
	m.livez = counterVec("kubeproxy_proxy_livez_total",
		"Answers of the /livez endpoint by HTTP status code.", labelCode)
}

// initPortico creates the metrics that only portico exports.
func (m *Metrics) initPortico() {
	m.syncErrors = counterVec("portico_sync_errors_total",
		"Failed backend synchronisations, by backend.", "backend")
	m.invalidObjects = counterVec("portico_invalid_objects_total",
		"API objects ignored because they are invalid, by kind.", "kind")
	m.transactionSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "portico_backend_transaction_size",
		Help:    "Number of operations in one backend transaction.",
		Buckets: transactionBuckets,
	})
	m.generation = gauge("portico_rules_synced_generation",
		"Generation of the proxy rules last written successfully; grows with every successful sync.")
	m.rulesRepairs = counterVec("portico_rules_repairs_total",
		"Times the proxy rules were found missing from the kernel (deleted or flushed by someone else) and a full sync was started to put them back.",
		labelFamily)
}

// collectors lists every metric of m, for registration.
func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		m.syncDuration, m.syncFullDuration, m.syncPartialDuration, m.networkProgramming,
		m.lastSync, m.lastQueued,
		m.endpointsPending, m.endpointsTotal, m.servicesPending, m.servicesTotal,
		m.noLocalEndpoints, m.healthz, m.livez,
		m.syncErrors, m.invalidObjects, m.transactionSize, m.generation, m.rulesRepairs,
	}
}

func histogramVec(name, help string, buckets []float64) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets},
		[]string{labelFamily})
}

func gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

func gauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
}

func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
}

// Registry returns the registry that holds every metric of m (nil for a nil m).
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.registry
}

// Registerer returns m's registry for others to register their metrics in, served with
// m's own: the backend passes it on as backends.Options.Metrics. For a nil m it returns a
// nil interface (not an interface holding a nil *prometheus.Registry), so that the
// backend's nil check works.
func (m *Metrics) Registerer() prometheus.Registerer {
	if m == nil {
		return nil
	}
	return m.registry
}

// ObserveSync records how long one sync of family f took, in the overall histogram and in
// the full or the partial one.
func (m *Metrics) ObserveSync(f model.Family, full bool, d time.Duration) {
	if m == nil {
		return
	}
	fam := f.String()
	m.syncDuration.WithLabelValues(fam).Observe(d.Seconds())
	if full {
		m.syncFullDuration.WithLabelValues(fam).Observe(d.Seconds())
	} else {
		m.syncPartialDuration.WithLabelValues(fam).Observe(d.Seconds())
	}
}

// ObserveNetworkProgramming records the time from a change of an API object to the sync of
// family f that made the rules reflect it.
func (m *Metrics) ObserveNetworkProgramming(f model.Family, d time.Duration) {
	if m == nil {
		return
	}
	m.networkProgramming.WithLabelValues(f.String()).Observe(d.Seconds())
}

// SetLastSync records t as the time of the last successful sync of family f.
func (m *Metrics) SetLastSync(f model.Family, t time.Time) {
	if m == nil {
		return
	}
	m.lastSync.WithLabelValues(f.String()).Set(unixSeconds(t))
}

// SetLastQueued records t as the time a sync of family f was last requested.
func (m *Metrics) SetLastQueued(f model.Family, t time.Time) {
	if m == nil {
		return
	}
	m.lastQueued.WithLabelValues(f.String()).Set(unixSeconds(t))
}

// SetPending records how many Service and endpoint changes wait for the next sync.
func (m *Metrics) SetPending(services, endpoints int) {
	if m == nil {
		return
	}
	m.servicesPending.Set(float64(services))
	m.endpointsPending.Set(float64(endpoints))
}

// IncChanges adds newly received Service and endpoint changes to the running totals.
func (m *Metrics) IncChanges(services, endpoints int) {
	if m == nil {
		return
	}
	m.servicesTotal.Add(float64(max(services, 0)))
	m.endpointsTotal.Add(float64(max(endpoints, 0)))
}

// SetNoLocalEndpoints records, for family f, how many Services with a Local traffic policy
// of kind policy (PolicyInternal or PolicyExternal) have no local endpoint.
func (m *Metrics) SetNoLocalEndpoints(policy string, f model.Family, n int) {
	if m == nil {
		return
	}
	m.noLocalEndpoints.WithLabelValues(policy, f.String()).Set(float64(n))
}

// IncSyncError counts a failed sync by backend (its proxy mode name); the family is not a
// label of this counter. kube-proxy's failure counters of each mode are the backend's own,
// registered in Registerer and counted by the backend:
// kubeproxy_sync_proxy_rules_nftables_sync_failures_total and ..._cleanup_failures_total
// by the nftables backend, kubeproxy_sync_proxy_rules_iptables_restore_failures_total by
// the iptables backend once it exists.
func (m *Metrics) IncSyncError(backend string, _ model.Family) {
	if m == nil {
		return
	}
	m.syncErrors.WithLabelValues(backend).Inc()
}

// IncInvalid counts an API object of the given kind ("Service", "EndpointSlice", ...) that
// was ignored because it is invalid.
func (m *Metrics) IncInvalid(kind string) {
	if m == nil {
		return
	}
	m.invalidObjects.WithLabelValues(kind).Inc()
}

// ObserveTransactionSize records the number of operations of one backend transaction.
func (m *Metrics) ObserveTransactionSize(n int) {
	if m == nil {
		return
	}
	m.transactionSize.Observe(float64(n))
}

// SetGeneration records n as the generation of the rules last synced successfully.
func (m *Metrics) SetGeneration(n uint64) {
	if m == nil {
		return
	}
	m.generation.Set(float64(n))
}

// IncRulesRepair counts one repair of family f: its rules were found missing from the
// kernel and a full sync was requested.
func (m *Metrics) IncRulesRepair(f model.Family) {
	if m == nil {
		return
	}
	m.rulesRepairs.WithLabelValues(f.String()).Inc()
}

// IncHealthz counts one answer of the /healthz endpoint with the given HTTP status code.
func (m *Metrics) IncHealthz(code int) {
	if m == nil {
		return
	}
	m.healthz.WithLabelValues(strconv.Itoa(code)).Inc()
}

// IncLivez counts one answer of the /livez endpoint with the given HTTP status code.
func (m *Metrics) IncLivez(code int) {
	if m == nil {
		return
	}
	m.livez.WithLabelValues(strconv.Itoa(code)).Inc()
}

// unixSeconds converts t to fractional seconds since the Unix epoch, as
// Gauge.SetToCurrentTime does.
func unixSeconds(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e9
}
