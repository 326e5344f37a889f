package iptables

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/portico-dev/portico/backends/iptables/variant"
)

// What `portico cleanup --kube-proxy` removes of upstream kube-proxy's iptables and ipset
// state (iptables and ipvs modes), and what it keeps.

// kubeletChains are the KUBE- chains kubelet creates, per table: its canary, its hint
// of the variant it uses, its firewall against martian localhost traffic, and (kubelet
// before 1.28) the drop mark. Removing kube-proxy's leftovers keeps them; kube-proxy's
// own ipvs-mode chain of the same name in the nat table is kube-proxy's.
var kubeletChains = map[string]map[string]bool{
	"filter": {"KUBE-FIREWALL": true, "KUBE-KUBELET-CANARY": true},
	"nat":    {"KUBE-KUBELET-CANARY": true, "KUBE-MARK-DROP": true},
	"mangle": {"KUBE-IPTABLES-HINT": true, "KUBE-KUBELET-CANARY": true},
}

// kubeProxyPrefix starts the names of kube-proxy's chains and ipsets.
const kubeProxyPrefix = "KUBE-"

// kubeProxyChain reports whether a chain is kube-proxy's: a KUBE- chain kubelet does not
// create.
func kubeProxyChain(table, chain string) bool {
	return strings.HasPrefix(chain, kubeProxyPrefix) && !kubeletChains[table][chain]
}

// RemoveKubeProxyChains removes kube-proxy's chains and the jumps to them, in both
// variants and both families; a variant whose programs are not installed is skipped. It
// returns one line per variant and family it removed chains from.
func RemoveKubeProxyChains(ctx context.Context, run variant.Runner, lookPath func(string) (string, error)) ([]string, error) {
	var done []string
	for _, v := range []variant.Variant{variant.NFT, variant.Legacy} {
		for _, f := range []variant.Family{variant.IPv4, variant.IPv6} {
			cmds := v.Commands(f)
			if _, err := lookPath(cmds.Restore); err != nil {
				continue
			}
			n, err := removeChains(ctx, run, cmds, kubeProxyChain)
			if err != nil {
				return done, fmt.Errorf("removing kube-proxy's chains with %s: %w", cmds.Restore, err)
			}
			if n > 0 {
				done = append(done, fmt.Sprintf("removed %d kube-proxy chains (%s)", n, cmds.Restore))
			}
		}
	}
	return done, nil
}

// KubeProxyNodePorts reads the NodePorts kube-proxy's ipvs mode served from its ipsets
// (KUBE-NODE-PORT-TCP, KUBE-NODE-PORT-LOCAL-UDP, KUBE-6-NODE-PORT-SCTP-HASH, ...): per
// protocol ("tcp", "udp", "sctp"), the ports. Without ipset, or without those sets, there are none.
func KubeProxyNodePorts(ctx context.Context, run variant.Runner, lookPath func(string) (string, error)) (map[string]map[uint16]bool, error) {
	out := map[string]map[uint16]bool{}
	if _, err := lookPath("ipset"); err != nil {
		return out, nil
	}
	list, err := run.Run(ctx, "ipset", []string{"list"}, nil)
	if err != nil {
		return nil, fmt.Errorf("listing the ipsets: %w", err)
	}
	parseNodePortSets(string(list), out)
	return out, nil
}

// parseNodePortSets adds the members of kube-proxy's NodePort sets in `ipset list`
// output to out: a bitmap:port set lists ports ("30080"), a hash:ip,port set address and
// port ("10.0.0.1,sctp:30080").
func parseNodePortSets(list string, out map[string]map[uint16]bool) {
	proto, members := "", false
	sc := bufio.NewScanner(strings.NewReader(list))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "Name: "):
			proto, members = nodePortSetProto(strings.TrimPrefix(line, "Name: ")), false
		case line == "Members:":
			members = true
		case line == "":
			members = false
		case members && proto != "":
			member := strings.Fields(line)[0]
			if i := strings.LastIndexByte(member, ':'); i >= 0 && strings.Contains(member, ",") {
				member = member[i+1:] // "address,proto:port"
			}
			if p, err := strconv.ParseUint(member, 10, 16); err == nil {
				if out[proto] == nil {
					out[proto] = map[uint16]bool{}
				}
				out[proto][uint16(p)] = true
			}
		}
	}
}

// nodePortSetProto returns the protocol of one of kube-proxy's NodePort sets by its
// name ("" for any other set).
func nodePortSetProto(name string) string {
	name = strings.Replace(name, "KUBE-6-", "KUBE-", 1)
	if !strings.HasPrefix(name, "KUBE-NODE-PORT-") {
		return ""
	}
	for _, p := range []string{"TCP", "UDP", "SCTP"} {
		if strings.Contains(name, "-"+p) {
			return strings.ToLower(p)
		}
	}
	return ""
}

// DestroyKubeProxySets destroys every KUBE- ipset (kube-proxy's ipvs mode creates them;
// kubelet creates none) and returns how many. Run it after the chains that match on them
// are gone.
func DestroyKubeProxySets(ctx context.Context, run variant.Runner, lookPath func(string) (string, error)) (int, error) {
	if _, err := lookPath("ipset"); err != nil {
		return 0, nil
	}
	out, err := run.Run(ctx, "ipset", []string{"list", "-n"}, nil)
	if err != nil {
		return 0, fmt.Errorf("listing the ipsets: %w", err)
	}
	var b strings.Builder
	n := 0
	for line := range strings.Lines(string(out)) {
		if name := strings.TrimSpace(line); strings.HasPrefix(name, kubeProxyPrefix) {
			fmt.Fprintf(&b, "destroy %s\n", name)
			n++
		}
	}
	if n == 0 {
		return 0, nil
	}
	if _, err := run.Run(ctx, "ipset", []string{"restore"}, strings.NewReader(b.String())); err != nil {
		return 0, fmt.Errorf("destroying kube-proxy's ipsets: %w", err)
	}
	return n, nil
}
