package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// builder holds one netlink handle per namespace while the topology's links are made.
type builder struct {
	t       *Topology
	handles map[string]*netlink.Handle // short name -> handle
}

// build creates links, addresses, routes and sysctls in the created namespaces.
func (t *Topology) build(ctx context.Context) error {
	b := &builder{t: t, handles: map[string]*netlink.Handle{}}
	defer b.close()
	steps := []func() error{b.sysctls, b.loopbacks, b.apiLink, b.lan, b.nodes, b.client}
	for _, step := range steps {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("netns: create: %w", err)
		}
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) close() {
	for _, h := range b.handles {
		h.Close()
	}
}

// h returns the netlink handle of a namespace, opening it on first use.
func (b *builder) h(short string) (*netlink.Handle, error) {
	if h, ok := b.handles[short]; ok {
		return h, nil
	}
	ns := b.t.NS(short)
	if !ns.IsOpen() { // netlink would fall back to the current (root) namespace
		return nil, fmt.Errorf("netns: namespace %s was not created", b.t.Name(short))
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netns: netlink handle in %s: %w", b.t.Name(short), err)
	}
	b.handles[short] = h
	return h, nil
}

// sysctls disables duplicate address detection everywhere (no tentative addresses) and
// turns forwarding on in the node namespaces, where bridged pod traffic also goes through
// netfilter (br_netfilter), as a bridge-CNI node needs for Services. It runs before any link exists so that
// new links inherit the "default" values.
func (b *builder) sysctls() error {
	common := map[string]string{
		"net/ipv6/conf/all/accept_dad":     "0",
		"net/ipv6/conf/default/accept_dad": "0",
		"net/ipv6/conf/all/disable_ipv6":   "0",
		"net/ipv4/conf/all/rp_filter":      "0",
		"net/ipv4/conf/default/rp_filter":  "0",
	}
	router := map[string]string{
		"net/ipv4/ip_forward":                  "1",
		"net/ipv6/conf/all/forwarding":         "1",
		"net/ipv6/conf/default/forwarding":     "1",
		"net/ipv4/conf/all/send_redirects":     "0",
		"net/ipv4/conf/default/send_redirects": "0",
		"net/bridge/bridge-nf-call-iptables":   "1",
		"net/bridge/bridge-nf-call-ip6tables":  "1",
	}
	for _, short := range b.t.spec.shortNames() {
		vals := common
		if b.t.spec.node(short) != nil {
			vals = merge(common, router)
		}
		if err := b.t.Do(short, func() error { return writeSysctls(vals) }); err != nil {
			return fmt.Errorf("netns: sysctls in %s: %w", b.t.Name(short), err)
		}
	}
	return nil
}

func merge(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// writeSysctls writes /proc/sys values; called on a thread inside the target namespace.
func writeSysctls(vals map[string]string) error {
	for k, v := range vals {
		if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", k, v, err)
		}
	}
	return nil
}

// loopbacks brings lo up in every namespace.
func (b *builder) loopbacks() error {
	for _, short := range b.t.spec.shortNames() {
		if err := b.up(short, "lo"); err != nil {
			return err
		}
	}
	return nil
}

// up sets a link up by name.
func (b *builder) up(short, link string) error {
	h, err := b.h(short)
	if err != nil {
		return err
	}
	l, err := h.LinkByName(link)
	if err != nil {
		return fmt.Errorf("netns: %s in %s: %w", link, b.t.Name(short), err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("netns: set %s up in %s: %w", link, b.t.Name(short), err)
	}
	return nil
}

// veth creates a veth pair with end name in ns and end peer in peerNS, both up.
func (b *builder) veth(ns, name, peerNS, peer string) error {
	h, err := b.h(ns)
	if err != nil {
		return err
	}
	peerFd := b.t.NS(peerNS)
	if !peerFd.IsOpen() {
		return fmt.Errorf("netns: namespace %s was not created", b.t.Name(peerNS))
	}
	v := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: name},
		PeerName:      peer,
		PeerNamespace: netlink.NsFd(int(peerFd)),
	}
	if err := h.LinkAdd(v); err != nil {
		return fmt.Errorf("netns: veth %s/%s <-> %s/%s: %w", b.t.Name(ns), name, b.t.Name(peerNS), peer, err)
	}
	return errors.Join(b.up(ns, name), b.up(peerNS, peer))
}

// bridge creates a bridge without multicast snooping and sets it up.
func (b *builder) bridge(ns, name string) error {
	h, err := b.h(ns)
	if err != nil {
		return err
	}
	off := false
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}, MulticastSnooping: &off}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("netns: bridge %s in %s: %w", name, b.t.Name(ns), err)
	}
	return b.up(ns, name)
}

// attach enslaves a port to a bridge in the same namespace, optionally in hairpin mode.
func (b *builder) attach(ns, port, bridge string, hairpin bool) error {
	h, err := b.h(ns)
	if err != nil {
		return err
	}
	p, err := h.LinkByName(port)
	if err != nil {
		return fmt.Errorf("netns: %s in %s: %w", port, b.t.Name(ns), err)
	}
	br, err := h.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("netns: %s in %s: %w", bridge, b.t.Name(ns), err)
	}
	if err := h.LinkSetMaster(p, br); err != nil {
		return fmt.Errorf("netns: attach %s to %s in %s: %w", port, bridge, b.t.Name(ns), err)
	}
	if hairpin {
		if err := h.LinkSetHairpin(p, true); err != nil {
			return fmt.Errorf("netns: hairpin on %s in %s: %w", port, b.t.Name(ns), err)
		}
	}
	return nil
}

