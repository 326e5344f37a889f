package nftables

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// A transaction that only replaces endpoints (the common change: a pod replaced, a
// Deployment rolled, a Service scaled within its size class) is sent to the kernel over
// netlink by portico itself, as one nf_tables batch, instead of through `nft -f`. nft
// reads the table's chains and sets before it sends anything: at 10,000 Services that
// costs it ~60 ms and ~15 MB for a transaction of two elements, which the kernel then
// commits in well under a millisecond. Every other transaction (chains, rules, shared
// sets and maps) still goes through nft, which type-checks what it writes.

// netlinkTimeout bounds the wait for the kernel's answer to one batch.
const netlinkTimeout = 30 * time.Second

// endpointOpsOnly reports whether w holds endpoint-map element operations and nothing
// else.
func (w *txWriter) endpointOpsOnly() bool {
	others := len(w.setup) + len(w.objects) + len(w.elDel) + len(w.elAdd) + len(w.flushes) + len(w.deletes)
	return others == 0 && len(w.epDel)+len(w.epAdd) > 0
}

// execEndpointOps applies endpoint-map element operations; a variable so that tests can
// watch or fail it.
var execEndpointOps = runEndpointOps

// runEndpointOps deletes del and adds add, both endpoint-map elements of portico's table
// of family f, in one nf_tables batch over a netlink socket opened for it in the calling
// thread's network namespace (as `nft` would run in it). The batch is atomic: if the
// kernel refuses one operation (an element that is not there, a map that is gone), it
// changes nothing, like a failed `nft -f`.
func runEndpointOps(ctx context.Context, f fam, del, add []epOp) error {
	b := newBatch(f)
	for _, g := range groupByMap(del, len(del)) {
		if err := b.deleteEndpoints(f, g); err != nil {
			return fmt.Errorf("nf_tables netlink: deleting elements of map %s: %w", g[0].m, err)
		}
	}
	for _, g := range groupByMap(add, len(add)) {
		if err := b.addEndpoints(f, g); err != nil {
			return fmt.Errorf("nf_tables netlink: adding elements to map %s: %w", g[0].m, err)
		}
	}
	if err := runBatch(ctx, b); err != nil {
		return fmt.Errorf("%s: %w", describeOps(f, del, add), err)
	}
	return nil
}

// Netlink sends a batch in one message of the socket: the kernel refuses one larger than
// the socket's send buffer (EMSGSIZE). A cold load's chunk carries thousands of endpoint
// elements (~6,000 at 10,000 Services), more than the default buffer (208 KiB) holds.
const (
	batchOverhead    = 4096    // batch begin and end markers, with room to spare
	defaultSendBytes = 1 << 17 // below this, the socket's default buffer is kept
)

// forceSendBuffer raises the send buffer of c to hold a batch of size bytes
// (SO_SNDBUFFORCE: portico runs with CAP_NET_ADMIN, which nft needs as well).
func forceSendBuffer(c *netlink.Conn, size int) error {
	if size <= defaultSendBytes {
		return nil
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 2*size)
		if serr == nil {
			// An error answer repeats the request unless capped: one of a large message
			// would not fit the receive buffer and be lost (ENOBUFS instead of the error).
			serr = unix.SetsockoptInt(int(fd), unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("raising the netlink send buffer to %d bytes: %w", 2*size, serr)
	}
	return nil
}

// groupByMap returns ops grouped by map, maps in name order, each group at most limit
// long (an `add element` command); the groups may share ops' array.
func groupByMap(ops []epOp, limit int) [][]epOp {
	byMap := func(a, b epOp) int { return strings.Compare(a.m, b.m) }
	sorted := ops // a full sync's operations come in map order (fullOrder)
	if !slices.IsSortedFunc(ops, byMap) {
		sorted = slices.Clone(ops)
		slices.SortStableFunc(sorted, byMap)
	}
	var out [][]epOp
	for start := 0; start < len(sorted); {
		end := start + 1
		for end < len(sorted) && sorted[end].m == sorted[start].m && end-start < limit {
			end++
		}
		out = append(out, sorted[start:end])
		start = end
	}
	return out
}

// describeOps summarises a batch for an error message: the family, and the maps and
// slots it touched (the first few).
func describeOps(f fam, del, add []epOp) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s %s: %d deletion(s), %d addition(s)", f.ip, tableName, len(del), len(add))
	for i, o := range slices.Concat(del, add) {
		if i == 4 {
			b.WriteString(", …")
			break
		}
		fmt.Fprintf(&b, ", %s slot %d", o.m, o.slot)
	}
	return b.String()
}
