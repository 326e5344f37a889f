package compile

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/portico-dev/portico/endpoints"
	"github.com/portico-dev/portico/model"
)

const (
	// ProxyName is the value of LabelServiceProxyName that selects portico.
	ProxyName = "portico"
	// LabelServiceProxyName hands a Service to a specific service proxy; Services that
	// carry it with another value are left alone.
	LabelServiceProxyName = "service.kubernetes.io/service-proxy-name"
	// defaultAffinityTimeout is the API's default for sessionAffinityConfig.clientIP.
	defaultAffinityTimeout = 10800 * time.Second
)

// Result is one compiled Service: its ports per family, or its ExternalName entry.
type Result struct {
	Ports        map[model.Family][]*model.ServicePort
	ExternalName *model.ExternalName
}

// SkipReason says why a Service gets no rules at all, or "" when it gets some.
func SkipReason(svc *corev1.Service) string {
	if v, ok := svc.Labels[LabelServiceProxyName]; ok && v != ProxyName {
		return fmt.Sprintf("label %s=%q hands it to another proxy", LabelServiceProxyName, v)
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return ""
	}
	if svc.Spec.ClusterIP == corev1.ClusterIPNone {
		return "headless"
	}
	if svc.Spec.ClusterIP == "" && len(svc.Spec.ClusterIPs) == 0 {
		return "no cluster IP allocated yet"
	}
	return ""
}

// Service compiles svc and its EndpointSlices for every family of node. Problems with
// single fields are returned as *Problem errors naming the object, the field and the
// value; the rest of the Service is still compiled.
func Service(svc *corev1.Service, slices []*discoveryv1.EndpointSlice, node NodeInfo) (Result, []error) {
	if SkipReason(svc) != "" {
		return Result{}, nil
	}
	name := model.ServiceName{Namespace: svc.Namespace, Name: svc.Name}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return Result{ExternalName: externalName(svc, name)}, nil
	}
	c := &serviceCompiler{svc: svc, name: name, node: node}
	res := Result{Ports: map[model.Family][]*model.ServicePort{}}
	for fam := range node.Tables {
		if ports := c.family(fam, slices); len(ports) > 0 {
			res.Ports[fam] = ports
		}
	}
	return res, c.errs
}

func externalName(svc *corev1.Service, name model.ServiceName) *model.ExternalName {
	en := &model.ExternalName{Service: name, Target: svc.Spec.ExternalName}
	for _, p := range svc.Spec.Ports {
		proto, _ := model.ParseProtocol(string(p.Protocol))
		en.Ports = append(en.Ports, model.ExternalNamePort{Name: p.Name, Port: uint16(p.Port), Protocol: proto})
	}
	return en
}

// serviceCompiler holds the state of compiling one Service.
type serviceCompiler struct {
	svc  *corev1.Service
	name model.ServiceName
	node NodeInfo
	errs []error
	// schedulerReported is set once an unknown IPVS scheduler was reported.
	schedulerReported bool
}

func (c *serviceCompiler) fail(path string, value any, reason string) {
	c.errs = append(c.errs, fieldError(c.name, path, value, reason))
}

// family compiles every port of the Service for one family.
func (c *serviceCompiler) family(fam model.Family, slices []*discoveryv1.EndpointSlice) []*model.ServicePort {
	clusterIP, ok := c.clusterIP(fam)
	if !ok {
		return nil
	}
	eps, errs := endpoints.Merge(slices, fam, c.node.Name)
	c.errs = append(c.errs, sliceProblems(c.name, errs)...)
	shared := c.sharedFields(fam)
	var out []*model.ServicePort
	for i := range c.svc.Spec.Ports {
		if sp := c.port(i, fam, clusterIP, shared, eps); sp != nil {
			out = append(out, sp)
		}
	}
	return out
}

