package metrics

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"k8s.io/klog/v2"
)

// ShutdownTimeout bounds how long Serve waits for requests in flight once its context is
// done; connections still open after it are closed.
const ShutdownTimeout = 5 * time.Second

// readHeaderTimeout bounds how long a client may take to send its request headers.
const readHeaderTimeout = 10 * time.Second

// Serve listens on the TCP address addr ("host:port") and serves h there until ctx is done,
// then shuts the server down gracefully and returns nil. An empty addr means the server is
// disabled: Serve returns nil at once, as kube-proxy does for an empty bind address. An
// error to listen or to serve is returned.
func Serve(ctx context.Context, addr string, h http.Handler) error {
	if addr == "" {
		return nil
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	return ServeListener(ctx, ln, h)
}

// ServeListener serves h on ln until ctx is done, then shuts the server down gracefully and
// returns nil. It closes ln. An error of the server is returned.
func ServeListener(ctx context.Context, ln net.Listener, h http.Handler) error {
	logger := klog.FromContext(ctx)
	addr := ln.Addr().String()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.V(2).Info("Serving HTTP", "address", addr)

	select {
	case err := <-served:
		return fmt.Errorf("serving on %s: %w", addr, err)
	case <-ctx.Done():
	}
	logger.V(2).Info("Stopping HTTP server", "address", addr)
	return shutdown(ctx, srv, served)
}

// shutdown stops srv gracefully within ShutdownTimeout, forcibly after it, and waits for
// its Serve to return.
func shutdown(ctx context.Context, srv *http.Server, served <-chan error) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		_ = srv.Close()
		err = fmt.Errorf("shutting down the HTTP server: %w", err)
	}
	<-served
	return err
}
