package main

import (
	"context"
	"fmt"

	"k8s.io/klog/v2"

	"github.com/portico-dev/portico/backends"
	"github.com/portico-dev/portico/config"
	"github.com/portico-dev/portico/proxier/nodesetup"
)

// hostRoot is where portico finds the node's /proc and /sys: "/", except in this
// package's tests, which point it at a tree of files of their own.
var hostRoot = "/"

// nodeSettings maps the configuration to the node settings kube-proxy applies in the
// configured mode: the conntrack settings in every mode, route_localnet in iptables mode
// with localhost NodePorts, and ipvs mode's sysctls.
func nodeSettings(cfg *config.Config) nodesetup.Settings {
	ct := cfg.Conntrack
	ipvs := cfg.Mode == config.ModeIPVS
	return nodesetup.Settings{
		Conntrack: nodesetup.Conntrack{
			MaxPerCore:            int(ct.MaxPerCore),
			Min:                   int(ct.Min),
			TCPEstablishedTimeout: ct.TCPEstablishedTimeout,
			TCPCloseWaitTimeout:   ct.TCPCloseWaitTimeout,
			UDPTimeout:            ct.UDPTimeout,
			UDPStreamTimeout:      ct.UDPStreamTimeout,
			TCPBeLiberal:          ct.TCPBeLiberal,
		},
		RouteLocalnet: cfg.SetsRouteLocalnet(),
		IPVS:          ipvs,
		StrictARP:     ipvs && cfg.IPVS.StrictARP,
	}
}

// setUpNode applies the node settings of the configuration. A setting that cannot be
// applied is an error, as in kube-proxy, which exits on it.
func setUpNode(ctx context.Context, cfg *config.Config) error {
	if err := nodesetup.New(hostRoot).Apply(ctx, nodeSettings(cfg)); err != nil {
		return fmt.Errorf("setting up the node: %w", err)
	}
	return nil
}

// setOOMScoreAdj sets the process's oom_score_adj to oomScoreAdj. As in kube-proxy, a
// failure (a container may not lower it) is logged and portico runs on.
func setOOMScoreAdj(ctx context.Context, cfg *config.Config) {
	if err := nodesetup.New(hostRoot).SetOOMScoreAdj(ctx, int(cfg.OOMScoreAdj)); err != nil {
		klog.FromContext(ctx).Info("Cannot set the OOM score adjustment; running on", "err", err.Error())
	}
}

// initOnly is --init-only: the node set-up of the mode, then exit. The mode's backend
// must exist in this build; it is not started.
func initOnly(ctx context.Context, cfg *config.Config) error {
	be, err := registry().New(cfg.Mode, backendOptions(cfg))
	if err != nil {
		return fmt.Errorf("%w (mode from %s)", err, cfg.ModeSource)
	}
	return initNode(ctx, cfg, be)
}

// initNode applies the node settings and checks, as kube-proxy does before it exits in
// --init-only, that the mode's dataplane works on this node: its programs and kernel
// modules are there (checkTools), and the backend's read-only start-up work, when it has
// some, succeeds. It never contacts the API server: nothing it does
// depends on the cluster.
func initNode(ctx context.Context, cfg *config.Config, be backends.Backend) error {
	if err := setUpNode(ctx, cfg); err != nil {
		return err
	}
	if err := checkTools(cfg); err != nil {
		return err
	}
	if pr, ok := be.(backends.Preparer); ok {
		if err := pr.Prepare(ctx); err != nil {
			return fmt.Errorf("mode %s cannot run on this node: %w", cfg.Mode, err)
		}
	}
	klog.FromContext(ctx).Info("Node set up; exiting as --init-only asks", "mode", cfg.Mode)
	return nil
}
