package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"k8s.io/klog/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/portico-dev/portico/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print portico's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "portico %s (modes: %v)\n", version, registry().Available())
			return err
		},
	}
}

func newDumpCommand(flags *config.Flags) *cobra.Command {
	var noConntrack bool
	cmd := &cobra.Command{
		Use:   "dump",
		Short: "Print the dataplane rules of the configured mode and the conntrack table, as the kernel holds them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd, flags)
			if err != nil {
				return err
			}
			be, err := registry().New(cfg.Mode, backendOptions(cfg))
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "# portico %s rules (mode %s)\n", version, cfg.Mode)
			if err := be.Dump(cmd.Context(), out); err != nil {
				return err
			}
			if noConntrack {
				return nil
			}
			return dumpConntrack(out)
		},
	}
	cmd.Flags().BoolVar(&noConntrack, "no-conntrack", false, "do not print the conntrack table")
	return cmd
}

// dumpConntrack prints the conntrack table of both families.
func dumpConntrack(w io.Writer) error {
	fmt.Fprintln(w, "# conntrack table")
	var errs []error
	for _, fam := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
		flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, fam)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing conntrack: %w", err))
			continue
		}
		slices.SortFunc(flows, func(a, b *netlink.ConntrackFlow) int {
			return slices.Compare(net.IP(a.Forward.DstIP), net.IP(b.Forward.DstIP))
		})
		for _, f := range flows {
			fmt.Fprintln(w, formatFlow(f))
		}
	}
	return errors.Join(errs...)
}

// formatFlow prints a conntrack flow on one line: both directions, and whether the
// reply direction shows a DNAT (to an endpoint) or an SNAT (masquerade).
func formatFlow(f *netlink.ConntrackFlow) string {
	fwd, rev := f.Forward, f.Reverse
	var nat []string
	if !fwd.DstIP.Equal(rev.SrcIP) || fwd.DstPort != rev.SrcPort {
		nat = append(nat, "dnat")
	}
	if !fwd.SrcIP.Equal(rev.DstIP) || fwd.SrcPort != rev.DstPort {
		nat = append(nat, "snat")
	}
	natText := ""
	if len(nat) > 0 {
		natText = " [" + strings.Join(nat, ",") + "]"
	}
	return fmt.Sprintf("%-4s %s -> %s  reply %s -> %s  timeout=%ds%s",
		protoName(fwd.Protocol), hostPort(fwd.SrcIP, fwd.SrcPort), hostPort(fwd.DstIP, fwd.DstPort),
		hostPort(rev.SrcIP, rev.SrcPort), hostPort(rev.DstIP, rev.DstPort), f.TimeOut, natText)
}

func hostPort(ip net.IP, port uint16) string {
	return net.JoinHostPort(ip.String(), strconv.Itoa(int(port)))
}

func protoName(p uint8) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	case unix.IPPROTO_SCTP:
		return "sctp"
	case unix.IPPROTO_ICMP:
		return "icmp"
	}
	return strconv.Itoa(int(p))
}

func newCleanupCommand(flags *config.Flags) *cobra.Command {
	var kubeProxy bool
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Remove every rule portico created, in every mode, and exit (same as --cleanup)",
		Long: "Remove every rule portico created, in every mode, and exit (same as --cleanup).\n\n" +
			"With --kube-proxy, remove instead what upstream kube-proxy left on this node in any mode " +
			"(its iptables chains in both variants, its nftables tables, its IPVS virtual servers, kube-ipvs0 " +
			"and its ipsets), and nothing of portico's or kubelet's.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd, flags)
			if err != nil {
				return err
			}
			if kubeProxy {
				return cleanupKubeProxy(cmd.Context(), cmd.OutOrStdout(), cfg)
			}
			return cleanup(cmd.Context(), cmd.OutOrStdout(), cfg)
		},
	}
	cmd.Flags().BoolVar(&kubeProxy, "kube-proxy", false, "remove upstream kube-proxy's leftovers instead of portico's rules")
	return cmd
}

// otherModesGrace bounds how long the removal of the other modes' rules waits for the
// first sync.
const otherModesGrace = 30 * time.Second

// cleanupOtherModesAfter runs cleanupOtherModes once firstSync is closed (the selected
// mode's first rules are in place: until then the earlier mode's rules keep serving, and
// the first sync has both CPUs of a small node), or after otherModesGrace.
func cleanupOtherModesAfter(ctx context.Context, cfg *config.Config, firstSync <-chan struct{}) {
	t := time.NewTimer(otherModesGrace)
	defer t.Stop()
	select {
	case <-firstSync:
	case <-t.C:
	case <-ctx.Done():
		return
	}
	cleanupOtherModes(ctx, cfg)
}

// cleanupOtherModes removes what the backends of the other modes left in the kernel (an
// earlier run in another mode), as kube-proxy does when it starts: two modes' rules would
// both translate the same connections (a connection keeps the translation of the first
// NAT rule that took it, so the short overlap after the first sync is harmless). Each
// backend removes only its own objects. Failures are logged (a mode whose tools are
// missing has nothing to remove).
func cleanupOtherModes(ctx context.Context, cfg *config.Config) {
	logger := klog.FromContext(ctx)
	r := registry()
	for _, mode := range r.Available() {
		if mode == cfg.Mode {
			continue
		}
		be, err := r.New(mode, backendOptions(cfg))
		if err == nil {
			err = be.Cleanup(ctx)
		}
		if err != nil {
			logger.V(2).Info("Could not remove the rules of another proxy mode", "mode", mode, "err", err)
			continue
		}
		logger.V(2).Info("Removed any rules of another proxy mode", "mode", mode)
	}
}

// cleanup removes the rules of every backend of this build.
func cleanup(ctx context.Context, w io.Writer, cfg *config.Config) error {
	var errs []error
	r := registry()
	for _, mode := range r.Available() {
		be, err := r.New(mode, backendOptions(cfg))
		if err == nil {
			err = be.Cleanup(ctx)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("cleaning up %s: %w", mode, err))
			continue
		}
		fmt.Fprintf(w, "removed portico's %s rules\n", mode)
	}
	return errors.Join(errs...)
}
