package nftables

import (
	"errors"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/model"
)

// Names of the metrics the backend registers in backends.Options.Metrics. The first two are
// kube-proxy's nftables-mode counters, with kube-proxy's type and label; the others are
// portico's own. (kube-proxy's iptables counter,
// kubeproxy_sync_proxy_rules_iptables_restore_failures_total, is the iptables backend's to
// register.)
const (
	// MetricSyncFailures counts, by ip_family, the syncs that failed: the kernel rejected
	// the transaction, or nft could not be run or the table not be listed (the
	// deletion-only transactions of MetricCleanupFailures aside).
	MetricSyncFailures = "kubeproxy_sync_proxy_rules_nftables_sync_failures_total"
	// MetricCleanupFailures counts, by ip_family, the failed transactions that only
	// deleted objects the previous transaction had emptied (stale chains, sets and maps).
	MetricCleanupFailures = "kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total"
	// MetricChains is, by ip_family, the number of chains portico's table holds after the
	// last successful sync (those emptied and awaiting deletion included).
	MetricChains = "portico_nftables_chains"
	// MetricRules is, by ip_family, the number of rules in the chains of portico's table
	// after the last successful sync.
	MetricRules = "portico_nftables_rules"
	// MetricSets is, by ip_family, the number of sets and maps portico's table holds after
	// the last successful sync.
	MetricSets = "portico_nftables_sets"
	// MetricElements is, by ip_family, the number of elements portico wrote into the sets
	// and maps of its table, as of the last successful sync. The entries the kernel adds to
	// the session-affinity sets by itself are not counted.
	MetricElements = "portico_nftables_elements"
)

// labelFamily is the label of every metric of the backend, as kube-proxy names it.
const labelFamily = "ip_family"

// Objects every table holds, whatever its Service ports.
var (
	skeletonChains = len(helperChainOrder) + len(baseChains())
	skeletonSets   = len(sharedSets(newFam(model.IPv4)))
)

// backendMetrics are the metrics the backend records. A nil *backendMetrics (no registry in
// the Options) records nothing.
type backendMetrics struct {
	syncFailures    *prometheus.CounterVec
	cleanupFailures *prometheus.CounterVec
	chains          *prometheus.GaugeVec
	rules           *prometheus.GaugeVec
	sets            *prometheus.GaugeVec
	elements        *prometheus.GaugeVec
}

// newBackendMetrics creates the backend's metrics and registers them in reg; with a nil reg
// it returns nil. A metric reg already holds (a second backend on the same registry) is
// shared. Other registration errors are returned together with metrics that still record,
// unregistered.
func newBackendMetrics(reg prometheus.Registerer) (*backendMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{labelFamily})
	}
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{labelFamily})
	}
	// The help texts of the kube-proxy counters are those portico served before the
	// backend owned them, so that a scrape does not change.
	m := &backendMetrics{
		syncFailures:    counter(MetricSyncFailures, "nftables transactions that the kernel rejected."),
		cleanupFailures: counter(MetricCleanupFailures, "Failed removals of stale nftables objects."),
		chains:          gauge(MetricChains, "Chains in portico's nftables table after the last successful sync."),
		rules:           gauge(MetricRules, "Rules in the chains of portico's nftables table after the last successful sync."),
		sets:            gauge(MetricSets, "Sets and maps in portico's nftables table after the last successful sync."),
		elements: gauge(MetricElements,
			"Elements portico wrote into the sets and maps of its nftables table, as of the last successful sync."),
	}
	var errs []error
	m.syncFailures = backends.Register(reg, MetricSyncFailures, m.syncFailures, &errs)
	m.cleanupFailures = backends.Register(reg, MetricCleanupFailures, m.cleanupFailures, &errs)
	m.chains = backends.Register(reg, MetricChains, m.chains, &errs)
	m.rules = backends.Register(reg, MetricRules, m.rules, &errs)
	m.sets = backends.Register(reg, MetricSets, m.sets, &errs)
	m.elements = backends.Register(reg, MetricElements, m.elements, &errs)
	return m, errors.Join(errs...)
}

