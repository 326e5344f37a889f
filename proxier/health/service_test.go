package health

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/portico-dev/portico/model"
)

// fakePorts is a ListenFunc that listens on 127.0.0.1 port 0 for every health check port,
// or on a chosen address for the ports in busy, and remembers where each port went: the
// address of its last listener, and every address it was asked for.
type fakePorts struct {
	mu    sync.Mutex
	busy  map[uint16]string
	addrs map[uint16]string
	asked map[uint16][]string
	opens map[uint16]int
}

func newFakePorts() *fakePorts {
	return &fakePorts{busy: map[uint16]string{}, addrs: map[uint16]string{}, asked: map[uint16][]string{}, opens: map[uint16]int{}}
}

func (p *fakePorts) listen(network string, at netip.Addr, port uint16) (net.Listener, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	addr := "127.0.0.1:0"
	if b, ok := p.busy[port]; ok {
		addr = b
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	asked := network + " *"
	if at.IsValid() {
		asked = network + " " + at.String()
	}
	p.asked[port] = append(p.asked[port], asked)
	p.addrs[port] = ln.Addr().String()
	p.opens[port]++
	return ln, nil
}

// listenedOn returns every address port was asked to listen on, in order.
func (p *fakePorts) listenedOn(port uint16) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.asked[port])
}

func (p *fakePorts) addr(port uint16) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addrs[port]
}

func (p *fakePorts) opened(port uint16) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.opens[port]
}

var client = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true},
	Timeout:   5 * time.Second,
}

type answer struct {
	code   int
	header http.Header
	body   string
}

func fetch(t *testing.T, addr string) answer {
	t.Helper()
	res, err := client.Get("http://" + addr + "/any/path")
	if err != nil {
		t.Fatalf("GET %s: %v", addr, err)
	}
	defer func() { _ = res.Body.Close() }()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", addr, err)
	}
	return answer{code: res.StatusCode, header: res.Header, body: string(body)}
}

// wantBody is kube-proxy's body: tab-indented JSON without a trailing newline.
func wantBody(ns, name string, n int, healthy bool) string {
	return fmt.Sprintf("{\n\t\"service\": {\n\t\t\"namespace\": %q,\n\t\t\"name\": %q\n\t},\n"+
		"\t\"localEndpoints\": %d,\n\t\"serviceProxyHealthy\": %v\n}", ns, name, n, healthy)
}

func checkAnswer(t *testing.T, addr string, code int, body string, weight string) {
	t.Helper()
	a := fetch(t, addr)
	if a.code != code {
		t.Errorf("%s: status %d, want %d", addr, a.code, code)
	}
	if a.body != body {
		t.Errorf("%s: body\n%s\nwant\n%s", addr, a.body, body)
	}
	for k, v := range map[string]string{
		"Content-Type":                     "application/json",
		"X-Content-Type-Options":           "nosniff",
		"X-Load-Balancing-Endpoint-Weight": weight,
	} {
		if got := a.header.Get(k); got != v {
			t.Errorf("%s: header %s %q, want %q", addr, k, got, v)
		}
	}
}

func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		_ = c.Close()
		return false
	}
	return true
}

var (
	web = model.ServiceName{Namespace: "default", Name: "web"}
	api = model.ServiceName{Namespace: "prod", Name: "api"}
	db  = model.ServiceName{Namespace: "prod", Name: "db"}
)

func newTestServiceHealth(t *testing.T, healthy func() bool) (*ServiceHealth, *fakePorts) {
	t.Helper()
	ports := newFakePorts()
	s := NewServiceHealth(ports.listen, healthy)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, ports
}

func TestServiceHealthAnswers(t *testing.T) {
	var nodeOK atomic.Bool
	nodeOK.Store(true)
	s, ports := newTestServiceHealth(t, nodeOK.Load)
	err := s.Sync(t.Context(), map[model.ServiceName]ServiceEntry{
		web: {Port: 30001, LocalEndpoints: 3},
		api: {Port: 30002, LocalEndpoints: 0},
	})
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	checkAnswer(t, ports.addr(30001), http.StatusOK, wantBody("default", "web", 3, true), "3")
	checkAnswer(t, ports.addr(30002), http.StatusServiceUnavailable, wantBody("prod", "api", 0, true), "0")

	nodeOK.Store(false)
	checkAnswer(t, ports.addr(30001), http.StatusServiceUnavailable, wantBody("default", "web", 3, false), "3")
}

