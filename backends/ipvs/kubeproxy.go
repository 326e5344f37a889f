package ipvs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
)

// KubeProxyDevice is the dummy interface upstream kube-proxy's ipvs mode binds Service
// addresses to.
const KubeProxyDevice = "kube-ipvs0"

// procIPVS exists while the kernel has IPVS loaded (in the reading thread's namespace).
const procIPVS = "/proc/net/ip_vs"

// RemoveKubeProxy deletes what upstream kube-proxy's ipvs mode left in IPVS: the virtual
// servers on an address bound to kube-ipvs0 (ClusterIPs, external and load-balancer IPs)
// and those on any other address whose protocol and port are among nodePorts (protocol
// "tcp", "udp" or "sctp" → ports, read from kube-proxy's NodePort ipsets), except the
// ones portico owns; then kube-ipvs0 itself. A kernel without IPVS loaded is not asked
// (which would load the module): only kube-ipvs0 is removed, if it exists. It returns the
// number of virtual servers deleted and whether kube-ipvs0 was removed.
func (b *Backend) RemoveKubeProxy(ctx context.Context, nodePorts map[string]map[uint16]bool) (int, bool, error) {
	bound, err := kubeProxyAddrs()
	if err != nil {
		return 0, false, err
	}
	n := 0
	if _, statErr := os.Stat(procIPVS); statErr == nil {
		if n, err = b.removeKubeProxyServices(ctx, bound, nodePorts); err != nil {
			return n, false, err
		}
	}
	removed, err := removeKubeProxyDevice()
	return n, removed, err
}

// removeKubeProxyServices deletes kube-proxy's virtual servers (see RemoveKubeProxy).
func (b *Backend) removeKubeProxyServices(ctx context.Context, bound map[netip.Addr]bool, nodePorts map[string]map[uint16]bool) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k, err := b.kernel(0)
	if err != nil {
		return 0, err
	}
	own, err := b.ownership(ctx, k)
	if err != nil {
		return 0, err
	}
	svcs, err := k.h.GetServices()
	if err != nil {
		return 0, fmt.Errorf("listing the IPVS virtual servers: %w", err)
	}
	n := 0
	for _, s := range svcs {
		key, ok := keyOf(s)
		if !ok || own.owns(key) {
			continue
		}
		if !bound[key.addr] && !nodePorts[strings.ToLower(key.proto.String())][key.port] {
			continue
		}
		if err := k.h.DelService(s); err != nil {
			return n, fmt.Errorf("deleting kube-proxy's IPVS virtual server %s: %w", key, err)
		}
		n++
	}
	for _, fs := range b.fams {
		fs.reset() // the next sync compares with the kernel again
	}
	return n, nil
}

// kubeProxyAddrs returns the addresses bound to kube-ipvs0 (none if it does not exist).
func kubeProxyAddrs() (map[netip.Addr]bool, error) {
	out := map[netip.Addr]bool{}
	link, err := kubeProxyLink()
	if link == nil {
		return out, err
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("listing the addresses of %s: %w", KubeProxyDevice, err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out[ip.Unmap()] = true
		}
	}
	return out, nil
}

// removeKubeProxyDevice deletes kube-ipvs0 (and so its addresses) if it exists.
func removeKubeProxyDevice() (bool, error) {
	link, err := kubeProxyLink()
	if link == nil {
		return false, err
	}
	if err := netlink.LinkDel(link); err != nil {
		return false, fmt.Errorf("deleting %s: %w", KubeProxyDevice, err)
	}
	return true, nil
}

// kubeProxyLink returns kube-ipvs0 (nil, and no error, when it does not exist).
func kubeProxyLink() (netlink.Link, error) {
	link, err := netlink.LinkByName(KubeProxyDevice)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, nil
		}
		return nil, fmt.Errorf("looking up %s: %w", KubeProxyDevice, err)
	}
	return link, nil
}
