package health

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"

	"github.com/portico-dev/portico/model"
)

// readHeaderTimeout bounds how long a health check client may take to send its headers.
const readHeaderTimeout = 10 * time.Second

// ListenFunc opens one health check listener with network ("tcp", "tcp4" or "tcp6") at
// addr and port; an invalid (zero) addr means every address of the network.
type ListenFunc func(network string, addr netip.Addr, port uint16) (net.Listener, error)

// Listen is the ListenFunc of the kernel's sockets.
func Listen(network string, addr netip.Addr, port uint16) (net.Listener, error) {
	host := ""
	if addr.IsValid() {
		host = addr.String()
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), network, net.JoinHostPort(host, strconv.Itoa(int(port))))
	if err != nil {
		return nil, fmt.Errorf("listening for health checks: %w", err)
	}
	return ln, nil
}

// Bind selects the addresses of one IP family that health checks listen on.
type Bind struct {
	// Any listens on every address of the family (its unspecified address).
	Any bool
	// Addrs are the addresses listened on when Any is false.
	Addrs []netip.Addr
}

// listenAddr is one address a health check listens on.
type listenAddr struct {
	network string
	addr    netip.Addr // invalid: every address of network
}

// listenAddrs returns where health checks listen with binds, in a stable order: every
// address of both families until binds are known (nil), else the family's unspecified
// address or its selected addresses, for each family of binds.
func listenAddrs(binds map[model.Family]Bind) []listenAddr {
	if binds == nil {
		return []listenAddr{{network: "tcp"}}
	}
	var out []listenAddr
	for _, fam := range []model.Family{model.IPv4, model.IPv6} {
		b, ok := binds[fam]
		if !ok {
			continue
		}
		network := "tcp4"
		unspecified := netip.IPv4Unspecified()
		if fam == model.IPv6 {
			network, unspecified = "tcp6", netip.IPv6Unspecified()
		}
		if b.Any {
			out = append(out, listenAddr{network, unspecified})
			continue
		}
		addrs := slices.Clone(b.Addrs)
		slices.SortFunc(addrs, netip.Addr.Compare)
		for _, a := range slices.Compact(addrs) {
			out = append(out, listenAddr{network, a})
		}
	}
	return out
}

// listenAll opens a listener on port at every address of addrs, closing them all when one
// fails.
func listenAll(listen ListenFunc, addrs []listenAddr, port uint16) ([]net.Listener, error) {
	var out []net.Listener
	for _, a := range addrs {
		ln, err := listen(a.network, a.addr, port)
		if err != nil {
			_ = closeListeners(out)
			return nil, err
		}
		out = append(out, ln)
	}
	return out, nil
}

// closeListeners closes every listener of lns, returning the errors other than "already
// closed".
func closeListeners(lns []net.Listener) error {
	var errs []error
	for _, ln := range lns {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("closing %s: %w", ln.Addr(), err))
		}
	}
	return errors.Join(errs...)
}

// ServiceEntry is what the health check of one Service needs.
type ServiceEntry struct {
	// Port is the Service's healthCheckNodePort.
	Port uint16
	// LocalEndpoints is the number of usable endpoints of the Service on this node.
	LocalEndpoints int
}

// ServiceHealth runs one HTTP server per Service with a healthCheckNodePort. Each answers
// any request with 200 when the Service has local endpoints and the proxier is healthy, and
// 503 otherwise, with kube-proxy's headers and JSON body. It listens on the addresses
// SetBind gives (kube-proxy: the node addresses that nodePortAddresses selects), and on
// every address until SetBind is called. It is safe for concurrent use.
type ServiceHealth struct {
	listen     ListenFunc
	nodeHealth func() bool

	mu       sync.Mutex
	addrs    []listenAddr
	services map[model.ServiceName]*serviceServer
}

// NewServiceHealth returns a ServiceHealth that opens its listeners with listen and
// reports nodeHealth (typically ProxyHealth.IsHealthy; nil means always healthy) as
// serviceProxyHealthy. It serves nothing until Sync.
func NewServiceHealth(listen ListenFunc, nodeHealth func() bool) *ServiceHealth {
	if nodeHealth == nil {
		nodeHealth = func() bool { return true }
	}
	return &ServiceHealth{
		listen:     listen,
		nodeHealth: nodeHealth,
		addrs:      listenAddrs(nil),
		services:   map[model.ServiceName]*serviceServer{},
	}
}

// SetBind sets the addresses health checks listen on, per IP family; a family without an
// entry is not listened on. The servers that listen elsewhere move at the next Sync.
func (s *ServiceHealth) SetBind(binds map[model.Family]Bind) {
	if binds == nil {
		binds = map[model.Family]Bind{}
	}
	addrs := listenAddrs(binds)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addrs = addrs
}

