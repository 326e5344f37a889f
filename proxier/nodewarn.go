package proxier

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/portico-dev/portico/model"
	"github.com/portico-dev/portico/proxier/compile"
)

// nodeProblem is something about this node that makes portico do less than the
// configuration asks: the Node object is missing, has no address of a family in use, or
// pod traffic cannot be told apart.
type nodeProblem struct {
	// key identifies the problem, so that it is logged once.
	key string
	msg string
	kv  []any
}

// warnNode logs the problems of the node that were not there at the last call, once
// each, and notes the ones that are gone.
func (p *Proxier) warnNode(ctx context.Context, node *corev1.Node, info compile.NodeInfo) {
	p.nodeWarn.warn(klog.FromContext(ctx), nodeProblems(p.opts.Node, node, info))
}

// nodeProblems returns the problems of the node: cfg is the configuration, node the Node
// object (nil when it does not exist) and info the settings resolved from them.
func nodeProblems(cfg compile.NodeConfig, node *corev1.Node, info compile.NodeInfo) []nodeProblem {
	if node == nil {
		return []nodeProblem{{key: "node", kv: []any{"node", cfg.Name},
			msg: "Warning: the Node object of this node does not exist (is --hostname-override its name?); until it does, " +
				"nodePortAddresses' \"primary\" selects no address, topology hints are not followed and NodeCIDR " +
				"detection has no pod CIDR"}}
	}
	var out []nodeProblem
	primary := compile.PrimaryIPs(node, cfg.BindAddress)
	for _, fam := range cfg.Families {
		if !inUse(info, fam) {
			continue
		}
		if _, ok := primary[fam]; !ok && cfg.NodePorts.Primary {
			out = append(out, nodeProblem{key: "address/" + fam.String(), kv: []any{"node", cfg.Name, "family", fam},
				msg: fmt.Sprintf("Warning: the Node object has no %s InternalIP or ExternalIP (and bindAddress is not one): "+
					"nodePortAddresses' \"primary\" selects no %s address, so NodePorts are not served on %s", fam, fam, fam)})
		}
		if p, ok := localProblem(cfg, fam, info); ok {
			out = append(out, p)
		}
	}
	return out
}

// localProblem returns the problem of family fam when detectLocalMode has no pod CIDR of
// it to tell pod traffic apart.
func localProblem(cfg compile.NodeConfig, fam model.Family, info compile.NodeInfo) (nodeProblem, bool) {
	if info.Tables[fam].LocalTraffic.Detects() {
		return nodeProblem{}, false
	}
	source := "clusterCIDR"
	if cfg.LocalTraffic.Mode == "NodeCIDR" {
		source = "the Node's spec.podCIDRs"
	}
	return nodeProblem{key: "local/" + fam.String(), kv: []any{"detectLocalMode", cfg.LocalTraffic.Mode, "family", fam},
		msg: fmt.Sprintf("Warning: %s has no %s CIDR, so %s traffic from pods cannot be told apart: traffic to ClusterIPs "+
			"from outside the cluster is not masqueraded, and pods reaching an externalTrafficPolicy: Local Service by its "+
			"external address are served by this node's endpoints only", source, fam, fam)}, true
}

// inUse reports whether the node has an address of family fam other than loopback and
// link-local ones: a single-stack node's other family is not worth a warning.
func inUse(info compile.NodeInfo, fam model.Family) bool {
	return slices.ContainsFunc(info.Tables[fam].Addrs, func(a netip.Addr) bool {
		return !a.IsLoopback() && !a.IsLinkLocalUnicast()
	})
}

// nodeWarner remembers which node problems are being reported. Its zero value is ready.
type nodeWarner struct {
	mu     sync.Mutex
	active map[string]bool
}

// warn logs the problems that are new since the last call and notes the ones that are
// gone.
func (w *nodeWarner) warn(logger klog.Logger, problems []nodeProblem) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := map[string]bool{}
	for _, p := range problems {
		now[p.key] = true
		if !w.active[p.key] {
			logger.Info(p.msg, p.kv...)
		}
	}
	for key := range w.active {
		if !now[key] {
			logger.Info("A node problem reported earlier is gone", "problem", key)
		}
	}
	w.active = now
}
