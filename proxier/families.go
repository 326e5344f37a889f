package proxier

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/portico-dev/portico/model"
)

// FamilyProbe tells whether this node's kernel can carry the traffic of an IP family; it
// returns nil when it can and an error saying why not otherwise.
type FamilyProbe func(f model.Family) error

// ipv6Sysctl is the setting whose presence says the kernel has IPv6 (a kernel booted with
// ipv6.disable=1 has no /proc/sys/net/ipv6) and whose value says whether it is disabled in
// this network namespace.
const ipv6Sysctl = "/proc/sys/net/ipv6/conf/all/disable_ipv6"

// KernelFamilies is the default FamilyProbe. IPv4 is always there. IPv6 is there unless
// the kernel has none (booted with ipv6.disable=1) or net.ipv6.conf.all.disable_ipv6 is 1
// in this network namespace: such a node has no IPv6 address and routes no IPv6 packet,
// so rules of that family would serve nothing.
func KernelFamilies(f model.Family) error {
	if f != model.IPv6 {
		return nil
	}
	return probeIPv6(os.ReadFile)
}

// probeIPv6 is KernelFamilies' IPv6 check over a file reader.
func probeIPv6(read func(string) ([]byte, error)) error {
	b, err := read(ipv6Sysctl)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("the kernel has no IPv6 (%s does not exist: booted with ipv6.disable=1?)", ipv6Sysctl)
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", ipv6Sysctl, err)
	}
	if v := strings.TrimSpace(string(b)); v != "0" {
		return fmt.Errorf("IPv6 is disabled in this network namespace (%s is %q)", ipv6Sysctl, v)
	}
	return nil
}

// probeFamilies keeps, of the configured families, those the kernel supports: the others
// get no rules, and their Services are ignored (what kube-proxy does in single-stack mode
// with the Services of the other family). Like kube-proxy, it is an error when the primary
// family (that of bindAddress when it is set; checkNodePrimaryFamily checks the Node's
// once it is read) or every family is missing.
func (p *Proxier) probeFamilies(ctx context.Context) error {
	probe := p.opts.FamilyProbe
	if probe == nil {
		probe = KernelFamilies
	}
	want := p.opts.Node.Families
	kept, missing := []model.Family{}, map[model.Family]error{}
	for _, f := range want {
		if err := probe(f); err != nil {
			missing[f] = err
			continue
		}
		kept = append(kept, f)
	}
	if err := primaryMissing(p.opts.Node.BindAddress.IsValid() && !p.opts.Node.BindAddress.IsUnspecified(),
		model.FamilyOf(p.opts.Node.BindAddress), want, kept, missing); err != nil {
		return err
	}
	for _, f := range want {
		if err := missing[f]; err != nil {
			klog.FromContext(ctx).Info("Not programming an IP family this node's kernel lacks; its Services are ignored",
				"family", f, "reason", err.Error())
		}
	}
	names := make([]string, len(kept))
	for i, f := range kept {
		names[i] = f.String()
	}
	klog.FromContext(ctx).Info("IP families", "programmed", names, "dualStack", len(kept) > 1)
	p.opts.Node.Families = kept
	return nil
}

// primaryMissing returns the start-up error, if any, of a probe of the families want: the
// primary family is missing (hasPrimary: bindAddress sets it), or every family is.
func primaryMissing(hasPrimary bool, primary model.Family, want, kept []model.Family, missing map[model.Family]error) error {
	if hasPrimary && missing[primary] != nil {
		return fmt.Errorf("no support for the primary IP family %s (that of bindAddress): %w", primary, missing[primary])
	}
	if len(kept) == 0 {
		errs := make([]error, 0, len(missing))
		for _, f := range want {
			errs = append(errs, fmt.Errorf("%s: %w", f, missing[f]))
		}
		return fmt.Errorf("the kernel supports none of the IP families to program: %w", errors.Join(errs...))
	}
	return nil
}

// checkNodePrimaryFamily fails the start, as kube-proxy does, when bindAddress is not set
// and the Node's primary IP (its first InternalIP, else its first ExternalIP) is of a
// family the kernel lacks. A Node not known yet is not checked.
func (p *Proxier) checkNodePrimaryFamily() error {
	if p.opts.Node.BindAddress.IsValid() && !p.opts.Node.BindAddress.IsUnspecified() {
		return nil // probeFamilies checked it
	}
	node, err := p.watch.nodes.Get(p.opts.Node.Name)
	if err != nil || node == nil {
		return nil
	}
	ip, ok := nodePrimaryIP(node)
	if ok && !slices.Contains(p.opts.Node.Families, model.FamilyOf(ip)) {
		return fmt.Errorf("no support for the primary IP family %s (that of Node %s's IP %s): this node's kernel lacks it",
			model.FamilyOf(ip), node.Name, ip)
	}
	return nil
}

// nodePrimaryIP returns the first InternalIP of node, else its first ExternalIP.
func nodePrimaryIP(node *corev1.Node) (netip.Addr, bool) {
	for _, typ := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP} {
		for _, a := range node.Status.Addresses {
			if ip, err := netip.ParseAddr(a.Address); a.Type == typ && err == nil {
				return ip.Unmap(), true
			}
		}
	}
	return netip.Addr{}, false
}

// familyRetry is the backoff of one family whose syncs fail, independent of the others.
type familyRetry struct {
	failures int
	next     time.Time
}

// familyWaiting reports whether family f failed and its backoff has not run out at now:
// the sync leaves it alone (its last good rules stay) and goes on with the others.
func (p *Proxier) familyWaiting(f model.Family, now time.Time) bool {
	r, ok := p.famRetry[f]
	return ok && now.Before(r.next)
}

// familyFailed starts or lengthens the backoff of family f (the runner's retry bounds)
// and asks for a sync when it runs out. It returns the wait.
func (p *Proxier) familyFailed(f model.Family, now time.Time) time.Duration {
	r := p.famRetry[f]
	if r == nil {
		r = &familyRetry{}
		p.famRetry[f] = r
	}
	r.failures++
	d := p.runner.backoff(r.failures)
	r.next = now.Add(d)
	time.AfterFunc(d, p.runner.Request)
	return d
}

// familySynced ends the backoff of family f.
func (p *Proxier) familySynced(f model.Family) { delete(p.famRetry, f) }

// familyTriggers returns the change times of the families in fams.
func familyTriggers(ch changes, fams []model.Family) map[model.ServiceName][]trigger {
	out := map[model.ServiceName][]trigger{}
	for n, ts := range ch.triggers {
		for _, t := range ts {
			if slices.Contains(fams, t.family) {
				out[n] = append(out[n], t)
			}
		}
	}
	return out
}
