package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"github.com/portico-dev/portico/config"
)

// freeAddr returns a 127.0.0.1 address with a port nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// busyAddr returns an address something listens on until the returned function is called.
func busyAddr(t *testing.T) (string, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln.Addr().String(), func() { _ = ln.Close() }
}

// answers reports whether GET http://addr/ answers with body.
func answers(addr, body string) bool {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := c.Get("http://" + addr + "/")
	if err != nil {
		return false
	}
	defer func() { _ = res.Body.Close() }()
	got, err := io.ReadAll(res.Body)
	return err == nil && string(got) == body
}

func text(s string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, s) })
}

// TestStartServersHardFail: with bindAddressHardFail a port that is taken fails the start,
// naming the field and the address, and the other server's port is left free.
func TestStartServersHardFail(t *testing.T) {
	busy, _ := busyAddr(t)
	other := freeAddr(t)
	g, ctx := errgroup.WithContext(t.Context())
	err := startServers(ctx, g, []server{
		{"metricsBindAddress", busy, text("metrics"), time.Hour},
		{"healthzBindAddress", other, text("healthz"), time.Hour},
	}, true)
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "bindAddressHardFail is set and metricsBindAddress "+busy) {
		t.Fatalf("startServers: %v, want an error naming bindAddressHardFail, metricsBindAddress and %s", err, busy)
	}
	if err := g.Wait(); err != nil {
		t.Errorf("a server was started: %v", err)
	}
	ln, err := net.Listen("tcp", other)
	if err != nil {
		t.Errorf("the healthz port was left open: %v", err)
	} else {
		_ = ln.Close()
	}
}

// TestStartServersRetries: without bindAddressHardFail a port that is taken is logged and
// tried again until it is free, while the other server serves.
func TestStartServersRetries(t *testing.T) {
	busy, free := busyAddr(t)
	other := freeAddr(t)
	ctx, cancel := context.WithCancel(t.Context())
	g, gctx := errgroup.WithContext(ctx)
	err := startServers(gctx, g, []server{
		{"metricsBindAddress", busy, text("metrics"), 20 * time.Millisecond},
		{"healthzBindAddress", other, text("healthz"), 20 * time.Millisecond},
		{"disabled", "", text("never"), time.Millisecond},
	}, false)
	if err != nil {
		t.Fatalf("startServers: %v", err)
	}
	if !answers(other, "healthz") {
		t.Error("the healthz server does not answer")
	}
	free()
	deadline := time.Now().Add(5 * time.Second)
	for !answers(busy, "metrics") {
		if time.Now().After(deadline) {
			t.Fatal("the metrics server did not start once its port was free")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := g.Wait(); err != nil {
		t.Errorf("servers after their context ended: %v", err)
	}
}

// TestBindAddressHardFailExits runs portico with bindAddressHardFail and a metrics port in
// use: it exits 1 naming the port, before any sync.
func TestBindAddressHardFailExits(t *testing.T) {
	fakeHost(t)
	srv, _ := apiServer(t)
	busy, _ := busyAddr(t)
	doc := fmt.Sprintf("mode: nftables\nbindAddressHardFail: true\nmetricsBindAddress: %q\nhealthzBindAddress: %q\n", busy, freeAddr(t))
	code, msg, _ := run(t, "--config="+writeConfig(t, doc), "--master="+srv.URL, "--hostname-override=node-a")
	if code != exitError || !strings.Contains(msg, "metricsBindAddress "+busy) {
		t.Errorf("exit %d, error %q; want %d naming metricsBindAddress %s", code, msg, exitError, busy)
	}
}

func TestApplyLogging(t *testing.T) {
	apply := func(args []string, l config.LoggingConfig) {
		t.Helper()
		cmd := newRootCommand()
		if err := cmd.ParseFlags(args); err != nil {
			t.Fatal(err)
		}
		if err := applyLogging(cmd.Flags(), l); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { apply(nil, config.LoggingConfig{}) })

	apply(nil, config.LoggingConfig{Verbosity: 3})
	if !klog.V(3).Enabled() || klog.V(4).Enabled() {
		t.Error("logging.verbosity 3 was not applied")
	}
	apply(nil, config.LoggingConfig{VModule: "servers_test=5"})
	if !klog.V(5).Enabled() || klog.V(6).Enabled() {
		t.Error("logging.vmodule servers_test=5 was not applied to this file")
	}
	apply([]string{"-v=1", "--vmodule=other=2"}, config.LoggingConfig{Verbosity: 3, VModule: "servers_test=5"})
	if !klog.V(1).Enabled() || klog.V(2).Enabled() {
		t.Error("-v=1 and --vmodule on the command line did not win over the logging section")
	}
}
