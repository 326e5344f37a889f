package portico

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics are scraped samples keyed by "name" or "name{label=value,...}" (labels sorted);
// histograms appear as name_count and name_sum.
type Metrics map[string]float64

// Scrape reads portico's /metrics.
func (p *Portico) Scrape(ctx context.Context) (Metrics, error) {
	code, body, err := p.Get(ctx, MetricsPort, "/metrics")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("/metrics answered %d", code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("parsing /metrics: %w", err)
	}
	out := Metrics{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			addSample(out, name, m)
		}
	}
	return out, nil
}

func addSample(out Metrics, name string, m *dto.Metric) {
	key := name + labelKey(m.GetLabel())
	switch {
	case m.Counter != nil:
		out[key] = m.GetCounter().GetValue()
	case m.Gauge != nil:
		out[key] = m.GetGauge().GetValue()
	case m.Histogram != nil:
		out[name+"_count"+labelKey(m.GetLabel())] = float64(m.GetHistogram().GetSampleCount())
		out[name+"_sum"+labelKey(m.GetLabel())] = m.GetHistogram().GetSampleSum()
	case m.Untyped != nil:
		out[key] = m.GetUntyped().GetValue()
	}
}

func labelKey(ls []*dto.LabelPair) string {
	if len(ls) == 0 {
		return ""
	}
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = l.GetName() + "=" + l.GetValue()
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

// programmed reports whether, for every family, a change was queued at or after since and
// a sync has completed after the last queued change.
func programmed(m Metrics, since time.Time) bool {
	for _, fam := range []string{"IPv4", "IPv6"} {
		queued := m["kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds{ip_family="+fam+"}"]
		synced := m["kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="+fam+"}"]
		if queued < float64(since.UnixNano())/1e9 || synced < queued {
			return false
		}
	}
	return m["kubeproxy_sync_proxy_rules_service_changes_pending"] == 0 &&
		m["kubeproxy_sync_proxy_rules_endpoint_changes_pending"] == 0
}

// WaitProgrammed waits until portico has queued a change at or after since and has synced
// every change it has received (read from its metrics, never a fixed sleep). It cannot know
// of a write whose watch event has not reached portico yet: env.Env.WaitProgrammed adds a
// barrier for that.
func (p *Portico) WaitProgrammed(ctx context.Context, since time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last error
	for {
		m, err := p.Scrape(ctx)
		if err == nil && programmed(m, since) {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("portico did not program the changes since %s: %w (last scrape error: %v); log tail:\n%s",
				since.Format(time.RFC3339Nano), ctx.Err(), last, p.LogTail(20))
		case <-time.After(20 * time.Millisecond):
		}
	}
}
