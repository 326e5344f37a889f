package traffic

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

// SCTP associations, on a kernel with SCTP sockets (SCTPSupported): Go has no SCTP in its
// standard library, but a one-to-one SCTP socket (SOCK_STREAM, IPPROTO_SCTP) is used like
// a TCP one — bind, listen, accept, connect, read, write — so the sockets are made with
// x/sys/unix and handed to package net as files: the listener serves like a TCP one
// (serveTCP) and the connection reads the answer like a TCP probe.

// domain returns the socket domain of ap's family.
func domain(ap netip.AddrPort) int {
	if ap.Addr().Unmap().Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// listenSCTP returns a listening SCTP socket on ap as a *net.TCPListener.
func listenSCTP(ap netip.AddrPort) (*net.TCPListener, error) {
	sa, dom := sockaddr(ap), domain(ap)
	fd, err := unix.Socket(dom, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_SCTP)
	if err != nil {
		return nil, fmt.Errorf("listen sctp %s: socket: %w", ap, err)
	}
	f := os.NewFile(uintptr(fd), "sctp-listener")
	defer f.Close() // net.FileListener holds a duplicate
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return nil, fmt.Errorf("listen sctp %s: SO_REUSEADDR: %w", ap, err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		return nil, fmt.Errorf("listen sctp %s: bind: %w", ap, err)
	}
	if err := unix.Listen(fd, 128); err != nil {
		return nil, fmt.Errorf("listen sctp %s: %w", ap, err)
	}
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("listen sctp %s: %w", ap, err)
	}
	tl, ok := l.(*net.TCPListener)
	if !ok {
		_ = l.Close()
		return nil, fmt.Errorf("listen sctp %s: package net made a %T", ap, l)
	}
	return tl, nil
}

// dialSCTP connects an SCTP association from namespace fromNS (bound to src when valid)
// to dst within ctx's deadline, and returns it as a net.Conn. The socket reports ICMP
// errors (IP_RECVERR), as the TCP probes' do.
func dialSCTP(ctx context.Context, topo *netns.Topology, fromNS string, src netip.Addr, dst netip.AddrPort) (net.Conn, error) {
	var conn net.Conn
	err := topo.Do(fromNS, func() error {
		sa, dom := sockaddr(dst), domain(dst)
		fd, err := unix.Socket(dom, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_SCTP)
		if err != nil {
			return fmt.Errorf("sctp socket: %w", err)
		}
		f := os.NewFile(uintptr(fd), "sctp-conn")
		defer f.Close() // net.FileConn holds a duplicate
		if err := sctpPrepare(ctx, fd, dom, src); err != nil {
			return err
		}
		if err := connectBlocking(ctx, fd, sa); err != nil {
			return fmt.Errorf("connect sctp %s: %w", dst, os.NewSyscallError("connect", err))
		}
		conn, err = net.FileConn(f)
		return err
	})
	return conn, err
}

// SCTP retransmission timeouts of a probe's association, in milliseconds. The kernel's
// defaults (net.sctp.rto_initial 3 s, rto_min 1 s) retransmit a lost INIT only after 3 s,
// longer than a probe waits: one INIT lost under the VM's software emulation failed a
// flow. With these, a lost INIT or COOKIE ECHO is sent again after 0.3 s, then 0.9 s.
const (
	probeRTOInitial = 300
	probeRTOMin     = 200
	probeRTOMax     = 1000
)

// Socket option level and name of the association's retransmission timeouts (struct
// sctp_rtoinfo, linux/sctp.h); x/sys/unix does not define them.
const (
	solSCTP       = 132
	sctpRTOInfo   = 0
	rtoInfoLength = 16
)

// sctpSetRTO sets the retransmission timeouts of the socket's association (SCTP_RTOINFO:
// association id 0, initial, max, min, each 32 bits in host order).
func sctpSetRTO(fd int, initial, maxRTO, minRTO uint32) error {
	b := make([]byte, rtoInfoLength)
	binary.NativeEndian.PutUint32(b[4:], initial)
	binary.NativeEndian.PutUint32(b[8:], maxRTO)
	binary.NativeEndian.PutUint32(b[12:], minRTO)
	if err := unix.SetsockoptString(fd, solSCTP, sctpRTOInfo, string(b)); err != nil {
		return fmt.Errorf("sctp SCTP_RTOINFO: %w", err)
	}
	return nil
}

// sctpPrepare sets a connecting socket's options: IP_RECVERR, short retransmission
// timeouts, the source address, and a send timeout (which bounds a blocking connect) from
// ctx's deadline.
func sctpPrepare(ctx context.Context, fd, dom int, src netip.Addr) error {
	if dom == unix.AF_INET6 {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 1)
	} else {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVERR, 1)
	}
	if err := sctpSetRTO(fd, probeRTOInitial, probeRTOMax, probeRTOMin); err != nil {
		return err
	}
	if src.IsValid() {
		if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(src, 0))); err != nil {
			return fmt.Errorf("sctp bind %s: %w", src, err)
		}
	}
	if dl, ok := ctx.Deadline(); ok {
		tv := unix.NsecToTimeval(max(time.Until(dl), time.Millisecond).Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
			return fmt.Errorf("sctp SO_SNDTIMEO: %w", err)
		}
	}
	return nil
}

// probeSCTP opens one SCTP association to dst and reads the server's answer.
func probeSCTP(ctx context.Context, topo *netns.Topology, fromNS string, src netip.Addr, dst netip.AddrPort) Result {
	conn, err := dialSCTP(ctx, topo, fromNS, src, dst)
	if err != nil {
		if errors.Is(err, unix.EINPROGRESS) || errors.Is(err, unix.EAGAIN) {
			err = fmt.Errorf("%w: %w", err, os.ErrDeadlineExceeded) // the send timeout ran out
		}
		return failed(ctx, err)
	}
	return readAnswer(ctx, conn)
}

// connectBlocking connects the blocking socket fd to sa. A signal (the Go runtime's
// preemption signal among them) can interrupt connect with EINTR while the association
// is still being set up; the kernel goes on with it, so connectBlocking then waits for
// the socket to become writable (until ctx's deadline, or 10 s without one) and returns
// the connection's outcome (SO_ERROR).
func connectBlocking(ctx context.Context, fd int, sa unix.Sockaddr) error {
	err := unix.Connect(fd, sa)
	if err != unix.EINTR {
		return err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(10 * time.Second)
	}
	for time.Now().Before(deadline) {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, err := unix.Poll(pfd, int(time.Until(deadline).Milliseconds())+1)
		if err == unix.EINTR || (err == nil && n == 0) {
			continue
		}
		if err != nil {
			return err
		}
		soErr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			return err
		}
		if soErr != 0 {
			return unix.Errno(soErr)
		}
		return nil
	}
	return unix.ETIMEDOUT
}
