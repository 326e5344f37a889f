package traffic

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

// Outcome classifies how a probe ended.
type Outcome string

// Probe outcomes.
const (
	// OK: a server answered with a well-formed line.
	OK Outcome = "OK"
	// Refused: TCP RST to the SYN, or ICMP port unreachable (ECONNREFUSED).
	Refused Outcome = "Refused"
	// Timeout: nothing came back before the deadline (dropped traffic).
	Timeout Outcome = "Timeout"
	// Reset: the connection was reset after it was established.
	Reset Outcome = "Reset"
	// Unreachable: no route, or ICMP host/network unreachable or prohibited.
	Unreachable Outcome = "Unreachable"
	// Other: anything else; Result.Err says what.
	Other Outcome = "Other"
)

// Result is what one probe saw.
type Result struct {
	// Outcome classifies the probe.
	Outcome Outcome
	// Server is the address and port that answered (OK only).
	Server netip.AddrPort
	// SeenPeer is the source address and port the server saw (OK only); it differs from
	// Local when the connection was source-NATed.
	SeenPeer netip.AddrPort
	// Local is the probe socket's own address and port, when it got one.
	Local netip.AddrPort
	// Elapsed is how long the probe took.
	Elapsed time.Duration
	// Err is the error behind any outcome but OK.
	Err error
}

// udpAttempts is how many datagrams a UDP probe sends, spread over its timeout.
const udpAttempts = 3

// Probe opens one connection from namespace fromNS (short or full name of topo) to dst
// and reads the server's answer. src, when valid, is the source address to bind. The
// probe ends within timeout (or earlier, when ctx ends).
func Probe(ctx context.Context, topo *netns.Topology, fromNS string, src netip.Addr,
	dst netip.AddrPort, proto string, timeout time.Duration) Result {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var r Result
	switch strings.ToUpper(proto) {
	case TCP:
		r = probeTCP(ctx, topo, fromNS, src, dst)
	case UDP:
		r = probeUDP(ctx, topo, fromNS, src, dst)
	case SCTP:
		r = probeSCTP(ctx, topo, fromNS, src, dst)
	default:
		r = Result{Outcome: Other, Err: fmt.Errorf("traffic: unsupported protocol %q", proto)}
	}
	r.Elapsed = time.Since(start)
	return r
}

// dialer returns a dialer bound to src (when valid) whose sockets report every ICMP
// error (IP_RECVERR), so that unreachable destinations are told apart from drops.
func dialer(src netip.Addr, proto string) *net.Dialer {
	d := &net.Dialer{Control: recvErr}
	if src.IsValid() {
		if proto == TCP {
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		} else {
			d.LocalAddr = &net.UDPAddr{IP: src.AsSlice()}
		}
	}
	return d
}

func recvErr(network, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if strings.HasSuffix(network, "6") {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 1)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVERR, 1)
		}
	})
	return errors.Join(err, serr)
}

// dialIn dials from inside a namespace; only the socket's creation and connection run
// on the switched thread.
func dialIn(ctx context.Context, topo *netns.Topology, fromNS string, d *net.Dialer,
	network string, dst netip.AddrPort) (net.Conn, error) {
	var conn net.Conn
	err := topo.Do(fromNS, func() error {
		c, err := d.DialContext(ctx, network, dst.String())
		conn = c
		return err
	})
	return conn, err
}

func probeTCP(ctx context.Context, topo *netns.Topology, fromNS string, src netip.Addr, dst netip.AddrPort) Result {
	conn, err := dialIn(ctx, topo, fromNS, dialer(src, TCP), network("tcp", dst.Addr()), dst)
	if err != nil {
		return failed(ctx, err)
	}
	return readAnswer(ctx, conn)
}

// readAnswer reads a stream server's answer line and closes conn.
func readAnswer(ctx context.Context, conn net.Conn) Result {
	defer conn.Close()
	local := conn.LocalAddr().(*net.TCPAddr).AddrPort()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetReadDeadline(dl)
	}
	line, err := bufio.NewReader(io.LimitReader(conn, 512)).ReadString('\n')
	if err != nil {
		r := failed(ctx, err)
		r.Local = unmap(local)
		return r
	}
	return answered(line, local)
}

func probeUDP(ctx context.Context, topo *netns.Topology, fromNS string, src netip.Addr, dst netip.AddrPort) Result {
	conn, err := dialIn(ctx, topo, fromNS, dialer(src, UDP), network("udp", dst.Addr()), dst)
	if err != nil {
		return failed(ctx, err)
	}
	defer conn.Close()
	local := unmap(conn.LocalAddr().(*net.UDPAddr).AddrPort())
	deadline, _ := ctx.Deadline()
	step := time.Until(deadline) / udpAttempts
	buf := make([]byte, 512)
	for i := 0; i < udpAttempts; i++ {
		if _, err := conn.Write([]byte("probe\n")); err != nil {
			return withLocal(failed(ctx, err), local)
		}
		rd := time.Now().Add(step)
		if i == udpAttempts-1 || rd.After(deadline) {
			rd = deadline
		}
		_ = conn.SetReadDeadline(rd)
		n, err := conn.Read(buf)
		if err == nil {
			return answered(string(buf[:n]), local)
		}
		if !isTimeout(err) || ctx.Err() != nil {
			return withLocal(failed(ctx, err), local)
		}
	}
	return withLocal(failed(ctx, os.ErrDeadlineExceeded), local)
}

func withLocal(r Result, local netip.AddrPort) Result {
	r.Local = local
	return r
}

// answered parses a server's answer line.
func answered(line string, local netip.AddrPort) Result {
	r := Result{Local: unmap(local)}
	f := strings.Fields(line)
	if len(f) != 2 {
		r.Outcome, r.Err = Other, fmt.Errorf("traffic: malformed answer %q", line)
		return r
	}
	srv, err1 := netip.ParseAddrPort(f[0])
	peer, err2 := netip.ParseAddrPort(f[1])
	if err := errors.Join(err1, err2); err != nil {
		r.Outcome, r.Err = Other, fmt.Errorf("traffic: malformed answer %q: %w", line, err)
		return r
	}
	r.Outcome, r.Server, r.SeenPeer = OK, srv, peer
	return r
}

// failed classifies an error.
func failed(ctx context.Context, err error) Result {
	return Result{Outcome: Classify(ctx, err), Err: err}
}

// Classify maps a socket error to an outcome. A cancelled ctx (not a deadline) is Other.
func Classify(ctx context.Context, err error) Outcome {
	switch {
	case err == nil:
		return OK
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return Reset
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return Unreachable
	case errors.Is(err, syscall.ETIMEDOUT), isTimeout(err):
		return Timeout
	case errors.Is(ctx.Err(), context.DeadlineExceeded) && errors.Is(err, context.Canceled):
		return Timeout
	default:
		return Other
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}
