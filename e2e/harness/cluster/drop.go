package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// dropTable is the nftables table DropTraffic adds in the api namespace.
const dropTable = "e2e-drop"

// DropTraffic silently drops, inside the api namespace, the packets between the
// apiserver's namespace and peer, in both directions: no RST and no ICMP error, as a
// network partition would. With ports, only the TCP connections that peer opened from
// those source ports are dropped: connections that go silent while new ones still work,
// as when the far end of a connection vanished. It returns a function that removes the
// rules; the rules also go with the namespace.
func (c *Cluster) DropTraffic(ctx context.Context, peer netip.Addr, ports ...uint16) (restore func(context.Context) error, err error) {
	family := "ip"
	if peer.Is6() {
		family = "ip6"
	}
	in, out := fmt.Sprintf("%s saddr %s", family, peer), fmt.Sprintf("%s daddr %s", family, peer)
	if len(ports) > 0 {
		set := portSet(ports)
		in += " tcp sport " + set
		out += " tcp dport " + set
	}
	rules := "add table inet " + dropTable + "\n" +
		"add chain inet " + dropTable + " in { type filter hook input priority -10; policy accept; }\n" +
		"add chain inet " + dropTable + " out { type filter hook output priority -10; policy accept; }\n" +
		"add rule inet " + dropTable + " in " + in + " drop\n" +
		"add rule inet " + dropTable + " out " + out + " drop\n"
	if err := c.nft(ctx, rules); err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		return c.nft(ctx, "delete table inet "+dropTable+"\n")
	}, nil
}

// portSet renders ports as an nft anonymous set.
func portSet(ports []uint16) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	return "{ " + strings.Join(s, ", ") + " }"
}

// nft runs an nft script in the api namespace.
func (c *Cluster) nft(ctx context.Context, script string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := c.opts.Topology.Exec(ctx, c.apiNS(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("cluster: nft in %s: %w: %s", c.opts.Topology.Name(c.apiNS()), err, out)
	}
	return nil
}
