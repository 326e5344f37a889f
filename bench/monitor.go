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
)

// Monitor listens to the nf_tables notifications of one network namespace (netlink group
// NFNLGRP_NFTABLES on a NETLINK_NETFILTER socket created inside it) and timestamps every
// message when it is received. The kernel sends them when a transaction commits: one
// message per object created or deleted (tables, chains, rules, sets, elements), then a
// NEWGEN message that closes the commit.
//
// It answers two questions: when did the kernel first hold a given IPv4 address in any
// object (Watch, for change latency), and when did each commit happen (Gens). A cold sync
// is measured with the monitor muted (GenPoller, KernelUnseen).
type Monitor struct {
	fd    int
	group int // the netlink group it listens to
	done  chan struct{}

	mu      sync.Mutex
	stopped bool
	gens    []Gen
	msgs    int64
	bytes   int64
	byType  map[string]int64
	enobufs []time.Time
	lastMsg time.Time
	watches map[[4]byte]*Watch
	// second bytes of the 10.x.y.z addresses worth a map lookup.
	interesting [256]bool
}

// Gen is one commit (an NFT_MSG_NEWGEN notification).
type Gen struct {
	At   time.Time `json:"at"`
	ID   uint32    `json:"id"`
	PID  uint32    `json:"pid"`
	Proc string    `json:"proc"`
	// Msgs is how many messages (this commit's included) the monitor had received when it
	// received this one.
	Msgs int64 `json:"msgs"`
}

// Watch waits for the first notification holding an address.
type Watch struct {
	Addr  netip.Addr
	Since time.Time
	// At is set once a message holding the address was received; MsgType is its type.
	At      time.Time
	MsgType string
	done    chan struct{}
}

// Done is closed when the address was seen.
func (w *Watch) Done() <-chan struct{} { return w.done }

// rcvBuf is the socket's receive buffer: a cold sync of 10,000 Services sends hundreds of
// thousands of messages at once.
const rcvBuf = 256 << 20

// Netlink constants not all spelled out by x/sys/unix.
const (
	nfnlSubsysCTNetlink = 1
	nfnlSubsysNFTables  = 10
	nftMsgNewGen        = 15
	nftaGenID           = 1
	nftaGenProcPID      = 2
	nftaGenProcName     = 3
)

var nftMsgNames = []string{"NEWTABLE", "GETTABLE", "DELTABLE", "NEWCHAIN", "GETCHAIN", "DELCHAIN",
	"NEWRULE", "GETRULE", "DELRULE", "NEWSET", "GETSET", "DELSET", "NEWSETELEM", "GETSETELEM",
	"DELSETELEM", "NEWGEN", "GETGEN", "TRACE", "NEWOBJ", "GETOBJ", "DELOBJ", "GETOBJ_RESET",
	"NEWFLOWTABLE", "GETFLOWTABLE", "DELFLOWTABLE"}

func msgName(t uint16) string {
	if t>>8 == nfnlSubsysCTNetlink && t&0xff == 0 {
		return "CT_NEW"
	}
	if t>>8 != nfnlSubsysNFTables {
		return fmt.Sprintf("other-%#x", t)
	}
	if m := int(t & 0xff); m < len(nftMsgNames) {
		return nftMsgNames[m]
	}
	return fmt.Sprintf("nft-%d", t&0xff)
}

// StartMonitor opens the socket inside namespace h (on a thread switched into it),
// subscribed to the nf_tables notifications, and starts reading.
func StartMonitor(h vnetns.NsHandle) (*Monitor, error) {
	return startMonitor(h, unix.NFNLGRP_NFTABLES)
}

// StartConntrackMonitor is StartMonitor subscribed to the conntrack NEW events instead:
// each new connection's entry, whose reply tuple names the address the rules translated
// its destination to.
func StartConntrackMonitor(h vnetns.NsHandle) (*Monitor, error) {
	return startMonitor(h, unix.NFNLGRP_CONNTRACK_NEW)
}

