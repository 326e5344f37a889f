package iptables

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/model"
)

// Names of the metrics the backend registers in backends.Options.Metrics: kube-proxy's
// iptables-mode metrics, with its names and labels, so that its dashboards keep working.
const (
	MetricRestoreFailures        = "kubeproxy_sync_proxy_rules_iptables_restore_failures_total"
	MetricPartialRestoreFailures = "kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total"
	MetricRules                  = "kubeproxy_sync_proxy_rules_iptables_total"
)

// backendMetrics are the backend's metrics; a nil *backendMetrics records nothing.
type backendMetrics struct {
	restoreFailures, partialFailures *prometheus.CounterVec
	rules                            *prometheus.GaugeVec
	err                              error
}

// newBackendMetrics creates the metrics and registers them in reg (nil: no metrics; the
// registration error, if any, is kept in err).
func newBackendMetrics(reg prometheus.Registerer) *backendMetrics {
	if reg == nil {
		return nil
	}
	m := &backendMetrics{
		restoreFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRestoreFailures,
			Help: "Cumulative proxy iptables restore failures"}, []string{"ip_family"}),
		partialFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricPartialRestoreFailures,
			Help: "Cumulative proxy iptables partial restore failures"}, []string{"ip_family"}),
		rules: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: MetricRules,
			Help: "Total number of iptables rules owned by portico"}, []string{"table", "ip_family"}),
	}
	var errs []error
	m.restoreFailures = backends.Register(reg, MetricRestoreFailures, m.restoreFailures, &errs)
	m.partialFailures = backends.Register(reg, MetricPartialRestoreFailures, m.partialFailures, &errs)
	m.rules = backends.Register(reg, MetricRules, m.rules, &errs)
	m.err = errors.Join(errs...)
	return m
}

// failed counts a failed sync of family f (a partial one counts in both counters, as in
// kube-proxy).
func (m *backendMetrics) failed(f model.Family, full bool) {
	if m == nil {
		return
	}
	m.restoreFailures.WithLabelValues(f.String()).Inc()
	if !full {
		m.partialFailures.WithLabelValues(f.String()).Inc()
	}
}

// synced sets the rule counts per table from the mirror.
func (m *backendMetrics) synced(fs *familyState) {
	if m == nil {
		return
	}
	counts := map[string]int{}
	for _, c := range fs.chains {
		counts[c.table] += c.rules
	}
	for _, t := range restoreTables {
		m.rules.WithLabelValues(t, fs.x.f.String()).Set(float64(counts[t]))
	}
}
