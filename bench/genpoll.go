package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

// GenPoller follows the nf_tables generation of one network namespace by asking for it
// (NFT_MSG_GETGEN) every interval, without subscribing to the notifications: while
// somebody listens to NFNLGRP_NFTABLES, the kernel builds a message for every object a
// transaction adds (750,000 for a cold sync of 50,000 Services) in the committing thread,
// which a node without an observer never pays. A commit is seen at most one interval
// (plus a round trip) after it happened; the number of commits is the generation's
// increase.
type GenPoller struct {
	fd    int
	every time.Duration
	stop  chan struct{}
	done  chan struct{}

	mu      sync.Mutex
	changes []Gen     // each poll that found a new generation: when it answered, the id
	polled  time.Time // when the last poll that succeeded answered
	err     error
}

// genPollEvery is the cold sync's generation polling interval: its resolution.
const genPollEvery = 5 * time.Millisecond

// StartGenPoller opens a NETLINK_NETFILTER socket inside namespace h and starts polling.
func StartGenPoller(h vnetns.NsHandle, every time.Duration) (*GenPoller, error) {
	fd, err := netfilterSocket(h, 5*time.Second)
	if err != nil {
		return nil, err
	}
	p := &GenPoller{fd: fd, every: every, stop: make(chan struct{}), done: make(chan struct{})}
	id, err := p.poll(1)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	p.changes = []Gen{{At: time.Now(), ID: id}}
	go p.run()
	return p, nil
}

// netfilterSocket returns a bound NETLINK_NETFILTER socket created inside namespace h,
// with a receive timeout so that a lost answer cannot block its reader.
func netfilterSocket(h vnetns.NsHandle, timeout time.Duration) (int, error) {
	fd := -1
	err := netns.DoIn(h, func() error {
		var err error
		if fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER); err != nil {
			return fmt.Errorf("netlink socket: %w", err)
		}
		return nil
	})
	if err != nil {
		return -1, err
	}
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("SO_RCVTIMEO: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind: %w", err)
	}
	return fd, nil
}

// run polls until Close, recording every new generation.
func (p *GenPoller) run() {
	defer close(p.done)
	t := time.NewTicker(p.every)
	defer t.Stop()
	for seq := uint32(2); ; seq++ {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		id, err := p.poll(seq)
		now := time.Now()
		p.mu.Lock()
		switch {
		case err != nil:
			p.err = err
		case id != p.changes[len(p.changes)-1].ID:
			p.changes = append(p.changes, Gen{At: now, ID: id})
			p.polled = now
		default:
			p.polled = now
		}
		p.mu.Unlock()
	}
}

// poll asks for the generation once.
func (p *GenPoller) poll(seq uint32) (uint32, error) {
	if err := unix.Sendto(p.fd, nftRequest(nftMsgGetGen, unix.NLM_F_REQUEST, seq, unix.AF_UNSPEC, nil), 0,
		&unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("NFT_MSG_GETGEN: %w", err)
	}
	buf := make([]byte, 4096)
	for {
		n, _, err := unix.Recvfrom(p.fd, buf, 0)
		if err != nil {
			return 0, fmt.Errorf("NFT_MSG_GETGEN answer: %w", err)
		}
		var id uint32
		found := false
		err = eachMessage(buf[:n], func(typ uint16, s uint32, payload []byte) error {
			if s != seq {
				return nil // a late answer to an earlier poll
			}
			if typ == nfnlSubsysNFTables<<8|nftMsgNewGen {
				id, found = parseGen(payload, time.Time{}).ID, true
			}
			return nil
		})
		if err != nil || found {
			return id, err
		}
	}
}

// Close stops polling and closes the socket.
func (p *GenPoller) Close() {
	close(p.stop)
	<-p.done
	unix.Close(p.fd)
}

// Between returns the generation changes seen in [from, to].
func (p *GenPoller) Between(from, to time.Time) []Gen {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Gen
	for _, g := range p.changes {
		if !g.At.Before(from) && !g.At.After(to) {
			out = append(out, g)
		}
	}
	return out
}

