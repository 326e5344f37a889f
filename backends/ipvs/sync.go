package ipvs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"syscall"
	"time"

	"github.com/moby/ipvs"
	"k8s.io/klog/v2"
	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/model"
)

// kernel is what a sync writes to: IPVS and the dummy interface.
type kernel struct {
	h     Handle
	nft   knftables.Interface
	mark  string // the masquerade bit, "0x4000"
	links Links
	now   func() time.Time
	// excluded reports whether a virtual server's address belongs to someone else
	// (ipvs.excludeCIDRs): portico never deletes it.
	excluded func(netip.Addr) bool
	// drainBound is how long a real server may drain (drain.go).
	drainBound time.Duration
	// scheduler is the default scheduler (ipvs.scheduler, else rr).
	scheduler string
	logger    klog.Logger
	// warn records a port programmed otherwise than asked (nil: only logged).
	warn func(backends.PortWarning)
}

// applyVS makes the kernel's virtual server vs.key match vs, given the real servers it
// holds (have, with their weights; nil when the virtual server does not exist yet).
// Real servers vs no longer wants are kept with weight 0 and drained (drain.go).
func (fs *familyState) applyVS(k kernel, vs virtualServer, port model.ServicePortName, have map[netip.AddrPort]int, exists, same bool) error {
	vs, err := k.writeService(vs, port, exists, same)
	if err != nil {
		return err
	}
	svc := service(vs.key, &vs)
	fs.vs[vs.key] = owned{virtualServer: vs, port: port}
	for _, ap := range vs.dests {
		w, ok := have[ap]
		var err error
		switch {
		case !ok:
			err = k.h.NewDestination(svc, destination(ap, 1))
		case w != 1:
			err = k.h.UpdateDestination(svc, destination(ap, 1))
		}
		if err != nil {
			return fmt.Errorf("adding real server %s to IPVS virtual server %s for %s: %w", ap, vs.key, port, err)
		}
		fs.stopDraining(vs.key, ap)
	}
	return fs.drainLeavers(k, vs, have)
}

// writeService creates or updates a virtual server's settings, unless they are the same.
// A scheduler the kernel does not have (its ip_vs_<name> module missing: ENOENT) is
// replaced by the default one, logged and recorded as a warning (an Event on the
// Service), so that one Service's annotation never fails the sync of the others; the
// virtual server as written is returned.
func (k kernel) writeService(vs virtualServer, port model.ServicePortName, exists, same bool) (virtualServer, error) {
	if exists && same {
		return vs, nil
	}
	write, verb := k.h.NewService, "creating"
	if exists {
		write, verb = k.h.UpdateService, "updating"
	}
	err := write(service(vs.key, &vs))
	if errors.Is(err, syscall.ENOENT) && vs.scheduler != k.scheduler {
		k.logger.Error(err, "The kernel has no such IPVS scheduler (is its module ip_vs_<name> missing?); using the default",
			"servicePort", port, "scheduler", vs.scheduler, "default", k.scheduler)
		if k.warn != nil {
			k.warn(backends.PortWarning{Name: port, Err: fmt.Errorf("the kernel has no IPVS scheduler %q (is the module ip_vs_%s loaded?): "+
				"IPVS virtual server %s uses the default scheduler %q: %w", vs.scheduler, vs.scheduler, vs.key, k.scheduler, err)})
		}
		vs.scheduler = k.scheduler
		err = write(service(vs.key, &vs))
	}
	if err != nil {
		return vs, fmt.Errorf("%s IPVS virtual server %s for %s: %w", verb, vs.key, port, err)
	}
	return vs, nil
}

// drainLeavers sets weight 0 on the real servers of have that vs no longer wants, so that
// new connections go elsewhere at once while established ones go on. UDP has no end of
// connection to wait for: a UDP real server is deleted at once, and with
// net.ipv4.vs.expire_nodest_conn (set in ipvs mode) IPVS drops its entries on their next
// packet, so that a client's flow moves to a live endpoint (as kube-proxy does).
func (fs *familyState) drainLeavers(k kernel, vs virtualServer, have map[netip.AddrPort]int) error {
	for ap, w := range have {
		if slices.Contains(vs.dests, ap) {
			continue
		}
		if vs.key.proto == model.UDP {
			if err := k.h.DelDestination(service(vs.key, nil), destination(ap, 0)); err != nil {
				return fmt.Errorf("deleting real server %s of IPVS virtual server %s: %w", ap, vs.key, err)
			}
			fs.stopDraining(vs.key, ap)
			continue
		}
		if w != 0 {
			if err := k.h.UpdateDestination(service(vs.key, nil), destination(ap, 0)); err != nil {
				return fmt.Errorf("draining real server %s of IPVS virtual server %s: %w", ap, vs.key, err)
			}
		}
		fs.startDraining(vs.key, ap, k.now())
	}
	return nil
}