func TestServiceHealthUpdateWithoutRestart(t *testing.T) {
	s, ports := newTestServiceHealth(t, nil)
	syncCount := func(n int) {
		t.Helper()
		if err := s.Sync(t.Context(), map[model.ServiceName]ServiceEntry{web: {Port: 30001, LocalEndpoints: n}}); err != nil {
			t.Fatalf("Sync: %v", err)
		}
	}
	syncCount(0)
	addr := ports.addr(30001)
	checkAnswer(t, addr, http.StatusServiceUnavailable, wantBody("default", "web", 0, true), "0")
	syncCount(2)
	checkAnswer(t, addr, http.StatusOK, wantBody("default", "web", 2, true), "2")
	syncCount(1)
	checkAnswer(t, addr, http.StatusOK, wantBody("default", "web", 1, true), "1")
	if n := ports.opened(30001); n != 1 {
		t.Errorf("port opened %d times, want 1", n)
	}
}

func TestServiceHealthRemovalAndPortChange(t *testing.T) {
	s, ports := newTestServiceHealth(t, nil)
	err := s.Sync(t.Context(), map[model.ServiceName]ServiceEntry{
		web: {Port: 30001, LocalEndpoints: 1},
		api: {Port: 30002, LocalEndpoints: 1},
	})
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	webAddr, apiAddr := ports.addr(30001), ports.addr(30002)

	err = s.Sync(t.Context(), map[model.ServiceName]ServiceEntry{web: {Port: 30003, LocalEndpoints: 1}})
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if !refused(apiAddr) {
		t.Error("removed service still listens")
	}
	if !refused(webAddr) {
		t.Error("old port of a moved service still listens")
	}
	checkAnswer(t, ports.addr(30003), http.StatusOK, wantBody("default", "web", 1, true), "1")

	newAddr := ports.addr(30003)
	if err := s.Sync(t.Context(), nil); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if !refused(newAddr) {
		t.Error("service still listens after an empty Sync")
	}
}

func TestServiceHealthPortConflict(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, ports := newTestServiceHealth(t, nil)
	ports.busy[30002] = busy.Addr().String()
	services := map[model.ServiceName]ServiceEntry{
		web: {Port: 30001, LocalEndpoints: 1},
		api: {Port: 30002, LocalEndpoints: 1},
		db:  {Port: 30003, LocalEndpoints: 2},
	}

	err = s.Sync(t.Context(), services)
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("Sync error %v, want one wrapping EADDRINUSE", err)
	}
	checkAnswer(t, ports.addr(30001), http.StatusOK, wantBody("default", "web", 1, true), "1")
	checkAnswer(t, ports.addr(30003), http.StatusOK, wantBody("prod", "db", 2, true), "2")

	// Once the port is free, the next Sync starts the missing server.
	if err := busy.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(t.Context(), services); err != nil {
		t.Fatalf("Sync after freeing the port: %v", err)
	}
	checkAnswer(t, ports.addr(30002), http.StatusOK, wantBody("prod", "api", 1, true), "1")
	if n := ports.opened(30001); n != 1 {
		t.Errorf("healthy port opened %d times, want 1", n)
	}
}

func TestServiceHealthPortZero(t *testing.T) {
	s, ports := newTestServiceHealth(t, nil)
	err := s.Sync(t.Context(), map[model.ServiceName]ServiceEntry{
		web: {Port: 0, LocalEndpoints: 1},
		api: {Port: 30002, LocalEndpoints: 1},
	})
	if err == nil {
		t.Error("Sync accepted port 0")
	}
	checkAnswer(t, ports.addr(30002), http.StatusOK, wantBody("prod", "api", 1, true), "1")
}

func TestServiceHealthClose(t *testing.T) {
	ports := newFakePorts()
	s := NewServiceHealth(ports.listen, nil)
	err := s.Sync(t.Context(), map[model.ServiceName]ServiceEntry{
		web: {Port: 30001, LocalEndpoints: 1},
		api: {Port: 30002, LocalEndpoints: 1},
	})
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, port := range []uint16{30001, 30002} {
		if !refused(ports.addr(port)) {
			t.Errorf("port %d still listens after Close", port)
		}
	}
}

