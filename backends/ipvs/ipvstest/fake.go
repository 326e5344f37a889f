// Package ipvstest is an in-memory, stateful stand-in for the kernel's IPVS tables, with
// the interface of github.com/moby/ipvs's Handle, for unit tests.
package ipvstest

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/moby/ipvs"
)

// Fake holds virtual servers and their real servers as the kernel would: it refuses to
// create what exists, to change or delete what does not, and unknown schedulers, with the
// errors the kernel gives (EEXIST, ESRCH, ENOENT). Tests set connection counts on real
// servers with SetConnections. Safe for concurrent use.
type Fake struct {
	mu   sync.Mutex
	svcs map[string]*entry
	cfg  ipvs.Config
	// Schedulers are the schedulers the fake "kernel" has (default: rr, wrr, lc, sh, mh).
	Schedulers []string
	// Ops counts the calls that changed something.
	Ops int
	// FailAfter, when positive, makes the call after that many more changing calls fail.
	FailAfter int
}

// ErrInjected is the error of a call failed through FailAfter.
var ErrInjected = errors.New("ipvstest: injected failure")

type entry struct {
	svc   ipvs.Service
	dests map[string]*ipvs.Destination
	order []string
}

// New returns an empty Fake.
func New() *Fake {
	return &Fake{svcs: map[string]*entry{}, Schedulers: []string{"rr", "wrr", "lc", "sh", "mh"}}
}

func svcKey(s *ipvs.Service) string {
	if s.FWMark != 0 {
		return fmt.Sprintf("fwmark/%d/%d", s.AddressFamily, s.FWMark)
	}
	return fmt.Sprintf("%d/%s/%d", s.Protocol, s.Address, s.Port)
}

func destKey(d *ipvs.Destination) string {
	return net.JoinHostPort(d.Address.String(), fmt.Sprint(d.Port))
}

// change counts a changing call, failing it when FailAfter says so.
func (f *Fake) change() error {
	if f.FailAfter > 0 {
		f.FailAfter--
		if f.FailAfter == 0 {
			return ErrInjected
		}
	}
	f.Ops++
	return nil
}

func (f *Fake) find(s *ipvs.Service) (*entry, error) {
	e, ok := f.svcs[svcKey(s)]
	if !ok {
		return nil, fmt.Errorf("no such service %s: %w", svcKey(s), syscall.ESRCH)
	}
	return e, nil
}

// GetServices returns copies of every virtual server, with the kernel's hashed flag.
func (f *Fake) GetServices() ([]*ipvs.Service, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*ipvs.Service
	for _, k := range slices.Sorted(maps.Keys(f.svcs)) {
		s := f.svcs[k].svc
		s.Flags |= 0x2
		out = append(out, &s)
	}
	return out, nil
}

// NewService creates a virtual server.
func (f *Fake) NewService(s *ipvs.Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.svcs[svcKey(s)]; ok {
		return fmt.Errorf("service %s: %w", svcKey(s), syscall.EEXIST)
	}
	if !slices.Contains(f.Schedulers, s.SchedName) {
		return fmt.Errorf("scheduler %q: %w", s.SchedName, syscall.ENOENT)
	}
	if err := f.change(); err != nil {
		return err
	}
	f.svcs[svcKey(s)] = &entry{svc: cloneSvc(s), dests: map[string]*ipvs.Destination{}}
	return nil
}

// UpdateService changes a virtual server's scheduler, flags and timeout.
func (f *Fake) UpdateService(s *ipvs.Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, err := f.find(s)
	if err != nil {
		return err
	}
	if !slices.Contains(f.Schedulers, s.SchedName) {
		return fmt.Errorf("scheduler %q: %w", s.SchedName, syscall.ENOENT)
	}
	if err := f.change(); err != nil {
		return err
	}
	e.svc = cloneSvc(s)
	return nil
}

// DelService deletes a virtual server and its real servers.
func (f *Fake) DelService(s *ipvs.Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.find(s); err != nil {
		return err
	}
	if err := f.change(); err != nil {
		return err
	}
	delete(f.svcs, svcKey(s))
	return nil
}

// GetDestinations returns copies of a virtual server's real servers.
func (f *Fake) GetDestinations(s *ipvs.Service) ([]*ipvs.Destination, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, err := f.find(s)
	if err != nil {
		return nil, err
	}
	var out []*ipvs.Destination
	for _, k := range slices.Sorted(maps.Keys(e.dests)) {
		d := *e.dests[k]
		out = append(out, &d)
	}
	return out, nil
}

