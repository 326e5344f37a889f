package nodesetup

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/klog/v2"
)

// Kernel versions that decide what ipvs mode does with net.ipv4.vs.conn_reuse_mode: the
// sysctl exists from 4.1, and from 5.9 its default no longer breaks ipvs mode.
var (
	connReuseMinKernel   = version.MustParseGeneric("4.1")
	connReuseFixedKernel = version.MustParseGeneric("5.9")
)

// osReleasePath is the kernel's version under the root.
const osReleasePath = "proc/sys/kernel/osrelease"

// applyMode sets the sysctls of the proxy mode, in kube-proxy's order.
func (n *Node) applyMode(ctx context.Context, s Settings) error {
	if s.RouteLocalnet {
		klog.FromContext(ctx).Info("Setting route_localnet=1 so that NodePorts answer on 127.0.0.1; to avoid it, " +
			"set iptables.localhostNodePorts to false or leave 127.0.0.0/8 out of nodePortAddresses")
		if err := n.ensureSysctl(ctx, "iptables.localhostNodePorts", "net.ipv4.conf.all.route_localnet", 1); err != nil {
			return err
		}
	}
	if !s.IPVS {
		return nil
	}
	sysctls, err := n.ipvsSysctls(ctx, s.StrictARP)
	if err != nil {
		return err
	}
	for _, sc := range sysctls {
		if err := n.ensureSysctl(ctx, sc.field, sc.name, sc.value); err != nil {
			return err
		}
	}
	return nil
}

// ipvsSysctls returns the sysctls ipvs mode sets: connection tracking of IPVS
// connections, conn_reuse_mode 0 on the kernels where its default breaks ipvs mode
// (4.1 to 5.8), the expiry of connections to removed destinations, forwarding, and with
// strictARP the ARP replies limited to the interface's own addresses.
func (n *Node) ipvsSysctls(ctx context.Context, strictARP bool) ([]sysctl, error) {
	const field = "mode ipvs"
	out := []sysctl{{field, "net.ipv4.vs.conntrack", 1}}
	data, err := n.files.read(osReleasePath)
	if err != nil {
		return nil, fmt.Errorf("%s: reading the kernel version: %w", field, err)
	}
	kernel, err := version.ParseGeneric(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("%s: parsing the kernel version %q: %w", field, strings.TrimSpace(string(data)), err)
	}
	switch {
	case kernel.LessThan(connReuseMinKernel):
		klog.FromContext(ctx).Error(nil, "The kernel has no net.ipv4.vs.conn_reuse_mode; leaving it", "kernel", kernel, "minimum", connReuseMinKernel)
	case kernel.LessThan(connReuseFixedKernel):
		out = append(out, sysctl{field, "net.ipv4.vs.conn_reuse_mode", 0})
	}
	out = append(out,
		sysctl{field, "net.ipv4.vs.expire_nodest_conn", 1},
		sysctl{field, "net.ipv4.vs.expire_quiescent_template", 1},
		sysctl{field, "net.ipv4.ip_forward", 1},
	)
	if strictARP {
		out = append(out,
			sysctl{"ipvs.strictARP", "net.ipv4.conf.all.arp_ignore", 1},
			sysctl{"ipvs.strictARP", "net.ipv4.conf.all.arp_announce", 2},
		)
	}
	return out, nil
}
