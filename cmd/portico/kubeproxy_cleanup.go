package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"

	"github.com/portico-dev/portico/backends/iptables"
	"github.com/portico-dev/portico/backends/iptables/variant"
	"github.com/portico-dev/portico/backends/ipvs"
	"github.com/portico-dev/portico/backends/nftables"
	"github.com/portico-dev/portico/config"
)

// cleanupKubeProxy is `portico cleanup --kube-proxy`: it removes what upstream
// kube-proxy left in this node's kernel, in whichever mode it ran — never portico's own
// rules, nor kubelet's chains (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT,
// KUBE-MARK-DROP). In order: IPVS virtual servers (their NodePorts are read from
// kube-proxy's ipsets first) and kube-ipvs0; the iptables chains in both variants and
// families, with the jumps to them; the ipsets the chains matched on; the nftables
// tables. Each step runs even when an earlier one failed; the errors are joined.
func cleanupKubeProxy(ctx context.Context, w io.Writer, cfg *config.Config) error {
	run, look := variant.ExecRunner{}, exec.LookPath
	var errs []error
	nodePorts, err := iptables.KubeProxyNodePorts(ctx, run, look)
	errs = append(errs, err)
	be, err := ipvs.New(backendOptions(cfg))
	if err == nil {
		var n int
		var dev bool
		n, dev, err = be.RemoveKubeProxy(ctx, nodePorts)
		report(w, n > 0, "removed %d of kube-proxy's IPVS virtual servers", n)
		report(w, dev, "removed %s", ipvs.KubeProxyDevice)
	}
	errs = append(errs, err)
	chains, err := iptables.RemoveKubeProxyChains(ctx, run, look)
	for _, c := range chains {
		report(w, true, "%s", c)
	}
	errs = append(errs, err)
	sets, err := iptables.DestroyKubeProxySets(ctx, run, look)
	report(w, sets > 0, "destroyed %d of kube-proxy's ipsets", sets)
	errs = append(errs, err)
	tables, err := nftables.RemoveKubeProxyTables(ctx)
	for _, t := range tables {
		report(w, true, "deleted nftables table %s", t)
	}
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("removing kube-proxy's leftovers: %w", err)
	}
	fmt.Fprintln(w, "no kube-proxy leftovers remain")
	return nil
}

// report prints a line when cond holds.
func report(w io.Writer, cond bool, format string, args ...any) {
	if cond {
		fmt.Fprintf(w, format+"\n", args...)
	}
}
