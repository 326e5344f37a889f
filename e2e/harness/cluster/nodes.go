package cluster

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portico-dev/portico/e2e/harness/netns"
)

// Well-known node labels.
const (
	LabelHostname = "kubernetes.io/hostname"
	LabelZone     = "topology.kubernetes.io/zone"
)

// NodeSpec describes a Node object.
type NodeSpec struct {
	// Name is the node name (and its hostname label and Hostname address).
	Name string
	// IPv4 and IPv6 are its InternalIP addresses; zero ones are left out.
	IPv4, IPv6 netip.Addr
	// PodCIDRs is spec.podCIDRs.
	PodCIDRs []netip.Prefix
	// Zone is its topology.kubernetes.io/zone label (left out when empty).
	Zone string
	// Labels are extra labels.
	Labels map[string]string
}

// NodesFromTopology returns one NodeSpec per node of the topology: its eth0 addresses,
// its bridge prefixes as pod CIDRs, and its zone.
func NodesFromTopology(topo *netns.Topology) []NodeSpec {
	var out []NodeSpec
	for _, n := range topo.Spec().Nodes {
		out = append(out, NodeSpec{
			Name:     n.Name,
			IPv4:     n.IPv4.Addr(),
			IPv6:     n.IPv6.Addr(),
			PodCIDRs: n.PodCIDRs(),
			Zone:     n.Zone,
		})
	}
	return out
}

// Nodes returns the NodeSpecs CreateNodes makes.
func (c *Cluster) Nodes() []NodeSpec { return c.opts.Nodes }

// CreateNodes creates (or updates) a Node object per NodeSpec, then sets its addresses
// and a Ready condition through the status subresource, as a kubelet would.
func (c *Cluster) CreateNodes(ctx context.Context) error {
	cs := c.Client()
	if cs == nil {
		return fmt.Errorf("cluster: create nodes: cluster not started")
	}
	for _, spec := range c.opts.Nodes {
		n, err := cs.CoreV1().Nodes().Create(ctx, nodeObject(spec), metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			n, err = cs.CoreV1().Nodes().Get(ctx, spec.Name, metav1.GetOptions{})
		}
		if err != nil {
			return fmt.Errorf("cluster: create node %s: %w", spec.Name, err)
		}
		n.Status = nodeStatus(spec)
		if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("cluster: node %s status: %w", spec.Name, err)
		}
	}
	return nil
}

// nodeObject builds the Node without its status.
func nodeObject(spec NodeSpec) *corev1.Node {
	labels := map[string]string{LabelHostname: spec.Name}
	if spec.Zone != "" {
		labels[LabelZone] = spec.Zone
	}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: spec.Name, Labels: labels}}
	for _, p := range spec.PodCIDRs {
		n.Spec.PodCIDRs = append(n.Spec.PodCIDRs, p.String())
	}
	if len(n.Spec.PodCIDRs) > 0 {
		n.Spec.PodCIDR = n.Spec.PodCIDRs[0]
	}
	return n
}

// nodeStatus builds a Ready status with InternalIP and Hostname addresses.
func nodeStatus(spec NodeSpec) corev1.NodeStatus {
	var addrs []corev1.NodeAddress
	for _, a := range []netip.Addr{spec.IPv4, spec.IPv6} {
		if a.IsValid() {
			addrs = append(addrs, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a.String()})
		}
	}
	addrs = append(addrs, corev1.NodeAddress{Type: corev1.NodeHostName, Address: spec.Name})
	now := metav1.Now()
	return corev1.NodeStatus{
		Addresses: addrs,
		Conditions: []corev1.NodeCondition{{
			Type:               corev1.NodeReady,
			Status:             corev1.ConditionTrue,
			Reason:             "KubeletReady",
			Message:            "set by the portico e2e harness",
			LastHeartbeatTime:  now,
			LastTransitionTime: now,
		}},
	}
}
