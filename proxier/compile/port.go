package compile

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/portico-dev/portico/endpoints"
	"github.com/portico-dev/portico/model"
)

// port compiles Service port i for family fam; nil when the port is invalid.
func (c *serviceCompiler) port(i int, fam model.Family, clusterIP netip.Addr, s shared, eps map[endpoints.PortKey][]endpoints.Endpoint) *model.ServicePort {
	p := c.svc.Spec.Ports[i]
	path := fmt.Sprintf("spec.ports[%d]", i)
	proto, err := model.ParseProtocol(string(p.Protocol))
	if err != nil {
		c.fail(path+".protocol", p.Protocol, "is not one of TCP, UDP, SCTP")
		return nil
	}
	if p.Port < 1 || p.Port > 65535 {
		c.fail(path+".port", p.Port, "is out of range 1-65535")
		return nil
	}
	if p.NodePort < 0 || p.NodePort > 65535 {
		c.fail(path+".nodePort", p.NodePort, "is out of range 0-65535")
		return nil
	}
	sp := &model.ServicePort{
		Name: model.ServicePortName{
			Namespace: c.name.Namespace, Name: c.name.Name, Port: p.Name, Protocol: proto,
		},
		Frontends:           c.frontends(fam, clusterIP, uint16(p.Port), uint16(p.NodePort), s),
		Affinity:            s.affinity,
		HealthCheckNodePort: s.healthCheck,
		Scheduler:           s.scheduler,
	}
	if len(s.lbIPs) > 0 && len(s.sourceRanges) > 0 {
		sp.SourceRanges = allowedSources(s)
	}
	pol := c.policy(sp, fam, s)
	pol.categorize(sp, eps[endpoints.PortKey{Name: p.Name, Protocol: proto}], c.topology())
	return sp.Seal()
}

// allowedSources returns the sources allowed to reach the LoadBalancer frontends: the
// source ranges and the load balancer's own ingress IPs (a cloud load balancer that SNATs
// to its own address, or a client hairpinning through it, must not be locked out).
func allowedSources(s shared) []netip.Prefix {
	out := slices.Clone(s.sourceRanges)
	for _, ip := range s.lbIPs {
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return out
}

// frontends lists every address and port the Service port answers on.
func (c *serviceCompiler) frontends(fam model.Family, clusterIP netip.Addr, port, nodePort uint16, s shared) []model.Frontend {
	fes := []model.Frontend{{Kind: model.ClusterIP, Addr: clusterIP, Port: port}}
	for _, ip := range s.externalIPs {
		fes = append(fes, model.Frontend{Kind: model.ExternalIP, Addr: ip, Port: port})
	}
	for _, ip := range s.lbIPs {
		fes = append(fes, model.Frontend{Kind: model.LoadBalancer, Addr: ip, Port: port})
	}
	if nodePort == 0 {
		return fes
	}
	np := c.node.NodePorts[fam]
	if np.Any {
		fes = append(fes, model.Frontend{Kind: model.NodePort, Port: nodePort})
	}
	for _, ip := range np.Addrs {
		fes = append(fes, model.Frontend{Kind: model.NodePort, Addr: ip, Port: nodePort})
	}
	return fes
}

func (c *serviceCompiler) topology() endpoints.Topology {
	return endpoints.Topology{NodeName: c.node.Name, Zone: c.node.Zone}
}
