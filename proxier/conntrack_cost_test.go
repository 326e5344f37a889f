//go:build e2e

package proxier

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/model"
)

// TestConntrackDeleteCost fills a fresh namespace's conntrack table with costEntries UDP
// entries and deletes the stale flow of one change: the kernel-filtered dump must return
// only that flow's entries (not the table), and the test logs what the deletion costs
// against one dump of the whole table (netlink.ConntrackDeleteFilters, the previous
// implementation).
func TestConntrackDeleteCost(t *testing.T) {
	defer backendtest.EnterFreshNetns(t, "conntrack")()
	h, err := netlink.NewHandle(unix.NETLINK_NETFILTER)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	const costEntries, staleEntries = 20000, 3
	for i := range costEntries {
		client := net.IPv4(10, 1, byte(i>>8), byte(i)).To4()
		ep := net.IPv4(10, 244, 2, 54).To4()
		if i < staleEntries {
			ep = net.IPv4(10, 244, 2, 53).To4()
		}
		f := &netlink.ConntrackFlow{
			FamilyType: unix.AF_INET,
			Forward:    netlink.IPTuple{Protocol: unix.IPPROTO_UDP, SrcIP: client, DstIP: net.IPv4(10, 96, 0, 53).To4(), SrcPort: 40000, DstPort: 53},
			Reverse:    netlink.IPTuple{Protocol: unix.IPPROTO_UDP, SrcIP: ep, DstIP: client, SrcPort: 5353, DstPort: 40000},
			TimeOut:    600,
		}
		if err := h.ConntrackCreate(netlink.ConntrackTable, unix.AF_INET, f); err != nil {
			t.Fatalf("creating entry %d: %v", i, err)
		}
	}
	all, err := h.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
	if err != nil || len(all) != costEntries {
		t.Fatalf("the table holds %d entries (%v), want %d", len(all), err, costEntries)
	}
	stale := flow("10.96.0.53:53>10.244.2.53:5353")
	c, err := openCtSocket(model.IPv4, time.Now().Add(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := c.dump(flowDumpFilter(stale))
	c.close()
	if err != nil || len(rows) != staleEntries {
		t.Fatalf("the filtered dump returned %d entries (%v), want the %d stale ones", len(rows), err, staleEntries)
	}
	const rounds = 20
	start := time.Now()
	for range rounds {
		if _, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, flowFilter(flow("10.96.0.53:53>10.244.2.99:5353"))); err != nil {
			t.Fatal(err)
		}
	}
	whole := time.Since(start) / rounds
	start = time.Now()
	for range rounds {
		if err := (NetlinkConntrack{}).DeleteUDP(context.Background(), model.IPv4, []StaleFlow{flow("10.96.0.53:53>10.244.2.99:5353")}); err != nil {
			t.Fatal(err)
		}
	}
	filtered := time.Since(start) / rounds
	start = time.Now()
	if err := (NetlinkConntrack{}).DeleteUDP(context.Background(), model.IPv4, []StaleFlow{stale}); err != nil {
		t.Fatal(err)
	}
	deleted := time.Since(start)
	left, err := h.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
	if err != nil || len(left) != costEntries-staleEntries {
		t.Fatalf("%d entries left (%v), want %d", len(left), err, costEntries-staleEntries)
	}
	t.Logf("%d entries: one stale flow looked up with a whole-table dump %v, with a kernel-filtered dump %v; deleting its %d entries %v",
		costEntries, whole, filtered, staleEntries, deleted)
}
