package variant

import (
	"context"
	"fmt"
)

// Detect runs iptables-legacy-save, ip6tables-legacy-save, iptables-nft-save and
// ip6tables-nft-save and picks the variant that already holds rules, as kube-proxy's image
// does, so that portico's rules sit in the same hooks as the host's firewall and kubelet's:
//
//   - when exactly one variant holds kubelet's KUBE-IPTABLES-HINT or KUBE-KUBELET-CANARY
//     chain, it wins (kubelet has chosen);
//   - else the variant whose save commands print more rules wins (portico's own rules from
//     a previous run count too, so a restart keeps its variant);
//   - when only one variant's save commands run at all, it wins;
//   - else nft.
//
// The save commands are run without -t: asking iptables-legacy-save for a table would make
// the kernel create it. A failing save command counts as an empty one; its error is kept
// in Result.Seen. Detect fails only when ctx ends.
func Detect(ctx context.Context, run Runner) (Result, error) {
	seen := map[Variant]Seen{}
	for _, v := range []Variant{Legacy, NFT} {
		var s Seen
		for _, f := range []Family{IPv4, IPv6} {
			save := v.Commands(f).Save
			out, err := run.Run(ctx, save, nil, nil)
			if ctxErr := ctx.Err(); ctxErr != nil {
				return Result{}, fmt.Errorf("detecting the iptables variant: %s: %w", save, ctxErr)
			}
			if err != nil {
				s.Errors = append(s.Errors, err)
				continue
			}
			s.Ran++
			s.countSave(string(out))
		}
		seen[v] = s
	}
	v, why := choose(seen[NFT], seen[Legacy])
	return Result{Variant: v, Reason: reason(v, why, seen), Seen: seen}, nil
}

// choose applies Detect's rules to what the two variants showed.
func choose(nft, legacy Seen) (Variant, string) {
	switch {
	case nft.KubeletHint != legacy.KubeletHint:
		if legacy.KubeletHint {
			return Legacy, "kubelet's hint chain is there"
		}
		return NFT, "kubelet's hint chain is there"
	case nft.Rules != legacy.Rules:
		if legacy.Rules > nft.Rules {
			return Legacy, "it holds more rules"
		}
		return NFT, "it holds more rules"
	case nft.Ran == 0 && legacy.Ran > 0:
		return Legacy, "only its save commands ran"
	case legacy.Ran == 0 && nft.Ran > 0:
		return NFT, "only its save commands ran"
	default:
		return NFT, "nft is the default when no variant holds more rules"
	}
}

// reason makes the log line's text.
func reason(v Variant, why string, seen map[Variant]Seen) string {
	return fmt.Sprintf("using iptables-%s: %s (nft: %s; legacy: %s)", v, why, seen[NFT], seen[Legacy])
}