func startMonitor(h vnetns.NsHandle, group int) (*Monitor, error) {
	// A receive timeout lets the reader notice Close.
	fd, err := netfilterSocket(h, 200*time.Millisecond)
	if err != nil {
		return nil, err
	}
	m := &Monitor{fd: fd, group: group, done: make(chan struct{}), byType: map[string]int64{},
		watches: map[[4]byte]*Watch{}}
	if err := m.setup(group); err != nil {
		unix.Close(m.fd)
		return nil, err
	}
	go m.read()
	return m, nil
}

func (m *Monitor) setup(group int) error {
	if err := unix.SetsockoptInt(m.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuf); err != nil {
		return fmt.Errorf("SO_RCVBUFFORCE: %w", err)
	}
	if err := unix.SetsockoptInt(m.fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, group); err != nil {
		return fmt.Errorf("join netfilter group %d: %w", group, err)
	}
	return nil
}

// Mute leaves the monitor's netlink group: the kernel stops building notifications for
// it (with no other listener, for nobody) until Unmute. A cold sync is measured muted
// (GenPoller), since those notifications cost the committing proxy.
func (m *Monitor) Mute() error {
	if err := unix.SetsockoptInt(m.fd, unix.SOL_NETLINK, unix.NETLINK_DROP_MEMBERSHIP, m.group); err != nil {
		return fmt.Errorf("leave netfilter group %d: %w", m.group, err)
	}
	return nil
}

// Unmute joins the monitor's netlink group again.
func (m *Monitor) Unmute() error {
	if err := unix.SetsockoptInt(m.fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, m.group); err != nil {
		return fmt.Errorf("join netfilter group %d: %w", m.group, err)
	}
	return nil
}

// Close stops the reader and closes the socket.
func (m *Monitor) Close() {
	m.mu.Lock()
	already := m.stopped
	m.stopped = true
	m.mu.Unlock()
	if already {
		return
	}
	<-m.done
	unix.Close(m.fd)
}

func (m *Monitor) read() {
	defer close(m.done)
	buf := make([]byte, 4<<20)
	for {
		m.mu.Lock()
		stop := m.stopped
		m.mu.Unlock()
		if stop {
			return
		}
		n, _, err := unix.Recvfrom(m.fd, buf, 0)
		now := time.Now()
		if err != nil {
			switch {
			case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			case errors.Is(err, unix.ENOBUFS):
				m.mu.Lock()
				m.enobufs = append(m.enobufs, now)
				m.mu.Unlock()
			default:
				time.Sleep(10 * time.Millisecond)
			}
			continue
		}
		m.handle(buf[:n], now)
	}
}

// handle processes one datagram (one or more netlink messages) received at now.
func (m *Monitor) handle(b []byte, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastMsg = now
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(binary.NativeEndian.Uint32(b[0:4]))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return
		}
		typ := binary.NativeEndian.Uint16(b[4:6])
		payload := b[unix.NLMSG_HDRLEN:l]
		m.msgs++
		m.bytes += int64(l)
		name := msgName(typ)
		m.byType[name]++
		if typ>>8 == nfnlSubsysNFTables && typ&0xff == nftMsgNewGen {
			g := parseGen(payload, now)
			g.Msgs = m.msgs
			m.gens = append(m.gens, g)
		} else if len(m.watches) > 0 {
			m.scan(payload, now, name)
		}
		b = b[min(nlmAlign(l), len(b)):]
	}
}

