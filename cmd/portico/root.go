package main

import (
	goflag "flag"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/backends/iptables"
	"github.com/portico-dev/portico/backends/ipvs"
	"github.com/portico-dev/portico/backends/nftables"
	"github.com/portico-dev/portico/config"
)

// registry returns the backends of this build, keyed by proxy mode.
func registry() *backends.Registry {
	r := backends.NewRegistry(config.Modes...)
	r.Register(nftables.Mode, nftables.Factory)
	r.Register(iptables.Mode, iptables.Factory)
	r.Register(ipvs.Name, ipvs.Factory)
	return r
}

// newRootCommand builds the portico command tree.
func newRootCommand() *cobra.Command {
	flags := &config.Flags{}
	cmd := &cobra.Command{
		Use:   "portico",
		Short: "portico programs a node's dataplane for Kubernetes Services (a kube-proxy replacement)",
		Long: `portico watches Services, EndpointSlices and its own Node and programs the node's
dataplane for them. It runs as a DaemonSet, one pod per node, and accepts kube-proxy's
command line and its KubeProxyConfiguration file (kubeproxy.config.k8s.io/v1alpha1)
unchanged; the proxy mode comes from --mode/--proxy-mode or the file's "mode" field.

Available modes in this build: ` + strings.Join(registry().Available(), ", ") + `.`,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		SilenceErrors:     true,
		Args:              cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRoot(cmd, flags)
		},
	}
	flags.AddFlags(cmd.PersistentFlags())
	addKlogFlags(cmd.PersistentFlags())
	cmd.AddCommand(newDumpCommand(flags), newCleanupCommand(flags), newVersionCommand())
	return cmd
}

// addKlogFlags registers klog's verbosity flags (-v, --vmodule).
func addKlogFlags(fs *pflag.FlagSet) {
	gfs := goflag.NewFlagSet("klog", goflag.ContinueOnError)
	klog.InitFlags(gfs)
	for _, name := range []string{"v", "vmodule"} {
		f := gfs.Lookup(name)
		pf := pflag.PFlagFromGoFlag(f)
		if name == "v" {
			pf.Shorthand = "v"
		}
		fs.AddFlag(pf)
	}
}

// loadConfig loads and validates the configuration from the command's flags.
func loadConfig(cmd *cobra.Command, flags *config.Flags) (*config.Config, error) {
	logger := klog.FromContext(cmd.Context())
	cfg, err := config.Load(flags, cmd.Flags(), logger)
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

// runRoot runs the command line without a subcommand: --write-config-to, --cleanup,
// --init-only, or else the proxy.
func runRoot(cmd *cobra.Command, flags *config.Flags) error {
	cfg, err := loadConfig(cmd, flags)
	if err != nil {
		return err
	}
	if err := applyLogging(cmd.Flags(), cfg.Logging); err != nil {
		return err
	}
	switch {
	case cfg.WriteConfigTo != "":
		if err := cfg.WriteFile(cfg.WriteConfigTo); err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), "wrote the effective configuration to", cfg.WriteConfigTo)
		return nil
	case cfg.Cleanup:
		return cleanup(cmd.Context(), cmd.OutOrStdout(), cfg)
	case cfg.InitOnly:
		return initOnly(cmd.Context(), cfg)
	}
	return runProxy(cmd.Context(), cfg)
}
