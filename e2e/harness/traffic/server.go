// Package traffic sends real TCP and UDP traffic between the namespaces of a test
// topology and reports what happened.
//
// Servers (Serve) run in the test process: their sockets are created on a thread
// switched into a pod's (or node's) namespace and stay there, and goroutines serve them.
// Each answer is one line "<local ip:port> <peer ip:port>\n": the address that answered
// and the source it saw, which tells which backend was reached and whether the client's
// address was masqueraded. Probes (Probe, ProbeN) open connections from a namespace and
// classify the outcome (OK, Refused, Timeout, Reset, Unreachable, Other).
package traffic

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

// Protocols understood by Serve and Probe (Kubernetes spelling).
const (
	TCP = "TCP"
	UDP = "UDP"
	// SCTP needs a kernel with SCTP sockets (SCTPSupported).
	SCTP = "SCTP"
)

// PortSpec is a port to listen on.
type PortSpec struct {
	// Port is the port number.
	Port uint16
	// Protocol is TCP, UDP or SCTP.
	Protocol string
}

// Server answers on every address and port it was given until Close.
type Server struct {
	ns        string
	tcp       []*net.TCPListener
	udp       []*net.UDPConn
	wg        sync.WaitGroup
	mu        sync.Mutex
	hits      map[netip.AddrPort]int
	closeOnce sync.Once
}

// acceptBackoff paces the accept loop after a transient error.
const acceptBackoff = 10 * time.Millisecond

// writeTimeout bounds each answer, so a stuck peer cannot hold a server goroutine.
const writeTimeout = 2 * time.Second

// Serve listens inside namespace nsName (a short or full name of topo) on each address
// and port and answers in goroutines. With no addrs it uses the addresses the namespace
// owns in the topology (Topology.Addrs).
func Serve(topo *netns.Topology, nsName string, addrs []netip.Addr, ports []PortSpec) (*Server, error) {
	if len(addrs) == 0 {
		addrs = topo.Addrs(nsName)
	}
	if len(addrs) == 0 || len(ports) == 0 {
		return nil, fmt.Errorf("traffic: serve in %s: no addresses or ports", topo.Name(nsName))
	}
	s := &Server{ns: topo.Name(nsName), hits: map[netip.AddrPort]int{}}
	err := topo.Do(nsName, func() error { return s.listen(addrs, ports) })
	if err != nil {
		s.closeSockets()
		return nil, fmt.Errorf("traffic: serve in %s: %w", s.ns, err)
	}
	s.start()
	return s, nil
}

// ServeHere listens in the calling process's own network namespace (a server process
// started with `ip netns exec`) and answers in goroutines until Close.
func ServeHere(addrs []netip.Addr, ports []PortSpec) (*Server, error) {
	s := &Server{ns: "(own namespace)", hits: map[netip.AddrPort]int{}}
	if err := s.listen(addrs, ports); err != nil {
		s.closeSockets()
		return nil, fmt.Errorf("traffic: serve: %w", err)
	}
	s.start()
	return s, nil
}

// start serves every socket in its own goroutine.
func (s *Server) start() {
	for _, l := range s.tcp {
		s.wg.Add(1)
		go s.serveTCP(l)
	}
	for _, c := range s.udp {
		s.wg.Add(1)
		go s.serveUDP(c)
	}
}

// listen creates every socket; it runs on a thread inside the server's namespace.
func (s *Server) listen(addrs []netip.Addr, ports []PortSpec) error {
	for _, a := range addrs {
		for _, p := range ports {
			ap := netip.AddrPortFrom(a, p.Port)
			switch strings.ToUpper(p.Protocol) {
			case TCP:
				l, err := net.ListenTCP(network("tcp", a), net.TCPAddrFromAddrPort(ap))
				if err != nil {
					return fmt.Errorf("listen tcp %s: %w", ap, err)
				}
				s.tcp = append(s.tcp, l)
			case SCTP:
				l, err := listenSCTP(ap)
				if err != nil {
					return err
				}
				s.tcp = append(s.tcp, l)
			case UDP:
				c, err := net.ListenUDP(network("udp", a), net.UDPAddrFromAddrPort(ap))
				if err != nil {
					return fmt.Errorf("listen udp %s: %w", ap, err)
				}
				s.udp = append(s.udp, c)
			default:
				return fmt.Errorf("unsupported protocol %q", p.Protocol)
			}
		}
	}
	return nil
}

// network returns "tcp4"/"tcp6" (or udp) for an address's family.
func network(base string, a netip.Addr) string {
	if a.Unmap().Is4() {
		return base + "4"
	}
	return base + "6"
}

// Answer formats the line a server sends for a local and a peer address.
func Answer(local, peer netip.AddrPort) string {
	return local.String() + " " + peer.String() + "\n"
}

func (s *Server) serveTCP(l *net.TCPListener) {
	defer s.wg.Done()
	local := l.Addr().(*net.TCPAddr).AddrPort()
	for {
		c, err := l.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(acceptBackoff) // transient error (e.g. aborted connection)
			continue
		}
		peer := c.RemoteAddr().(*net.TCPAddr).AddrPort()
		s.hit(local)
		_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
		_, _ = c.Write([]byte(Answer(unmap(local), unmap(peer))))
		_ = c.Close()
	}
}

func (s *Server) serveUDP(c *net.UDPConn) {
	defer s.wg.Done()
	local := c.LocalAddr().(*net.UDPAddr).AddrPort()
	buf := make([]byte, 2048)
	for {
		_, peer, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ICMP errors reported on the socket
		}
		s.hit(local)
		_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
		_, _ = c.WriteToUDPAddrPort([]byte(Answer(unmap(local), unmap(peer))), peer)
	}
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func (s *Server) hit(local netip.AddrPort) {
	s.mu.Lock()
	s.hits[unmap(local)]++
	s.mu.Unlock()
}

// Hits returns how many connections (TCP) or datagrams (UDP) each listening address
// answered so far.
func (s *Server) Hits() map[netip.AddrPort]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[netip.AddrPort]int, len(s.hits))
	for k, v := range s.hits {
		out[k] = v
	}
	return out
}

// Addrs returns the addresses and ports the server listens on, TCP first.
func (s *Server) Addrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, l := range s.tcp {
		out = append(out, unmap(l.Addr().(*net.TCPAddr).AddrPort()))
	}
	for _, c := range s.udp {
		out = append(out, unmap(c.LocalAddr().(*net.UDPAddr).AddrPort()))
	}
	return out
}

// Close stops listening and waits for the serving goroutines. It is idempotent.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		err = s.closeSockets()
		s.wg.Wait()
	})
	return err
}

func (s *Server) closeSockets() error {
	var errs []error
	for _, l := range s.tcp {
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	for _, c := range s.udp {
		if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("traffic: close server in %s: %w", s.ns, err)
	}
	return nil
}