// NewDestination adds a real server.
func (f *Fake) NewDestination(s *ipvs.Service, d *ipvs.Destination) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, err := f.find(s)
	if err != nil {
		return err
	}
	if _, ok := e.dests[destKey(d)]; ok {
		return fmt.Errorf("destination %s: %w", destKey(d), syscall.EEXIST)
	}
	if err := f.change(); err != nil {
		return err
	}
	c := *d
	c.ActiveConnections, c.InactiveConnections = 0, 0
	e.dests[destKey(d)] = &c
	return nil
}

// UpdateDestination changes a real server's weight and flags (not its connections).
func (f *Fake) UpdateDestination(s *ipvs.Service, d *ipvs.Destination) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, err := f.find(s)
	if err != nil {
		return err
	}
	old, ok := e.dests[destKey(d)]
	if !ok {
		return fmt.Errorf("destination %s: %w", destKey(d), syscall.ENOENT)
	}
	if err := f.change(); err != nil {
		return err
	}
	old.Weight, old.ConnectionFlags = d.Weight, d.ConnectionFlags
	return nil
}

// DelDestination deletes a real server.
func (f *Fake) DelDestination(s *ipvs.Service, d *ipvs.Destination) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, err := f.find(s)
	if err != nil {
		return err
	}
	if _, ok := e.dests[destKey(d)]; !ok {
		return fmt.Errorf("destination %s: %w", destKey(d), syscall.ENOENT)
	}
	if err := f.change(); err != nil {
		return err
	}
	delete(e.dests, destKey(d))
	return nil
}

// GetConfig returns the timeouts.
func (f *Fake) GetConfig() (*ipvs.Config, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.cfg
	return &c, nil
}

// SetConfig sets the timeouts that are not zero.
func (f *Fake) SetConfig(c *ipvs.Config) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c.TimeoutTCP != 0 {
		f.cfg.TimeoutTCP = c.TimeoutTCP
	}
	if c.TimeoutTCPFin != 0 {
		f.cfg.TimeoutTCPFin = c.TimeoutTCPFin
	}
	if c.TimeoutUDP != 0 {
		f.cfg.TimeoutUDP = c.TimeoutUDP
	}
	return nil
}

// SetConnections sets the connection counts of real server dest ("addr:port") of the
// virtual server ("proto/addr/port", proto as its number); false if there is none.
func (f *Fake) SetConnections(svc, dest string, active, inactive int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.svcs[svc]
	if !ok {
		return false
	}
	d, ok := e.dests[dest]
	if ok {
		d.ActiveConnections, d.InactiveConnections = active, inactive
	}
	return ok
}

// Dump returns every virtual server and real server, one per line, sorted, in the style
// of ipvsadm -Ln: "TCP 10.96.0.10:80 rr persistent 10800" then "  -> 10.244.1.10:8080 w1".
func (f *Fake) Dump() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(f.svcs)) {
		e := f.svcs[k]
		s := e.svc
		fmt.Fprintf(&b, "%s %s %s", protoName(s.Protocol), net.JoinHostPort(s.Address.String(), fmt.Sprint(s.Port)), s.SchedName)
		if s.Flags&0x1 != 0 {
			fmt.Fprintf(&b, " persistent %d", s.Timeout)
		}
		b.WriteString("\n")
		for _, dk := range slices.Sorted(maps.Keys(e.dests)) {
			d := e.dests[dk]
			fmt.Fprintf(&b, "  -> %s w%d", dk, d.Weight)
			if d.ActiveConnections+d.InactiveConnections > 0 {
				fmt.Fprintf(&b, " conns %d/%d", d.ActiveConnections, d.InactiveConnections)
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

func protoName(p uint16) string {
	switch p {
	case syscall.IPPROTO_TCP:
		return "TCP"
	case syscall.IPPROTO_UDP:
		return "UDP"
	case 132:
		return "SCTP"
	}
	return fmt.Sprint(p)
}

func cloneSvc(s *ipvs.Service) ipvs.Service {
	c := *s
	c.Address = slices.Clone(s.Address)
	c.Flags &^= 0x2
	return c
}
