package ipvs

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"

	"github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/portico-dev/portico/model"
)

// owners returns the addresses whose virtual servers portico owns: those bound to the
// dummy interface and, for NodePorts, the node's own (from addrs).
func owners(ctx context.Context, k kernel, addrs func() ([]netip.Addr, error)) (map[netip.Addr]bool, error) {
	out := map[netip.Addr]bool{}
	for _, f := range []model.Family{model.IPv4, model.IPv6} {
		bound, err := k.links.Addrs(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("listing the addresses of %s: %w", DeviceName, err)
		}
		for _, a := range bound {
			out[a] = true
		}
	}
	local, err := addrs()
	if err != nil {
		return nil, fmt.Errorf("listing the node's addresses: %w", err)
	}
	for _, a := range local {
		out[a] = true
	}
	return out, nil
}

// localAddrs lists the addresses of every interface of the node.
func localAddrs() ([]netip.Addr, error) {
	list, err := netlink.AddrList(nil, unix.AF_UNSPEC)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range list {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out = append(out, ip.Unmap())
		}
	}
	return out, nil
}

// ownedServices lists the kernel's virtual servers that portico owns, sorted by key.
func ownedServices(ctx context.Context, k kernel, addrs func() ([]netip.Addr, error)) ([]*ipvs.Service, error) {
	own, err := owners(ctx, k, addrs)
	if err != nil {
		return nil, err
	}
	svcs, err := k.h.GetServices()
	if err != nil {
		return nil, fmt.Errorf("listing the IPVS virtual servers: %w", err)
	}
	var out []*ipvs.Service
	for _, s := range svcs {
		if key, ok := keyOf(s); ok && own[key.addr] && !k.excluded(key.addr) {
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
func cleanup(ctx context.Context, k kernel, addrs func() ([]netip.Addr, error)) error {
	svcs, err := ownedServices(ctx, k, addrs)
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
func dump(ctx context.Context, k kernel, w io.Writer) error {
	return dumpWith(ctx, k, w, localAddrs)
}

// dumpWith is dump with the node's addresses from addrs.
func dumpWith(ctx context.Context, k kernel, w io.Writer, addrs func() ([]netip.Addr, error)) error {
	svcs, err := ownedServices(ctx, k, addrs)
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