// At returns the last generation seen at or before t (the first one polled if none).
func (p *GenPoller) At(t time.Time) Gen {
	p.mu.Lock()
	defer p.mu.Unlock()
	g := p.changes[0]
	for _, c := range p.changes {
		if c.At.After(t) {
			break
		}
		g = c
	}
	return g
}

// Last returns the last generation seen.
func (p *GenPoller) Last() Gen {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changes[len(p.changes)-1]
}

// Err returns the last polling error (nil if none).
func (p *GenPoller) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Quiet waits until the generation did not change for quiet (at most max), as seen by a
// poll answered after Quiet was called (a commit made just before the call is seen), and
// reports whether it got quiet.
func (p *GenPoller) Quiet(quiet, max time.Duration) bool {
	called := time.Now()
	deadline := called.Add(max)
	for time.Now().Before(deadline) {
		if p.quietSince(called, quiet) {
			return true
		}
		time.Sleep(min(quiet/4, 10*time.Millisecond))
	}
	return false
}

// quietSince reports whether a poll answered after called found the generation unchanged
// for quiet.
func (p *GenPoller) quietSince(called time.Time, quiet time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.polled.After(called) && p.polled.Sub(p.changes[len(p.changes)-1].At) >= quiet
}

// Netlink message types and attributes of nf_tables used by the poller and the dumps.
const (
	nftMsgGetRule    = 7
	nftMsgNewSet     = 9
	nftMsgGetSet     = 10
	nftMsgGetSetElem = 13
	nftMsgGetGen     = 16
	nftaSetTable     = 1
	nftaSetName      = 2
)

// nftRequest encodes one nf_tables request: the netlink header, struct nfgenmsg for
// family, then attrs (already encoded).
func nftRequest(msg uint16, flags uint16, seq uint32, family uint8, attrs []byte) []byte {
	b := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+4+len(attrs))
	b = append(b, family, unix.NFNETLINK_V0, 0, 0)
	b = append(b, attrs...)
	binary.NativeEndian.PutUint32(b[0:4], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:6], nfnlSubsysNFTables<<8|msg)
	binary.NativeEndian.PutUint16(b[6:8], flags)
	binary.NativeEndian.PutUint32(b[8:12], seq)
	return b
}

// stringAttr encodes a netlink attribute holding s, NUL-terminated and padded.
func stringAttr(typ uint16, s string) []byte {
	l := unix.NLA_HDRLEN + len(s) + 1
	b := make([]byte, 4, nlmAlign(l))
	binary.NativeEndian.PutUint16(b[0:2], uint16(l))
	binary.NativeEndian.PutUint16(b[2:4], typ)
	b = append(b, s...)
	return append(b, make([]byte, nlmAlign(l)-len(b))...)
}

// errDumpDone ends eachMessage at NLMSG_DONE.
var errDumpDone = errors.New("dump done")

// eachMessage calls f with the type, sequence number and payload of every message of a
// datagram; an NLMSG_ERROR with an error code becomes an error, NLMSG_DONE errDumpDone.
func eachMessage(b []byte, f func(typ uint16, seq uint32, payload []byte) error) error {
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(binary.NativeEndian.Uint32(b[0:4]))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return fmt.Errorf("truncated netlink message (%d of %d bytes)", len(b), l)
		}
		typ, seq := binary.NativeEndian.Uint16(b[4:6]), binary.NativeEndian.Uint32(b[8:12])
		payload := b[unix.NLMSG_HDRLEN:l]
		switch typ {
		case unix.NLMSG_DONE:
			return errDumpDone
		case unix.NLMSG_ERROR:
			if len(payload) >= 4 {
				if code := int32(binary.NativeEndian.Uint32(payload[:4])); code != 0 {
					return fmt.Errorf("netlink error: %w", unix.Errno(-code))
				}
			}
		default:
			if err := f(typ, seq, payload); err != nil {
				return err
			}
		}
		b = b[min(nlmAlign(l), len(b)):]
	}
	return nil
}