// Sync makes the set of health check servers match services. Servers of Services that are
// gone or whose port or addresses changed are stopped first; servers of new Services (or new ports) are
// started; Services that keep their port keep their server and only get their endpoint
// count updated. A Service whose server cannot start (port 0, port in use, ...) does not
// keep the others from being served; its error is part of the joined error returned, and
// the next Sync tries again.
func (s *ServiceHealth) Sync(ctx context.Context, services map[model.ServiceName]ServiceEntry) error {
	logger := klog.FromContext(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	errs := []error{s.stopStale(logger, services)}
	for _, name := range sortedNames(services) {
		e := services[name]
		if srv, ok := s.services[name]; ok {
			srv.endpoints.Store(int64(e.LocalEndpoints))
			continue
		}
		srv, err := s.start(logger, name, e)
		if err != nil {
			logger.Error(err, "Failed to start health check", "service", name.String(), "port", e.Port)
			errs = append(errs, err)
			continue
		}
		s.services[name] = srv
	}
	return errors.Join(errs...)
}

// stopStale stops the servers of Services that are not in services, changed port, or
// listen on other addresses than s.addrs. Callers hold mu.
func (s *ServiceHealth) stopStale(logger logr.Logger, services map[model.ServiceName]ServiceEntry) error {
	var errs []error
	for name, srv := range s.services {
		if e, ok := services[name]; ok && e.Port == srv.port && slices.Equal(srv.addrs, s.addrs) {
			continue
		}
		logger.V(2).Info("Closing health check", "service", name.String(), "port", srv.port)
		errs = append(errs, srv.stop())
		delete(s.services, name)
	}
	return errors.Join(errs...)
}

// start opens the listeners of the health check of name and serves them.
func (s *ServiceHealth) start(logger logr.Logger, name model.ServiceName, e ServiceEntry) (*serviceServer, error) {
	if e.Port == 0 {
		return nil, fmt.Errorf("health check of service %s: no port", name)
	}
	lns, err := listenAll(s.listen, s.addrs, e.Port)
	if err != nil {
		return nil, fmt.Errorf("health check of service %s on port %d: %w", name, e.Port, err)
	}
	srv := &serviceServer{name: name, port: e.Port, addrs: s.addrs, nodeHealth: s.nodeHealth}
	srv.endpoints.Store(int64(e.LocalEndpoints))
	if len(lns) == 0 {
		logger.V(2).Info("No node address selected for health checks", "service", name.String(), "port", e.Port)
	} else {
		logger.V(2).Info("Opening health check", "service", name.String(), "port", e.Port, "listeners", len(lns))
	}
	srv.serve(logger, lns)
	return srv, nil
}

// Close stops every health check server and returns the errors of closing them.
func (s *ServiceHealth) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for name, srv := range s.services {
		errs = append(errs, srv.stop())
		delete(s.services, name)
	}
	return errors.Join(errs...)
}

// sortedNames returns the keys of services in order, so that errors come in a stable order.
func sortedNames(services map[model.ServiceName]ServiceEntry) []model.ServiceName {
	names := make([]model.ServiceName, 0, len(services))
	for name := range services {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b model.ServiceName) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	return names
}

// serviceServer is the health check server of one Service, on all its listeners.
type serviceServer struct {
	name       model.ServiceName
	port       uint16
	addrs      []listenAddr
	nodeHealth func() bool
	endpoints  atomic.Int64

	listeners []net.Listener
	servers   []*http.Server
	done      sync.WaitGroup
}

// serve starts serving every listener of lns in its own goroutine.
func (s *serviceServer) serve(logger logr.Logger, lns []net.Listener) {
	s.listeners = lns
	for _, ln := range lns {
		hs := &http.Server{Handler: s, ReadHeaderTimeout: readHeaderTimeout}
		s.servers = append(s.servers, hs)
		s.done.Go(func() {
			err := hs.Serve(ln)
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error(err, "Health check server failed", "service", s.name.String(), "address", ln.Addr().String())
			}
		})
	}
}

// stop closes the servers and their listeners and waits for them to finish. A request that
// arrives meanwhile is answered as if the Service had no local endpoint.
func (s *serviceServer) stop() error {
	s.endpoints.Store(0)
	var errs []error
	for _, hs := range s.servers {
		if err := hs.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("closing health check of service %s: %w", s.name, err))
		}
	}
	// A server whose Serve has not begun yet does not know its listener: close it here.
	errs = append(errs, closeListeners(s.listeners))
	s.done.Wait()
	return errors.Join(errs...)
}

// serviceReport is the JSON body of a Service health check answer, as kube-proxy writes it.
type serviceReport struct {
	Service struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"service"`
	LocalEndpoints      int  `json:"localEndpoints"`
	ServiceProxyHealthy bool `json:"serviceProxyHealthy"`
}

// ServeHTTP answers a health check of the Service.
func (s *serviceServer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	var r serviceReport
	r.Service.Namespace, r.Service.Name = s.name.Namespace, s.name.Name
	r.LocalEndpoints = int(s.endpoints.Load())
	r.ServiceProxyHealthy = s.nodeHealth()
	// kube-proxy indents its body with tabs and ends it without a newline; so does this.
	body, _ := json.MarshalIndent(r, "", "\t") // A serviceReport always marshals.

	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Load-Balancing-Endpoint-Weight", strconv.Itoa(r.LocalEndpoints))
	if r.LocalEndpoints > 0 && r.ServiceProxyHealthy {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, _ = w.Write(body)
}
