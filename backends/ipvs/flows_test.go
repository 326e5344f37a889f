package ipvs

import (
	"net/netip"
	"slices"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/backends/backendtest"
	"github.com/portico-dev/portico/backends/ipvs/ipvstest"
	"github.com/portico-dev/portico/backends/nftables/nfttrace"
	"github.com/portico-dev/portico/model"
)

// TestFlows runs the shared packet-flow table through the ipvs backend's rules: the
// nftables table traced by nfttrace, with IPVS as a stage of local input (priority 98)
// and local output (-98) that rewrites a packet addressed to a virtual server to one of
// its real servers of non-zero weight, as the kernel's ip_vs hooks do.
func TestFlows(t *testing.T) {
	backendtest.RunFlows(t, backendtest.Subject{
		Mode: Name,
		New: func(t *testing.T, host backendtest.Host) (backends.Backend, func(model.Family) backendtest.Tracer) {
			e := newEnv(t, backends.Options{MasqueradeBit: 14})
			return e.b, func(f model.Family) backendtest.Tracer {
				h := host
				h.LocalAddrs = slices.Clone(host.LocalAddrs)
				for a := range e.links.addrs {
					h.LocalAddrs = append(h.LocalAddrs, a)
				}
				return nfttrace.NewWithStages(e.nft[f], f, h, ipvsStages(e.h)...)
			}
		},
	})
}

// ipvsStages are IPVS's hooks over the fake's virtual servers.
func ipvsStages(h *ipvstest.Fake) []nfttrace.Stage {
	lookup := func(proto model.Protocol, dst netip.AddrPort) ([]netip.AddrPort, bool, bool) {
		s := service(vsKey{dst.Addr(), proto, dst.Port()}, nil)
		svcs, _ := h.GetServices()
		for _, have := range svcs {
			if k, ok := keyOf(have); !ok || k != (vsKey{dst.Addr(), proto, dst.Port()}) {
				continue
			}
			ds, err := h.GetDestinations(s)
			if err != nil {
				return nil, false, false
			}
			var out []netip.AddrPort
			for _, d := range ds {
				if d.Weight > 0 {
					out = append(out, destAddr(d))
				}
			}
			return out, have.Flags&flagPersistent != 0, true
		}
		return nil, false, false
	}
	return []nfttrace.Stage{
		{Hook: knftables.InputHook, Priority: 98, Lookup: lookup},
		{Hook: knftables.OutputHook, Priority: -98, Lookup: lookup},
	}
}