// deleteVS deletes a virtual server (its connections go with it, as the Service port's
// frontend went) and forgets its draining real servers.
func (fs *familyState) deleteVS(k kernel, key vsKey) error {
	if err := k.h.DelService(service(key, nil)); err != nil {
		return fmt.Errorf("deleting IPVS virtual server %s: %w", key, err)
	}
	delete(fs.vs, key)
	delete(fs.draining, key)
	return nil
}

// String returns "TCP 10.96.0.10:80".
func (k vsKey) String() string {
	return fmt.Sprintf("%s %s", k.proto, netip.AddrPortFrom(k.addr, k.port))
}

// partialSync writes the virtual servers and set elements of the Service ports d names,
// from the mirror: the elements that appear are added before IPVS changes, the ones that
// go deleted after, so that no frontend is ever refused for want of an element.
func (fs *familyState) partialSync(ctx context.Context, k kernel, r renderer, t *model.Table, d model.Diff) error {
	var adds, dels []element
	next := map[model.ServicePortName][]virtualServer{}
	for _, name := range slices.Concat(d.Changed, d.Removed) {
		var es []element
		if sp, ok := t.Get(name); ok {
			next[name], es = r.render(sp), r.elements(sp)
		}
		a, dl := fs.moveElements(fs.portElems[name], es)
		adds, dels = append(adds, a...), append(dels, dl...)
		fs.setPortElements(name, es)
	}
	if err := runElements(ctx, k.nft, adds, false); err != nil {
		return err
	}
	for _, name := range slices.Concat(d.Changed, d.Removed) {
		if err := fs.movePort(ctx, k, name, next[name]); err != nil {
			return err
		}
	}
	return runElements(ctx, k.nft, dels, true)
}

// setPortElements records a port's elements (none: forgets the port).
func (fs *familyState) setPortElements(name model.ServicePortName, es []element) {
	if len(es) == 0 {
		delete(fs.portElems, name)
		return
	}
	fs.portElems[name] = es
}

// movePort replaces the virtual servers of one port with next: the new and changed ones
// are written and their addresses bound before the ones it no longer has are unbound and
// deleted.
func (fs *familyState) movePort(ctx context.Context, k kernel, name model.ServicePortName, next []virtualServer) error {
	var keys []vsKey
	for _, vs := range next {
		old, exists := fs.vs[vs.key]
		if exists && old.port != name {
			continue // another port's frontend (a conflict compile reports); the first keeps it
		}
		if err := fs.applyVS(k, vs, name, fs.weights(vs.key), exists, exists && old.sameSettings(vs)); err != nil {
			return err
		}
		if !exists && vs.bound {
			if err := fs.bind(ctx, k, vs.key.addr); err != nil {
				return err
			}
		}
		keys = append(keys, vs.key)
	}
	for _, key := range fs.ports[name] {
		if slices.Contains(keys, key) {
			continue
		}
		if err := fs.dropVS(ctx, k, key); err != nil {
			return err
		}
	}
	if len(keys) == 0 {
		delete(fs.ports, name)
	} else {
		fs.ports[name] = keys
	}
	return nil
}

// sameSettings reports whether a written virtual server has vs's scheduler and
// persistence.
func (o owned) sameSettings(vs virtualServer) bool {
	return o.scheduler == vs.scheduler && o.timeout == vs.timeout
}

// dropVS unbinds a written virtual server's address (when no other uses it) and deletes it.
func (fs *familyState) dropVS(ctx context.Context, k kernel, key vsKey) error {
	if fs.vs[key].bound {
		if err := fs.unbind(ctx, k, key.addr); err != nil {
			return err
		}
	}
	return fs.deleteVS(k, key)
}

// bind counts one more virtual server on address a, putting a on the dummy interface for
// the first.
func (fs *familyState) bind(ctx context.Context, k kernel, a netip.Addr) error {
	fs.addrs[a]++
	if fs.addrs[a] > 1 {
		return nil
	}
	if err := k.links.AddAddr(ctx, a); err != nil {
		return fmt.Errorf("binding %s to %s: %w", a, DeviceName, err)
	}
	return nil
}

// unbind counts one virtual server less on address a, taking a off the dummy interface
// after the last.
func (fs *familyState) unbind(ctx context.Context, k kernel, a netip.Addr) error {
	fs.addrs[a]--
	if fs.addrs[a] > 0 {
		return nil
	}
	delete(fs.addrs, a)
	if err := k.links.DelAddr(ctx, a); err != nil {
		return fmt.Errorf("unbinding %s from %s: %w", a, DeviceName, err)
	}
	return nil
}

// listed is the kernel's view of one virtual server.
type listed struct {
	svc   *ipvs.Service
	dests map[netip.AddrPort]int
}
