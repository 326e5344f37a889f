package ipvs

import (
	"net/netip"
	"time"

	"github.com/portico-dev/portico/model"
)

// familyState mirrors what the backend put into IPVS and onto its dummy interface for one
// family, so that a partial sync writes only what changed without listing the kernel.
type familyState struct {
	f model.Family
	// ready is true after a successful full sync with nothing failed since.
	ready bool
	// ports holds the keys of each Service port's virtual servers.
	ports map[model.ServicePortName][]vsKey
	// vs holds every virtual server written, with the port that owns it.
	vs map[vsKey]owned
	// addrs counts the virtual servers using each address bound to the dummy interface.
	addrs map[netip.Addr]int
	// portElems holds each Service port's set elements; elems counts the ports using
	// each element (a ClusterIP address is shared by the Service's ports).
	portElems map[model.ServicePortName][]element
	elems     map[element]int
	// draining holds the real servers kept with weight 0 since they left their virtual
	// server, until their connections end (drain.go).
	draining map[vsKey]map[netip.AddrPort]time.Time
}

// owned is a virtual server as written, and its Service port.
type owned struct {
	virtualServer
	port model.ServicePortName
}

func newFamilyState(f model.Family) *familyState {
	fs := &familyState{f: f}
	fs.reset()
	return fs
}

// reset forgets everything: the next sync is full and compares with the kernel.
func (fs *familyState) reset() {
	fs.ready = false
	fs.ports = map[model.ServicePortName][]vsKey{}
	fs.vs = map[vsKey]owned{}
	fs.addrs = map[netip.Addr]int{}
	fs.portElems = map[model.ServicePortName][]element{}
	fs.elems = map[element]int{}
	if fs.draining == nil {
		fs.draining = map[vsKey]map[netip.AddrPort]time.Time{}
	}
}

// weights returns the real servers the mirror says virtual server k has: its wanted ones
// with weight 1, the draining ones with weight 0.
func (fs *familyState) weights(k vsKey) map[netip.AddrPort]int {
	out := map[netip.AddrPort]int{}
	for ap := range fs.draining[k] {
		out[ap] = 0
	}
	if o, ok := fs.vs[k]; ok {
		for _, ap := range o.dests {
			out[ap] = 1
		}
	}
	return out
}

// startDraining records that real server ap of k left it now (unless it already had).
func (fs *familyState) startDraining(k vsKey, ap netip.AddrPort, now time.Time) {
	if fs.draining[k] == nil {
		fs.draining[k] = map[netip.AddrPort]time.Time{}
	}
	if _, ok := fs.draining[k][ap]; !ok {
		fs.draining[k][ap] = now
	}
}

// stopDraining forgets a draining real server (deleted, or wanted again).
func (fs *familyState) stopDraining(k vsKey, ap netip.AddrPort) {
	delete(fs.draining[k], ap)
	if len(fs.draining[k]) == 0 {
		delete(fs.draining, k)
	}
}
