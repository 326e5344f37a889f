package traffic

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

// Conn is a long-lived connection from a namespace: a TCP connection to an echo server
// (ServeEcho), or a connected UDP socket to any traffic server (Serve). Every Ask goes
// over the same socket, so it keeps its source port and its conntrack entry: this is what
// tests of established connections and stale UDP flows need.
type Conn struct {
	proto string
	conn  net.Conn
	rd    *bufio.Reader
	// Local is the socket's own address and port.
	Local netip.AddrPort
}

// maxDrain bounds how many late UDP answers Ask discards before asking again.
const maxDrain = 64

// Dial opens a long-lived connection from namespace fromNS (short or full name of topo)
// to dst, bound to src when it is valid. proto is TCP or UDP; a TCP dial ends within
// timeout. Unlike Probe's sockets, a Conn's socket does not set IP_RECVERR: a connected
// UDP socket still reports port unreachable errors (ECONNREFUSED), and nothing else.
func Dial(ctx context.Context, topo *netns.Topology, fromNS string, src netip.Addr, dst netip.AddrPort,
	proto string, timeout time.Duration) (*Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	p := strings.ToUpper(proto)
	d := &net.Dialer{}
	switch p {
	case TCP:
		if src.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		}
	case UDP:
		if src.IsValid() {
			d.LocalAddr = &net.UDPAddr{IP: src.AsSlice()}
		}
	default:
		return nil, fmt.Errorf("traffic: unsupported protocol %q", proto)
	}
	conn, err := dialIn(ctx, topo, fromNS, d, network(strings.ToLower(p), dst.Addr()), dst)
	if err != nil {
		return nil, fmt.Errorf("traffic: dial %s %s from %s: %w", p, dst, topo.Name(fromNS), err)
	}
	c := &Conn{proto: p, conn: conn, rd: bufio.NewReader(io.LimitReader(conn, 1<<20))}
	switch a := conn.LocalAddr().(type) {
	case *net.TCPAddr:
		c.Local = unmap(a.AddrPort())
	case *net.UDPAddr:
		c.Local = unmap(a.AddrPort())
	}
	return c, nil
}

// Ask sends one line and reads one answer on the connection, within timeout. A UDP Ask
// sends a single datagram (callers retry) and first discards answers that arrived late
// for earlier Asks. The Result's Outcome is OK with Server and SeenPeer set, or says how
// it failed (Timeout, Refused, Reset, ...).
func (c *Conn) Ask(timeout time.Duration) Result {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	if c.proto == UDP {
		c.drain()
	}
	r := c.ask(ctx, deadline)
	r.Local = c.Local
	r.Elapsed = time.Since(start)
	return r
}

func (c *Conn) ask(ctx context.Context, deadline time.Time) Result {
	_ = c.conn.SetDeadline(deadline)
	if _, err := c.conn.Write([]byte("ask\n")); err != nil {
		return failed(ctx, err)
	}
	var line string
	var err error
	if c.proto == TCP {
		line, err = c.rd.ReadString('\n')
	} else {
		buf := make([]byte, 512)
		var n int
		n, err = c.conn.Read(buf)
		line = string(buf[:n])
	}
	if err != nil {
		return failed(ctx, err)
	}
	return answered(line, c.Local)
}

// drain discards datagrams already queued on a UDP socket (answers to earlier Asks that
// timed out) and a pending socket error.
func (c *Conn) drain() {
	buf := make([]byte, 512)
	for i := 0; i < maxDrain; i++ {
		_ = c.conn.SetReadDeadline(time.Now())
		if _, err := c.conn.Read(buf); err != nil && isTimeout(err) {
			return
		}
	}
}

// Close closes the connection.
func (c *Conn) Close() error { return c.conn.Close() }

// EchoServer answers every line received on a TCP connection with Answer(local, peer)
// and keeps the connection open, so that one connection can be checked again and again.
type EchoServer struct {
	ns        string
	listeners []*net.TCPListener
	wg        sync.WaitGroup
	mu        sync.Mutex
	conns     map[net.Conn]bool
	closed    bool
	closeOnce sync.Once
}

// echoIdle is how long an echo connection may stay silent before the server closes it,
// so that no connection outlives its test by much even when the client forgets it.
const echoIdle = 5 * time.Minute

// ServeEcho starts an echo server inside namespace nsName on port at each of addrs (the
// namespace's own addresses when addrs is empty).
func ServeEcho(topo *netns.Topology, nsName string, addrs []netip.Addr, port uint16) (*EchoServer, error) {
	if len(addrs) == 0 {
		addrs = topo.Addrs(nsName)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("traffic: echo server in %s: no addresses", topo.Name(nsName))
	}
	s := &EchoServer{ns: topo.Name(nsName), conns: map[net.Conn]bool{}}
	err := topo.Do(nsName, func() error {
		for _, a := range addrs {
			ap := netip.AddrPortFrom(a, port)
			l, err := net.ListenTCP(network("tcp", a), net.TCPAddrFromAddrPort(ap))
			if err != nil {
				return fmt.Errorf("listen tcp %s: %w", ap, err)
			}
			s.listeners = append(s.listeners, l)
		}
		return nil
	})
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("traffic: echo server in %s: %w", s.ns, err)
	}
	for _, l := range s.listeners {
		s.wg.Add(1)
		go s.accept(l)
	}
	return s, nil
}

func (s *EchoServer) accept(l *net.TCPListener) {
	defer s.wg.Done()
	for {
		c, err := l.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(acceptBackoff)
			continue
		}
		if !s.track(c) {
			_ = c.Close()
			return
		}
		s.wg.Add(1)
		go s.serve(c)
	}
}

// track records an open connection; it reports false once the server is closed.
func (s *EchoServer) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = true
	return true
}

func (s *EchoServer) serve(c *net.TCPConn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		_ = c.Close()
	}()
	local := unmap(c.LocalAddr().(*net.TCPAddr).AddrPort())
	peer := unmap(c.RemoteAddr().(*net.TCPAddr).AddrPort())
	rd := bufio.NewReader(io.LimitReader(c, 1<<20))
	for {
		_ = c.SetReadDeadline(time.Now().Add(echoIdle))
		if _, err := rd.ReadString('\n'); err != nil {
			return
		}
		_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := c.Write([]byte(Answer(local, peer))); err != nil {
			return
		}
	}
}

// Open returns how many connections the server holds open now.
func (s *EchoServer) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Close stops listening, closes every open connection and waits for the goroutines. It
// is idempotent.
func (s *EchoServer) Close() error {
	var errs []error
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		for c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		for _, l := range s.listeners {
			if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, err)
			}
		}
		s.wg.Wait()
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("traffic: close echo server in %s: %w", s.ns, err)
	}
	return nil
}
