package nftables

import (
	"context"
	"fmt"

	"sigs.k8s.io/knftables"
)

// KubeProxyTable is the name of upstream kube-proxy's nftables tables (ip and ip6).
const KubeProxyTable = "kube-proxy"

// RemoveKubeProxyTables deletes upstream kube-proxy's nftables-mode tables, `ip
// kube-proxy` and `ip6 kube-proxy`, and returns the ones it deleted. Without nft there
// is nothing it could have left.
func RemoveKubeProxyTables(ctx context.Context) ([]string, error) {
	var done []string
	for _, fam := range []knftables.Family{knftables.IPv4Family, knftables.IPv6Family} {
		nft, err := knftables.New(fam, KubeProxyTable)
		if err != nil {
			return done, nil // no nft (or no nf_tables): no kube-proxy table either
		}
		tx := nft.NewTransaction()
		tx.Delete(&knftables.Table{})
		if err := nft.Run(ctx, tx); err != nil {
			if knftables.IsNotFound(err) {
				continue
			}
			return done, fmt.Errorf("deleting nftables table %s %s: %w", fam, KubeProxyTable, err)
		}
		done = append(done, fmt.Sprintf("%s %s", fam, KubeProxyTable))
	}
	return done, nil
}
