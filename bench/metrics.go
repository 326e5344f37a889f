package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

// Scrape is one parsed /metrics answer.
type Scrape map[string]*dto.MetricFamily

// scraper reads a proxy's metrics server from inside the node namespace.
type scraper struct {
	base   string
	client *http.Client
}

func newScraper(topo *netns.Topology, node string, port int) *scraper {
	return &scraper{
		base: fmt.Sprintf("http://127.0.0.1:%d", port),
		client: &http.Client{Timeout: 30 * time.Second,
			Transport: &http.Transport{DialContext: topo.Dialer(node), DisableKeepAlives: true}},
	}
}

// get fetches a path of the metrics server.
func (s *scraper) get(ctx context.Context, path string) ([]byte, error) {
	return fetch(ctx, s.client, s.base+path)
}

// fetch GETs url with client and returns the body of a 200 answer.
func fetch(ctx context.Context, client *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return body, nil
}

func (s *scraper) scrape(ctx context.Context) (Scrape, error) {
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	body, err := s.get(sctx, "/metrics")
	if err != nil {
		return nil, err
	}
	return parseScrape(body, s.base)
}

// parseScrape parses a /metrics answer from base.
func parseScrape(body []byte, base string) (Scrape, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		return nil, fmt.Errorf("parsing %s/metrics: %w", base, err)
	}
	return Scrape(fams), nil
}

func labelsMatch(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == k && l.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Value returns the gauge/counter/untyped value (a summary's sample count) of the series
// of name whose labels include want, and whether it exists.
func (s Scrape) Value(name string, want map[string]string) (float64, bool) {
	f := s[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		if !labelsMatch(m, want) {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		case m.Summary != nil:
			return float64(m.GetSummary().GetSampleCount()), true
		}
	}
	return 0, false
}

// Families returns the ip_family label values of a metric (empty: no such label).
func (s Scrape) Families(name string) []string {
	var out []string
	if f := s[name]; f != nil {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "ip_family" {
					out = append(out, l.GetValue())
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// Hist is a cumulative histogram: upper bounds and counts, plus sum and count.
type Hist struct {
	Bounds []float64 `json:"bounds"`
	Counts []float64 `json:"counts"`
	Sum    float64   `json:"sum"`
	Count  float64   `json:"count"`
}

// Histogram merges every series of a histogram metric (e.g. both IP families).
func (s Scrape) Histogram(name string) Hist {
	var h Hist
	f := s[name]
	if f == nil {
		return h
	}
	idx := map[float64]int{}
	for _, m := range f.GetMetric() {
		mh := m.GetHistogram()
		if mh == nil {
			continue
		}
		h.Sum += mh.GetSampleSum()
		h.Count += float64(mh.GetSampleCount())
		for _, b := range mh.GetBucket() {
			ub := b.GetUpperBound()
			if math.IsInf(ub, 1) { // Count holds it; JSON cannot
				continue
			}
			i, ok := idx[ub]
			if !ok {
				i = len(h.Bounds)
				idx[ub] = i
				h.Bounds = append(h.Bounds, ub)
				h.Counts = append(h.Counts, 0)
			}
			h.Counts[i] += float64(b.GetCumulativeCount())
		}
	}
	// sort by bound
	order := make([]int, len(h.Bounds))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return h.Bounds[order[a]] < h.Bounds[order[b]] })
	nb, nc := make([]float64, len(order)), make([]float64, len(order))
	for i, o := range order {
		nb[i], nc[i] = h.Bounds[o], h.Counts[o]
	}
	h.Bounds, h.Counts = nb, nc
	return h
}

// Sub returns h minus an earlier snapshot of the same histogram.
func (h Hist) Sub(prev Hist) Hist {
	out := Hist{Sum: h.Sum - prev.Sum, Count: h.Count - prev.Count}
	pc := map[float64]float64{}
	for i, b := range prev.Bounds {
		pc[b] = prev.Counts[i]
	}
	for i, b := range h.Bounds {
		out.Bounds = append(out.Bounds, b)
		out.Counts = append(out.Counts, h.Counts[i]-pc[b])
	}
	return out
}

// Quantile estimates a quantile by linear interpolation inside the bucket that holds it,
// as Prometheus' histogram_quantile does. NaN when empty.
func (h Hist) Quantile(q float64) float64 {
	if h.Count <= 0 || len(h.Bounds) == 0 {
		return math.NaN()
	}
	rank := q * h.Count
	prevB, prevC := 0.0, 0.0
	for i, b := range h.Bounds {
		c := h.Counts[i]
		if c >= rank {
			if math.IsInf(b, 1) {
				return prevB
			}
			if c == prevC {
				return b
			}
			return prevB + (b-prevB)*(rank-prevC)/(c-prevC)
		}
		prevB, prevC = b, c
	}
	return prevB
}

// Mean returns sum/count (NaN when empty).
func (h Hist) Mean() float64 {
	if h.Count <= 0 {
		return math.NaN()
	}
	return h.Sum / h.Count
}

// QuantileBucket returns the bounds of the bucket that holds a quantile: (lo, hi], hi
// +Inf past the last bound; ok is false when empty.
func (h Hist) QuantileBucket(q float64) (lo, hi float64, ok bool) {
	if h.Count <= 0 {
		return 0, 0, false
	}
	rank := q * h.Count
	for i, b := range h.Bounds {
		if h.Counts[i] >= rank {
			return lo, b, true
		}
		lo = b
	}
	return lo, math.Inf(1), true
}