// failed counts a failed Sync of family f: a cleanup failure when its transaction only
// deleted stale objects, else a sync failure. The gauges keep the values of the last
// successful sync, which the kernel still holds (a failed transaction changes nothing).
func (m *backendMetrics) failed(f model.Family, cleanupOnly bool) {
	if m == nil {
		return
	}
	if cleanupOnly {
		m.cleanupFailures.WithLabelValues(f.String()).Inc()
		return
	}
	m.syncFailures.WithLabelValues(f.String()).Inc()
}

// synced records what the table of family f holds after a successful Sync, as fs mirrors
// it.
func (m *backendMetrics) synced(f model.Family, fs *familyState) {
	if m == nil || fs == nil {
		return
	}
	m.set(f, countObjects(fs))
}

// cleared records that the table of family f is gone (Cleanup).
func (m *backendMetrics) cleared(f model.Family) {
	if m == nil {
		return
	}
	m.set(f, objectCounts{})
}

func (m *backendMetrics) set(f model.Family, c objectCounts) {
	fam := f.String()
	m.chains.WithLabelValues(fam).Set(float64(c.chains))
	m.rules.WithLabelValues(fam).Set(float64(c.rules))
	m.sets.WithLabelValues(fam).Set(float64(c.sets))
	m.elements.WithLabelValues(fam).Set(float64(c.elements))
}

// objectCounts are the numbers of objects in one family's table.
type objectCounts struct {
	chains, rules, sets, elements int
}

// countObjects counts the objects of fs's table from the mirror, after a committed
// transaction, from the ports' totals that applyPort keeps (a pass over every port took
// ~4 ms per sync at 50,000 ports):
//
//   - chains: the fixed ones, the ports' chains, and the chains emptied by the last
//     transaction that the next one deletes;
//   - rules: those of the fixed chains (as the last full sync wrote them) and of the
//     ports' chains (the emptied chains hold none);
//   - sets and maps: the shared ones, the endpoint maps the kernel holds (those groups
//     read and those awaiting deletion), the ports' session-affinity sets, and the
//     emptied affinity sets awaiting deletion;
//   - elements: those of the shared sets and maps (one per element, however many ports
//     want it) and the endpoint-map elements (one per endpoint slot).
func countObjects(fs *familyState) objectCounts {
	c := objectCounts{
		chains: skeletonChains + len(fs.staleChains),
		rules:  fs.skeletonRules,
		sets:   skeletonSets + len(fs.epMaps),
		// Once a transaction is committed, every entry of the store is in the kernel:
		// reconcile writes each entry it keeps and drops those nobody claims.
		elements: len(fs.store.entries),
	}.plus(fs.portTotals)
	for name := range fs.staleSets {
		if !strings.HasPrefix(name, endpointMapPrefix) {
			c.sets++ // an endpoint map awaiting deletion is in fs.epMaps
		}
	}
	return c
}

// counts returns what one port adds to the table's objects (nothing for nil): its chains
// and their rules, its affinity sets and its endpoint-map elements.
func (ps *portState) counts() objectCounts {
	var c objectCounts
	if ps == nil {
		return c
	}
	c.chains, c.sets = len(ps.chains), len(ps.affinity)
	for _, ch := range ps.chains {
		c.rules += ch.rules
	}
	for _, g := range ps.groups {
		c.elements += g.len()
	}
	return c
}

func (c objectCounts) plus(o objectCounts) objectCounts {
	return objectCounts{chains: c.chains + o.chains, rules: c.rules + o.rules, sets: c.sets + o.sets, elements: c.elements + o.elements}
}

func (c objectCounts) minus(o objectCounts) objectCounts {
	return objectCounts{chains: c.chains - o.chains, rules: c.rules - o.rules, sets: c.sets - o.sets, elements: c.elements - o.elements}
}
