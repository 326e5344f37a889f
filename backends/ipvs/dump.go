package ipvs

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"

	"github.com/moby/ipvs"

	"github.com/portico-dev/portico/model"
)

// ownership is what portico owns in IPVS: the virtual servers on the addresses bound to
// its dummy interface, and the frontends its nftables tables list (NodePorts on the
// node's own addresses included).
type ownership struct {
	bound  map[netip.Addr]bool
	listed map[vsKey]bool
}

func (o ownership) owns(k vsKey) bool { return o.bound[k.addr] || o.listed[k] }

// ownership reads what portico owns from the kernel: the dummy interface's addresses and
// both families' tables (a family whose table cannot be read lists nothing).
func (b *Backend) ownership(ctx context.Context, k kernel) (ownership, error) {
	o := ownership{bound: map[netip.Addr]bool{}, listed: map[vsKey]bool{}}
	for _, f := range []model.Family{model.IPv4, model.IPv6} {
		bound, err := k.links.Addrs(ctx, f)
		if err != nil {
			return o, fmt.Errorf("listing the addresses of %s: %w", DeviceName, err)
		}
		for _, a := range bound {
			o.bound[a] = true
		}
		nft, err := b.nft(f)
		if err != nil {
			continue
		}
		listed, err := tableFrontends(ctx, nft)
		if err != nil {
			return o, err
		}
		maps.Copy(o.listed, listed)
	}
	return o, nil
}

// ownedServices lists the kernel's virtual servers that portico owns, sorted by key.
func ownedServices(k kernel, own ownership) ([]*ipvs.Service, error) {
	svcs, err := k.h.GetServices()
	if err != nil {
		return nil, fmt.Errorf("listing the IPVS virtual servers: %w", err)
	}
	var out []*ipvs.Service
	for _, s := range svcs {
		if key, ok := keyOf(s); ok && own.owns(key) && !k.excluded(key.addr) {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b *ipvs.Service) int {
		ka, _ := keyOf(a)
		kb, _ := keyOf(b)
		return ka.compare(kb)
	})
	return out, nil
}

// cleanup deletes every virtual server portico owns.
func cleanup(k kernel, own ownership) error {
	svcs, err := ownedServices(k, own)
	if err != nil {
		return err
	}
	for _, s := range svcs {
		if err := k.h.DelService(s); err != nil {
			key, _ := keyOf(s)
			return fmt.Errorf("deleting IPVS virtual server %s: %w", key, err)
		}
	}
	return nil
}

// dump writes the virtual servers portico owns, in the style of ipvsadm -Ln, and the
// dummy interface's addresses.
func dump(ctx context.Context, k kernel, own ownership, w io.Writer) error {
	svcs, err := ownedServices(k, own)
	if err != nil {
		return err
	}
	for _, s := range svcs {
		key, _ := keyOf(s)
		fmt.Fprintf(w, "%s %s", key, s.SchedName)
		if s.Flags&flagPersistent != 0 {
			fmt.Fprintf(w, " persistent %ds", s.Timeout)
		}
		ds, err := k.h.GetDestinations(s)
		if err != nil {
			return fmt.Errorf("listing the real servers of IPVS virtual server %s: %w", key, err)
		}
		fmt.Fprintln(w)
		conns := map[netip.AddrPort]string{}
		for _, d := range ds {
			conns[destAddr(d)] = fmt.Sprintf("weight %d, active %d, inactive %d", d.Weight, d.ActiveConnections, d.InactiveConnections)
		}
		for _, ap := range slices.SortedFunc(maps.Keys(conns), netip.AddrPort.Compare) {
			fmt.Fprintf(w, "  -> %s (%s)\n", ap, conns[ap])
		}
	}
	for _, f := range []model.Family{model.IPv4, model.IPv6} {
		bound, err := k.links.Addrs(ctx, f)
		if err != nil {
			return err
		}
		for _, a := range bound {
			fmt.Fprintf(w, "%s %s\n", DeviceName, a)
		}
	}
	return nil
}