// dump sends one dump request on fd and calls f with the payload of every answer.
func dump(fd int, req []byte, f func(typ uint16, payload []byte)) error {
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	seq := binary.NativeEndian.Uint32(req[8:12])
	buf := make([]byte, 1<<20)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return err
		}
		err = eachMessage(buf[:n], func(typ uint16, s uint32, payload []byte) error {
			if s == seq {
				f(typ, payload)
			}
			return nil
		})
		switch {
		case errors.Is(err, errDumpDone):
			return nil
		case err != nil:
			return err
		}
	}
}

// nftSet names one set of the dump (anonymous sets included).
type nftSet struct {
	family      uint8
	table, name string
}

// KernelUnseen returns how many of addrs (IPv4, all in 10.0.0.0/8) no nf_tables rule or
// set element of namespace h holds: it dumps every rule and the elements of every set and
// searches them as the Monitor searches notifications (an address is 4 consecutive bytes).
func KernelUnseen(h vnetns.NsHandle, addrs []netip.Addr) (int, error) {
	fd, err := netfilterSocket(h, 5*time.Second)
	if err != nil {
		return len(addrs), err
	}
	defer unix.Close(fd)
	s := newAddrSearch(addrs)
	var sets []nftSet
	seq := uint32(1)
	next := func(msg uint16, family uint8, attrs []byte) []byte {
		seq++
		return nftRequest(msg, unix.NLM_F_REQUEST|unix.NLM_F_DUMP, seq, family, attrs)
	}
	if err := dump(fd, next(nftMsgGetRule, unix.AF_UNSPEC, nil), func(_ uint16, p []byte) { s.scan(p) }); err != nil {
		return s.left, fmt.Errorf("dumping the rules: %w", err)
	}
	err = dump(fd, next(nftMsgGetSet, unix.AF_UNSPEC, nil), func(typ uint16, p []byte) {
		if typ == nfnlSubsysNFTables<<8|nftMsgNewSet {
			sets = append(sets, parseSet(p))
		}
	})
	if err != nil {
		return s.left, fmt.Errorf("dumping the sets: %w", err)
	}
	for _, set := range sets {
		attrs := append(stringAttr(nftaSetTable, set.table), stringAttr(nftaSetName, set.name)...)
		if err := dump(fd, next(nftMsgGetSetElem, set.family, attrs), func(_ uint16, p []byte) { s.scan(p) }); err != nil {
			return s.left, fmt.Errorf("dumping the elements of set %s of table %s: %w", set.name, set.table, err)
		}
	}
	return s.left, nil
}

// parseSet reads the family, table and name of an NFT_MSG_NEWSET message.
func parseSet(p []byte) nftSet {
	var s nftSet
	if len(p) > 0 {
		s.family = p[0]
	}
	eachAttr(p, func(t uint16, v []byte) {
		switch t {
		case nftaSetTable:
			s.table = cString(v)
		case nftaSetName:
			s.name = cString(v)
		}
	})
	return s
}

// cString returns b up to its first NUL.
func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// addrSearch finds expected IPv4 addresses of 10.0.0.0/8 in netlink payloads.
type addrSearch struct {
	expect      map[[4]byte]bool
	left        int
	interesting [256]bool // second bytes worth a map lookup
}

func newAddrSearch(addrs []netip.Addr) *addrSearch {
	s := &addrSearch{expect: make(map[[4]byte]bool, len(addrs))}
	for _, a := range addrs {
		k := key4(a)
		s.expect[k] = true
		s.interesting[k[1]] = true
	}
	s.left = len(s.expect)
	return s
}

// scan marks the expected addresses p holds as seen.
func (s *addrSearch) scan(p []byte) {
	scanIPv4(p, &s.interesting, func(k [4]byte) {
		if s.expect[k] {
			delete(s.expect, k)
			s.left--
		}
	})
}

// scanIPv4 calls found with every 4-byte run of p that looks like an address of
// 10.0.0.0/8 whose second byte is interesting.
func scanIPv4(p []byte, interesting *[256]bool, found func([4]byte)) {
	for i := 0; i+4 <= len(p); i++ {
		if p[i] != 10 || !interesting[p[i+1]] {
			continue
		}
		found([4]byte{p[i], p[i+1], p[i+2], p[i+3]})
	}
}
