package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"github.com/portico-dev/portico/proxier/metrics"
)

// serverRetry is how long a server that could not listen, or failed, waits before it
// tries again, as in kube-proxy.
const serverRetry = 5 * time.Second

// server is one of portico's HTTP servers: metrics or healthz.
type server struct {
	// name names the server in messages: the configuration field of its address.
	name string
	// addr is host:port; "" disables the server.
	addr    string
	handler http.Handler
	// retry is how long to wait before trying again after a failure.
	retry time.Duration
}

// startServers opens the listeners of servers at once and serves them in g until ctx
// ends. With hardFail (bindAddressHardFail) a server that cannot listen is an error now,
// nothing is served, and a server that fails later fails g; without it the failure is
// logged and the server tries again every retry, as kube-proxy does.
func startServers(ctx context.Context, g *errgroup.Group, servers []server, hardFail bool) error {
	lns := make([]net.Listener, len(servers))
	var errs []error
	for i, s := range servers {
		if s.addr == "" {
			continue
		}
		ln, err := s.listen(ctx)
		if hardFail && err != nil {
			errs = append(errs, fmt.Errorf("bindAddressHardFail is set and %w", err))
		} else if err != nil {
			klog.FromContext(ctx).Error(err, "Cannot start a server; trying again later", "retryIn", s.retry)
		}
		lns[i] = ln
	}
	if err := errors.Join(errs...); err != nil {
		for _, ln := range lns {
			if ln != nil {
				_ = ln.Close()
			}
		}
		return err
	}
	for i, s := range servers {
		if s.addr != "" {
			g.Go(func() error { return s.serve(ctx, lns[i], hardFail) })
		}
	}
	return nil
}

// listen opens the server's listener.
func (s server) listen(ctx context.Context) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.addr)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", s.name, s.addr, err)
	}
	return ln, nil
}

// serve serves s on ln until ctx ends; a nil ln has yet to be opened. Failures return
// with hardFail, and are logged and retried without.
func (s server) serve(ctx context.Context, ln net.Listener, hardFail bool) error {
	logger := klog.FromContext(ctx)
	for {
		if ln != nil {
			err := metrics.ServeListener(ctx, ln, s.handler)
			if ctx.Err() != nil {
				return err
			}
			if hardFail {
				return fmt.Errorf("%s %s: %w", s.name, s.addr, err)
			}
			logger.Error(err, "Server failed; trying again later", "server", s.name, "retryIn", s.retry)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.retry):
		}
		var err error
		if ln, err = s.listen(ctx); err != nil {
			logger.Error(err, "Cannot start a server; trying again later", "retryIn", s.retry)
		}
	}
}
