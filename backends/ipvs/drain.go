package ipvs

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"
)

// drainBound is how long a removed real server may keep its connections before it is
// deleted anyway (Backend.drainBound's default): IPVS's own idle timeout of an
// established TCP connection (900 s). A closed TCP connection stays in IPVS's table as
// inactive for its TIME_WAIT (2 minutes), so a real server whose clients all closed goes
// about 2 minutes after the last close.
const drainBound = 15 * time.Minute

// drain deletes the draining real servers whose connections ended (no active and no
// inactive connection left in IPVS's table) or that drained for drainBound. Until then a
// real server has weight 0: IPVS sends it no new connection and keeps the established ones.
func (fs *familyState) drain(k kernel) error {
	now := k.now()
	for _, key := range slices.SortedFunc(maps.Keys(fs.draining), vsKey.compare) {
		ds, err := k.h.GetDestinations(service(key, nil))
		if err != nil {
			return fmt.Errorf("listing the real servers of IPVS virtual server %s: %w", key, err)
		}
		conns := map[netip.AddrPort]int{}
		for _, d := range ds {
			conns[destAddr(d)] = d.ActiveConnections + d.InactiveConnections
		}
		for ap, since := range fs.draining[key] {
			n, present := conns[ap]
			if present && n > 0 && now.Sub(since) < k.drainBound {
				continue
			}
			if present {
				if err := k.h.DelDestination(service(key, nil), destination(ap, 0)); err != nil {
					return fmt.Errorf("deleting drained real server %s of IPVS virtual server %s: %w", ap, key, err)
				}
			}
			fs.stopDraining(key, ap)
		}
	}
	return nil
}

// pending reports whether real servers are still draining.
func (fs *familyState) pending() bool { return len(fs.draining) > 0 }
