package metrics

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ConfigzGroup is the key under which /configz publishes the configuration, kube-proxy's
// configuration API group.
const ConfigzGroup = "kubeproxy.config.k8s.io"

// Handler returns the handler of the metrics server. It serves, like kube-proxy's:
//
//   - /metrics: the metrics of m's registry in the Prometheus exposition formats;
//   - /proxyMode: mode as plain text, without a trailing newline;
//   - /configz: a JSON object {"kubeproxy.config.k8s.io": <configuration>}, where the
//     configuration is what configz returns (give it an object that marshals with apiVersion
//     and kind, such as a v1alpha1.KubeProxyConfiguration with its TypeMeta set); a nil
//     configz serves the empty object {}, an error of configz answers 500;
//   - /healthz and /healthz/ping: "ok", the liveness check kube-proxy's metrics server
//     answers (the proxier's own health is on the health server);
//
// and 404 for every other path. m must not be nil.
func (m *Metrics) Handler(mode string, configz func() (any, error)) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/proxyMode", proxyModeHandler(mode))
	mux.HandleFunc("/configz", configzHandler(configz))
	mux.HandleFunc("/healthz", ok)
	mux.HandleFunc("/healthz/ping", ok)
	return mux
}

// proxyModeHandler answers the proxy mode as plain text.
func proxyModeHandler(mode string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = fmt.Fprint(w, mode)
	}
}

// configzHandler answers the configuration returned by configz under ConfigzGroup.
func configzHandler(configz func() (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		body, err := configzBody(configz)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(body)
	}
}

// configzBody marshals the /configz document.
func configzBody(configz func() (any, error)) ([]byte, error) {
	doc := map[string]any{}
	if configz != nil {
		cfg, err := configz()
		if err != nil {
			return nil, fmt.Errorf("reading the configuration: %w", err)
		}
		doc[ConfigzGroup] = cfg
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("marshaling the configuration: %w", err)
	}
	return b, nil
}

// ok answers "ok" as plain text.
func ok(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = fmt.Fprint(w, "ok")
}