// addrs adds addresses (skipping zero prefixes) to a link, without DAD.
func (b *builder) addrs(ns, link string, prefixes ...netip.Prefix) error {
	h, err := b.h(ns)
	if err != nil {
		return err
	}
	l, err := h.LinkByName(link)
	if err != nil {
		return fmt.Errorf("netns: %s in %s: %w", link, b.t.Name(ns), err)
	}
	for _, p := range prefixes {
		if !p.IsValid() {
			continue
		}
		a := &netlink.Addr{IPNet: IPNet(p), Flags: unix.IFA_F_NODAD}
		if err := h.AddrAdd(l, a); err != nil {
			return fmt.Errorf("netns: add %s to %s in %s: %w", p, link, b.t.Name(ns), err)
		}
	}
	return nil
}

// routes adds gatewayed routes in a namespace.
func (b *builder) routes(ns string, routes []Route) error {
	h, err := b.h(ns)
	if err != nil {
		return err
	}
	for _, r := range routes {
		nr := &netlink.Route{Dst: IPNet(r.Dst.Masked()), Gw: net.IP(r.Via.AsSlice())}
		if err := h.RouteAdd(nr); err != nil {
			return fmt.Errorf("netns: route %s via %s in %s: %w", r.Dst, r.Via, b.t.Name(ns), err)
		}
	}
	return nil
}

// defaultRoutes adds default routes through the given gateways (zero ones skipped).
func (b *builder) defaultRoutes(ns string, gws ...netip.Addr) error {
	var rs []Route
	for _, gw := range gws {
		switch {
		case !gw.IsValid():
		case gw.Is4():
			rs = append(rs, Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: gw})
		default:
			rs = append(rs, Route{Dst: netip.MustParsePrefix("::/0"), Via: gw})
		}
	}
	return b.routes(ns, rs)
}

// IPNet converts a prefix to the net.IPNet netlink takes (the address is kept as is).
func IPNet(p netip.Prefix) *net.IPNet {
	a := p.Addr()
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(p.Bits(), a.BitLen())}
}

// apiLink joins the api namespace to its node.
func (b *builder) apiLink() error {
	api := b.t.spec.API
	if err := b.veth(api.Name, "eth0", api.Node, "api0"); err != nil {
		return err
	}
	return errors.Join(
		b.addrs(api.Name, "eth0", api.Addr),
		b.addrs(api.Node, "api0", api.NodeAddr),
		b.routes(api.Name, api.Routes),
	)
}

// lan creates the switch bridge and one port per node and for the client; each port is
// named after the namespace at its other end.
func (b *builder) lan() error {
	lan := b.t.spec.LAN
	if err := b.bridge(lan.Name, lan.Bridge); err != nil {
		return err
	}
	hosts := []string{}
	for _, n := range b.t.spec.Nodes {
		hosts = append(hosts, n.Name)
	}
	hosts = append(hosts, b.t.spec.Client.Name)
	for _, host := range hosts {
		if err := b.veth(host, "eth0", lan.Name, host); err != nil {
			return err
		}
		if err := b.attach(lan.Name, host, lan.Bridge, false); err != nil {
			return err
		}
	}
	return nil
}

// nodes addresses each node's eth0, creates its pod bridge and pods, and its routes.
func (b *builder) nodes() error {
	for _, n := range b.t.spec.Nodes {
		if err := b.addrs(n.Name, "eth0", n.IPv4, n.IPv6); err != nil {
			return err
		}
		if err := b.bridge(n.Name, n.Bridge); err != nil {
			return err
		}
		if err := b.addrs(n.Name, n.Bridge, n.BridgeIPv4, n.BridgeIPv6); err != nil {
			return err
		}
		for _, p := range n.Pods {
			if err := b.pod(n, p); err != nil {
				return err
			}
		}
		if err := b.routes(n.Name, n.Routes); err != nil {
			return err
		}
	}
	return nil
}

// pod wires one pod: eth0 in the pod, its peer on the node's bridge (hairpin on, so a
// pod can reach itself through a service), addresses and default routes.
func (b *builder) pod(n NodeSpec, p PodSpec) error {
	port := podPort(p.Name)
	if err := b.veth(p.Name, "eth0", n.Name, port); err != nil {
		return err
	}
	if err := b.attach(n.Name, port, n.Bridge, true); err != nil {
		return err
	}
	var v4, v6 netip.Prefix
	if p.IPv4.IsValid() {
		v4 = netip.PrefixFrom(p.IPv4, n.BridgeIPv4.Bits())
	}
	if p.IPv6.IsValid() {
		v6 = netip.PrefixFrom(p.IPv6, n.BridgeIPv6.Bits())
	}
	if err := b.addrs(p.Name, "eth0", v4, v6); err != nil {
		return err
	}
	var gw4, gw6 netip.Addr
	if v4.IsValid() {
		gw4 = n.BridgeIPv4.Addr()
	}
	if v6.IsValid() {
		gw6 = n.BridgeIPv6.Addr()
	}
	return b.defaultRoutes(p.Name, gw4, gw6)
}

// client addresses the client's eth0 and adds its routes.
func (b *builder) client() error {
	c := b.t.spec.Client
	if err := b.addrs(c.Name, "eth0", c.Addrs...); err != nil {
		return err
	}
	return b.routes(c.Name, c.Routes)
}