func nlmAlign(l int) int { return (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// scan looks for the watched IPv4 addresses (all in 10.0.0.0/8) anywhere in
// a message: in set elements and rule expressions an address is 4 consecutive bytes.
func (m *Monitor) scan(p []byte, now time.Time, name string) {
	scanIPv4(p, &m.interesting, func(k [4]byte) {
		if w, ok := m.watches[k]; ok {
			delete(m.watches, k)
			w.At, w.MsgType = now, name
			close(w.done)
		}
	})
}

func parseGen(p []byte, now time.Time) Gen {
	g := Gen{At: now}
	eachAttr(p, func(t uint16, v []byte) {
		switch {
		case t == nftaGenID && len(v) >= 4:
			g.ID = binary.BigEndian.Uint32(v)
		case t == nftaGenProcPID && len(v) >= 4:
			g.PID = binary.BigEndian.Uint32(v)
		case t == nftaGenProcName:
			g.Proc = cString(v)
		}
	})
	return g
}

// eachAttr calls f with the type (flags cleared) and value of every top-level attribute
// of an nf_tables message's payload p (after its struct nfgenmsg).
func eachAttr(p []byte, f func(t uint16, v []byte)) {
	if len(p) < 4 {
		return
	}
	p = p[4:] // struct nfgenmsg
	for len(p) >= 4 {
		l := int(binary.NativeEndian.Uint16(p[0:2]))
		t := binary.NativeEndian.Uint16(p[2:4]) & 0x3fff
		if l < 4 || l > len(p) {
			return
		}
		f(t, p[4:l])
		p = p[min((l+3)&^3, len(p)):]
	}
}

func key4(a netip.Addr) [4]byte { return a.As4() }

// Watch starts waiting for the first message, received from now on, that holds a (an
// address of 10.0.0.0/8).
func (m *Monitor) Watch(a netip.Addr) *Watch {
	w := &Watch{Addr: a, done: make(chan struct{})}
	k := key4(a)
	m.mu.Lock()
	m.interesting[k[1]] = true
	w.Since = time.Now()
	m.watches[k] = w
	m.mu.Unlock()
	return w
}

// Unwatch drops a watch that was not satisfied.
func (m *Monitor) Unwatch(w *Watch) {
	m.mu.Lock()
	if cur, ok := m.watches[key4(w.Addr)]; ok && cur == w {
		delete(m.watches, key4(w.Addr))
	}
	m.mu.Unlock()
}

// MonitorStats are counters since the monitor started.
type MonitorStats struct {
	Msgs    int64            `json:"msgs"`
	Bytes   int64            `json:"bytes"`
	ByType  map[string]int64 `json:"by_type"`
	ENOBUFS int              `json:"enobufs"`
	Gens    int              `json:"gens"`
	LastMsg time.Time        `json:"last_msg"`
}

// Stats returns the counters.
func (m *Monitor) Stats() MonitorStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	bt := make(map[string]int64, len(m.byType))
	for k, v := range m.byType {
		bt[k] = v
	}
	return MonitorStats{Msgs: m.msgs, Bytes: m.bytes, ByType: bt, ENOBUFS: len(m.enobufs), Gens: len(m.gens), LastMsg: m.lastMsg}
}

// Delta returns s minus an earlier snapshot.
func (s MonitorStats) Delta(prev MonitorStats) MonitorStats {
	d := MonitorStats{Msgs: s.Msgs - prev.Msgs, Bytes: s.Bytes - prev.Bytes, ENOBUFS: s.ENOBUFS - prev.ENOBUFS,
		Gens: s.Gens - prev.Gens, LastMsg: s.LastMsg, ByType: map[string]int64{}}
	for k, v := range s.ByType {
		if v-prev.ByType[k] != 0 {
			d.ByType[k] = v - prev.ByType[k]
		}
	}
	return d
}

// LastGen returns when the last commit was received (zero if none).
func (m *Monitor) LastGen() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.gens) == 0 {
		return time.Time{}
	}
	return m.gens[len(m.gens)-1].At
}

// ENOBUFSBetween counts receive-buffer overruns in [from, to].
func (m *Monitor) ENOBUFSBetween(from, to time.Time) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, t := range m.enobufs {
		if !t.Before(from) && !t.After(to) {
			n++
		}
	}
	return n
}

// Quiet waits until no message arrived for quiet (at most max), and reports whether it
// got quiet.
func (m *Monitor) Quiet(quiet, max time.Duration) bool {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		m.mu.Lock()
		last := m.lastMsg
		m.mu.Unlock()
		if time.Since(last) >= quiet {
			return true
		}
		time.Sleep(quiet / 4)
	}
	return false
}