// clusterIP returns the Service's cluster IP of family fam.
func (c *serviceCompiler) clusterIP(fam model.Family) (netip.Addr, bool) {
	ips := c.svc.Spec.ClusterIPs
	path := "spec.clusterIPs"
	if len(ips) == 0 {
		ips, path = []string{c.svc.Spec.ClusterIP}, "spec.clusterIP"
	}
	for i, s := range ips {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			c.fail(fmt.Sprintf("%s[%d]", path, i), s, "is not an IP address")
			continue
		}
		if ip = ip.Unmap(); fam.Contains(ip) {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// shared holds the per-family fields that every port of the Service has in common.
type shared struct {
	externalIPs   []netip.Addr
	lbIPs         []netip.Addr
	sourceRanges  []netip.Prefix
	internalLocal bool
	externalLocal bool
	affinity      model.Affinity
	healthCheck   uint16
	scheduler     string
}

func (c *serviceCompiler) sharedFields(fam model.Family) shared {
	spec := c.svc.Spec
	s := shared{
		externalIPs:   c.addrs(fam, "spec.externalIPs", spec.ExternalIPs),
		lbIPs:         c.loadBalancerIPs(fam),
		sourceRanges:  c.sourceRanges(fam),
		internalLocal: spec.InternalTrafficPolicy != nil && *spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal,
		affinity:      c.affinity(),
		scheduler:     c.scheduler(),
	}
	external := len(s.externalIPs) > 0 || len(s.lbIPs) > 0 || c.hasNodePorts()
	local := spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	s.externalLocal = external && local
	// A LoadBalancer's health check answers even before it has a frontend on this node
	// (no node ports, no ingress IP yet): its load balancer checks nodes while it is built.
	if local && spec.Type == corev1.ServiceTypeLoadBalancer && spec.HealthCheckNodePort > 0 && spec.HealthCheckNodePort <= 65535 {
		s.healthCheck = uint16(spec.HealthCheckNodePort)
	}
	return s
}

func (c *serviceCompiler) hasNodePorts() bool {
	for _, p := range c.svc.Spec.Ports {
		if p.NodePort > 0 {
			return true
		}
	}
	return false
}

func (c *serviceCompiler) addrs(fam model.Family, path string, in []string) []netip.Addr {
	var out []netip.Addr
	for i, s := range in {
		ip, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			c.fail(fmt.Sprintf("%s[%d]", path, i), s, "is not an IP address")
			continue
		}
		if ip = ip.Unmap(); fam.Contains(ip) {
			out = append(out, ip)
		}
	}
	return out
}

// loadBalancerIPs returns the VIP-mode ingress IPs of a LoadBalancer Service (ingress
// entries with ipMode: Proxy are reached through the load balancer, not the node).
func (c *serviceCompiler) loadBalancerIPs(fam model.Family) []netip.Addr {
	if c.svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return nil
	}
	var ips []string
	for _, ing := range c.svc.Status.LoadBalancer.Ingress {
		if ing.IP == "" || (ing.IPMode != nil && *ing.IPMode == corev1.LoadBalancerIPModeProxy) {
			continue
		}
		ips = append(ips, ing.IP)
	}
	return c.addrs(fam, "status.loadBalancer.ingress[].ip", ips)
}

// sourceRanges returns loadBalancerSourceRanges of family fam. As in kube-proxy, a zero
// CIDR allows everyone (same as no ranges).
func (c *serviceCompiler) sourceRanges(fam model.Family) []netip.Prefix {
	var out []netip.Prefix
	for i, s := range c.svc.Spec.LoadBalancerSourceRanges {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			c.fail(fmt.Sprintf("spec.loadBalancerSourceRanges[%d]", i), s, "is not a CIDR")
			continue
		}
		if !fam.Contains(p.Addr().Unmap()) {
			continue
		}
		if p.Bits() == 0 {
			return nil
		}
		out = append(out, p.Masked())
	}
	return out
}

// SchedulerAnnotation names the IPVS scheduler of a Service's virtual servers in ipvs
// mode, instead of ipvs.scheduler.
const SchedulerAnnotation = "portico.dev/ipvs-scheduler"

// scheduler returns the IPVS scheduler the Service asks for ("" for the default). An
// unknown one is reported (once, whatever the families) and replaced by the default.
func (c *serviceCompiler) scheduler() string {
	v, ok := c.svc.Annotations[SchedulerAnnotation]
	if !ok {
		return ""
	}
	v = strings.TrimSpace(v)
	if slices.Contains(model.IPVSSchedulers, v) {
		return v
	}
	if !c.schedulerReported {
		c.schedulerReported = true
		c.fail("metadata.annotations["+SchedulerAnnotation+"]", v,
			"is not an IPVS scheduler (one of "+strings.Join(model.IPVSSchedulers, ", ")+"); using the default scheduler")
	}
	return ""
}

func (c *serviceCompiler) affinity() model.Affinity {
	if c.svc.Spec.SessionAffinity != corev1.ServiceAffinityClientIP {
		return model.Affinity{}
	}
	cfg := c.svc.Spec.SessionAffinityConfig
	if cfg == nil || cfg.ClientIP == nil || cfg.ClientIP.TimeoutSeconds == nil {
		return model.Affinity{Timeout: defaultAffinityTimeout}
	}
	t := *cfg.ClientIP.TimeoutSeconds
	if t <= 0 || t > 86400 {
		c.fail("spec.sessionAffinityConfig.clientIP.timeoutSeconds", t, "is out of range 1-86400; using 10800")
		return model.Affinity{Timeout: defaultAffinityTimeout}
	}
	return model.Affinity{Timeout: time.Duration(t) * time.Second}
}
