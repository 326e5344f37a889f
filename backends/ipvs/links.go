package ipvs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/portico-dev/portico/model"
)

// DeviceName is the dummy interface that holds the addresses of portico's virtual servers
// (kube-proxy's is kube-ipvs0): IPVS takes only packets addressed to the node itself.
const DeviceName = "portico-ipvs0"

// Links manages the dummy interface and its addresses.
type Links interface {
	// Ensure creates the dummy interface if it does not exist. It stays down: the
	// kernel still treats its IPv4 addresses as local, and a down interface never
	// answers for them on the wire.
	Ensure(ctx context.Context) error
	// Addrs lists the addresses of family f on the interface (none if it does not exist).
	Addrs(ctx context.Context, f model.Family) ([]netip.Addr, error)
	// AddAddr binds a (a /32 or /128) to the interface.
	AddAddr(ctx context.Context, a netip.Addr) error
	// DelAddr unbinds a; an address not bound is not an error.
	DelAddr(ctx context.Context, a netip.Addr) error
	// Remove deletes the interface and its addresses; a missing one is not an error.
	Remove(ctx context.Context) error
}

// netlinkLinks is Links over the kernel's rtnetlink.
type netlinkLinks struct{}

// Ensure implements Links.
func (netlinkLinks) Ensure(context.Context) error {
	if _, err := netlink.LinkByName(DeviceName); err == nil {
		return nil
	}
	err := netlink.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: DeviceName}})
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("creating dummy interface %s: %w", DeviceName, err)
	}
	return nil
}

// Addrs implements Links.
func (netlinkLinks) Addrs(_ context.Context, f model.Family) ([]netip.Addr, error) {
	link, err := netlink.LinkByName(DeviceName)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, nil
		}
		return nil, err
	}
	fam := unix.AF_INET
	if f == model.IPv6 {
		fam = unix.AF_INET6
	}
	list, err := netlink.AddrList(link, fam)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range list {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && !ip.IsLinkLocalUnicast() {
			out = append(out, ip.Unmap())
		}
	}
	return out, nil
}

// hostAddr returns a as a netlink address of one host.
func hostAddr(a netip.Addr) *netlink.Addr {
	bits := 32
	if a.Is6() {
		bits = 128
	}
	return &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(bits, bits)}, Flags: unix.IFA_F_NODAD}
}

// AddAddr implements Links.
func (netlinkLinks) AddAddr(_ context.Context, a netip.Addr) error {
	link, err := netlink.LinkByName(DeviceName)
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(link, hostAddr(a)); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

// DelAddr implements Links.
func (netlinkLinks) DelAddr(_ context.Context, a netip.Addr) error {
	link, err := netlink.LinkByName(DeviceName)
	if err != nil {
		return err
	}
	if err := netlink.AddrDel(link, hostAddr(a)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return err
	}
	return nil
}

// Remove implements Links.
func (netlinkLinks) Remove(context.Context) error {
	link, err := netlink.LinkByName(DeviceName)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return err
	}
	return netlink.LinkDel(link)
}
