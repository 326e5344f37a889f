package main

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/portico-dev/portico/config"
	"github.com/portico-dev/portico/proxier"
	"github.com/portico-dev/portico/proxier/kubeapi"
	"github.com/portico-dev/portico/proxier/metrics"
)

// startEvents builds portico's Event recorder, runs it in the background until ctx ends
// and returns it for proxier.Options.Events. When it cannot be built, the reason is logged
// and nil (no Events) returned: problems are still logged and counted.
func startEvents(ctx context.Context, cfg *config.Config, nodeName string, m *metrics.Metrics) proxier.Events {
	rec, err := newEventRecorder(cfg, nodeName, m.Registerer())
	if err != nil {
		klog.FromContext(ctx).Error(err, "Sending no Events; problems are still logged and counted")
		return nil
	}
	go rec.Run(ctx)
	return rec
}

// newEventRecorder returns a recorder writing Events as node nodeName through the API
// server of cfg, counting the outcome of each warning in portico_events_total in reg
// (when reg is not nil).
func newEventRecorder(cfg *config.Config, nodeName string, reg prometheus.Registerer) (*proxier.EventRecorder, error) {
	rc, err := eventsAPIConfig(cfg)
	if err != nil {
		return nil, err
	}
	sink, err := kubeapi.NewEventSink(rc, nodeName)
	if err != nil {
		return nil, err
	}
	outcomes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portico_events_total",
		Help: "Warnings about API objects, by what became of them: written, exists (another node wrote it), " +
			"duplicate, object_limited, queue_full, too_many, failed.",
	}, []string{"outcome"})
	if reg != nil {
		if err := reg.Register(outcomes); err != nil {
			return nil, fmt.Errorf("registering portico_events_total: %w", err)
		}
	}
	return proxier.NewEventRecorder(sink, proxier.EventOptions{
		Count: func(outcome string) { outcomes.WithLabelValues(outcome).Inc() },
	}), nil
}

// eventsAPIConfig returns the client configuration of the Event writer: the kubeconfig
// (or in-cluster configuration) and the content types of clientConnection. Its rate limit
// is client-go's default: the recorder writes far less.
func eventsAPIConfig(cfg *config.Config) (*rest.Config, error) {
	rc, err := apiConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("for Events: %w", err)
	}
	rc.ContentType, rc.AcceptContentTypes = cfg.ContentType, cfg.AcceptContentTypes
	rc.UserAgent = "portico/" + version
	return rc, nil
}