func TestListen(t *testing.T) {
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(probe.Addr().(*net.TCPAddr).Port)
	_ = probe.Close()

	ln, err := Listen("tcp4", netip.MustParseAddr("127.0.0.1"), port)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	if ln.Addr().String() != probe.Addr().String() {
		t.Errorf("listener on %s, want %s", ln.Addr(), probe.Addr())
	}
	// The port is taken now: a second listen fails.
	if _, err := Listen("tcp4", netip.MustParseAddr("127.0.0.1"), port); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("second Listen error %v, want EADDRINUSE", err)
	}
	if err := ln.Close(); err != nil {
		t.Error(err)
	}
}

// TestServiceHealthListensOnBoundAddresses: the servers listen on every address until the
// addresses are known, then only on the ones SetBind gives (a family's unspecified address
// when every address of it is selected), and move when they change.
func TestServiceHealthListensOnBoundAddresses(t *testing.T) {
	s, ports := newTestServiceHealth(t, nil)
	web1 := map[model.ServiceName]ServiceEntry{web: {Port: 30001, LocalEndpoints: 1}}
	sync := func(want ...string) {
		t.Helper()
		if err := s.Sync(t.Context(), web1); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		if got := ports.listenedOn(30001); !slices.Equal(got, want) {
			t.Errorf("listened on %q, want %q", got, want)
		}
	}
	sync("tcp *")

	before := ports.addr(30001)
	s.SetBind(map[model.Family]Bind{
		model.IPv6: {Any: true},
		model.IPv4: {Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.11"), netip.MustParseAddr("192.0.2.10")}},
	})
	sync("tcp *", "tcp4 192.0.2.10", "tcp4 192.0.2.11", "tcp6 ::")
	if !refused(before) {
		t.Error("the server still listens on every address after SetBind")
	}
	checkAnswer(t, ports.addr(30001), http.StatusOK, wantBody("default", "web", 1, true), "1")

	// The same addresses again: the server stays.
	s.SetBind(map[model.Family]Bind{
		model.IPv4: {Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.11")}},
		model.IPv6: {Any: true},
	})
	sync("tcp *", "tcp4 192.0.2.10", "tcp4 192.0.2.11", "tcp6 ::")

	// IPv4 only, on every address.
	s.SetBind(map[model.Family]Bind{model.IPv4: {Any: true}})
	sync("tcp *", "tcp4 192.0.2.10", "tcp4 192.0.2.11", "tcp6 ::", "tcp4 0.0.0.0")
}

// TestServiceHealthNoBoundAddress: with no address selected, a health check listens
// nowhere and that is not an error; it opens when an address is selected.
func TestServiceHealthNoBoundAddress(t *testing.T) {
	s, ports := newTestServiceHealth(t, nil)
	s.SetBind(map[model.Family]Bind{model.IPv4: {}})
	services := map[model.ServiceName]ServiceEntry{web: {Port: 30001, LocalEndpoints: 1}}
	if err := s.Sync(t.Context(), services); err != nil {
		t.Fatalf("Sync without an address: %v", err)
	}
	if got := ports.listenedOn(30001); len(got) != 0 {
		t.Errorf("listened on %q without an address", got)
	}
	s.SetBind(map[model.Family]Bind{model.IPv4: {Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.10")}}})
	if err := s.Sync(t.Context(), services); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if got, want := ports.listenedOn(30001), []string{"tcp4 192.0.2.10"}; !slices.Equal(got, want) {
		t.Errorf("listened on %q, want %q", got, want)
	}
}

// TestServiceHealthBindFailure: when one address cannot be listened on, the listeners
// already open for the Service are closed and the error names the Service and the port.
func TestServiceHealthBindFailure(t *testing.T) {
	var opened []net.Listener
	listen := func(network string, at netip.Addr, port uint16) (net.Listener, error) {
		if at == netip.MustParseAddr("192.0.2.11") {
			return nil, fmt.Errorf("listening for health checks: %w", syscall.EADDRNOTAVAIL)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			opened = append(opened, ln)
		}
		return ln, err
	}
	s := NewServiceHealth(listen, nil)
	defer func() { _ = s.Close() }()
	s.SetBind(map[model.Family]Bind{model.IPv4: {Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.11")}}})
	err := s.Sync(t.Context(), map[model.ServiceName]ServiceEntry{web: {Port: 30001, LocalEndpoints: 1}})
	if !errors.Is(err, syscall.EADDRNOTAVAIL) || !strings.Contains(err.Error(), "default/web on port 30001") {
		t.Errorf("Sync error %v, want one naming the service and port and wrapping EADDRNOTAVAIL", err)
	}
	if len(opened) != 1 || !refused(opened[0].Addr().String()) {
		t.Errorf("the listener opened before the failure is still open (%v)", opened)
	}
}
