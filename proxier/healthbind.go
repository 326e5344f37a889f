package proxier

import (
	"slices"

	"github.com/portico-dev/portico/model"
	"github.com/portico-dev/portico/proxier/compile"
	"github.com/portico-dev/portico/proxier/health"
)

// healthBinder is a ServiceHealthSyncer that listens only where it is told to;
// *health.ServiceHealth is one.
type healthBinder interface {
	SetBind(binds map[model.Family]health.Bind)
}

// bindHealthChecks tells the healthCheckNodePort servers where to listen: on the node
// addresses that NodePorts answer on, as kube-proxy does (nodePortAddresses).
func (p *Proxier) bindHealthChecks(info compile.NodeInfo) {
	if hb, ok := p.opts.ServiceHealth.(healthBinder); ok {
		hb.SetBind(healthBinds(info))
	}
}

// healthBinds returns, per family, the node's addresses that nodePortAddresses selects:
// every address of the family when it selects them all, else the selected addresses
// that are assigned to the node (a Node's primary IP may not be). A family the node has
// no address of is left out.
func healthBinds(info compile.NodeInfo) map[model.Family]health.Bind {
	out := map[model.Family]health.Bind{}
	for fam, np := range info.NodePorts {
		local := info.Tables[fam].Addrs
		if len(local) == 0 {
			continue
		}
		if np.Any {
			out[fam] = health.Bind{Any: true}
			continue
		}
		var b health.Bind
		for _, a := range np.Addrs {
			if slices.Contains(local, a) {
				b.Addrs = append(b.Addrs, a)
			}
		}
		out[fam] = b
	}
	return out
}
